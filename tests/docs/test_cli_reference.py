"""docs/cli.md is the --help of bilin and of every command, as scripts/cli_reference.py writes it."""

from __future__ import annotations

import difflib
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "cli_reference.py"


def _generator():
    spec = importlib.util.spec_from_file_location("cli_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_up_to_date():
    fresh = _generator().render()
    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    diff = "\n".join(list(difflib.unified_diff(current.splitlines(), fresh.splitlines(),
                                               "docs/cli.md", "--help now", lineterm="",
                                               n=1))[:40])
    assert current == fresh, (
        "docs/cli.md is not what --help prints now: run python scripts/cli_reference.py "
        f"and commit docs/cli.md\n{diff}")


def test_cli_reference_covers_every_command():
    from bilin_cli.cli.app import COMMANDS

    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for name, _, _ in COMMANDS:
        assert f"\n## bilin {name}\n" in text, name
        assert f"Usage: bilin {name} [OPTIONS]" in text, name
    assert not any(line != line.rstrip() for line in text.splitlines())


def test_check_mode_exits_1_on_a_stale_file(tmp_path, monkeypatch):
    generator = _generator()
    stale = tmp_path / "cli.md"
    stale.write_text("# CLI reference\n\nold\n", encoding="utf-8")
    monkeypatch.setattr(generator, "TARGET", stale)
    monkeypatch.setattr(generator, "ROOT", tmp_path)
    assert generator.main(["--check"]) == 1
    assert stale.read_text(encoding="utf-8") == "# CLI reference\n\nold\n"
    assert generator.main([]) == 0
    assert generator.main(["--check"]) == 0


def test_check_mode_runs_as_a_script():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr

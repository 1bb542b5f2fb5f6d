"""Every `bilin ...` example in the README and in each command's --help runs on the samples.

Examples run in a scratch directory that links to the shipped sample_checkpoints/, so
files they write (-o, --plot, --save) land there. A pipe (`| jq ...`) is checked by
parsing the command's stdout as JSON.
"""

from __future__ import annotations

import inspect
import json
import re
import shlex
from pathlib import Path

import pytest

from bilin_cli.cli.app import app

ROOT = Path(__file__).resolve().parents[1]


def readme_examples() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [m.group(1).strip() for m in re.finditer(r"^\$ (bilin .+)$", text, re.M)]


def help_examples() -> list[str]:
    import typer.main

    group = typer.main.get_command(app)
    found = []
    for _, command in sorted(group.commands.items()):
        doc = inspect.getdoc(command.callback) or ""
        found += [line.strip() for line in doc.splitlines() if line.strip().startswith("bilin ")]
    return found


def run_example(cli, line: str, tmp_path: Path, monkeypatch) -> None:
    """Run one example in a scratch directory linked to the shipped samples."""
    (tmp_path / "sample_checkpoints").symlink_to(ROOT / "sample_checkpoints")
    monkeypatch.chdir(tmp_path)
    command, _, pipe = line.partition("|")
    args = shlex.split(command)[1:]
    code, out, err = cli(*args)
    assert code == 0, f"{line}\n{err}"
    if pipe.strip().startswith("jq"):
        json.loads(out)


def test_every_command_has_an_example():
    import typer.main

    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        doc = inspect.getdoc(command.callback) or ""
        assert re.search(rf"^\s*bilin {re.escape(name)} sample_checkpoints/", doc, re.M), name


@pytest.mark.parametrize("line", help_examples())
def test_help_example_runs(cli, tmp_path, monkeypatch, line):
    run_example(cli, line, tmp_path, monkeypatch)


def test_readme_examples_run_in_order(cli, tmp_path, monkeypatch):
    """The README's tour, line by line in one directory (later lines read earlier outputs)."""
    lines = readme_examples()
    assert len(lines) >= 15
    (tmp_path / "sample_checkpoints").symlink_to(ROOT / "sample_checkpoints")
    monkeypatch.chdir(tmp_path)
    for line in lines:
        command, _, pipe = line.partition("|")
        code, out, err = cli(*shlex.split(command)[1:])
        assert code == 0, f"{line}\n{err}"
        if pipe.strip().startswith("jq"):
            json.loads(out)

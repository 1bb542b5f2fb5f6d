"""Write docs/cli.md, the CLI reference, from the ``--help`` of ``bilin`` and of every command.

    python scripts/cli_reference.py           # (re)write docs/cli.md
    python scripts/cli_reference.py --check   # exit 1 if docs/cli.md differs from --help

The help is rendered through click at a fixed width (:data:`WIDTH` columns, no colour),
so the file is the same on every machine; ``tests/docs/test_cli_reference.py`` fails when
a command's ``--help`` changed and this script was not run.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "cli.md"
WIDTH = 100

HEADER = """\
# CLI reference

Generated from `bilin --help` and each command's `--help` by `python scripts/cli_reference.py`
(at {width} columns); do not edit by hand. `tests/docs/test_cli_reference.py` fails when a
command's help changes and this file was not regenerated. What every command shares (output
options, exit codes, sharding, the conventions of `bilin eig`) is in
[cli-conventions.md](cli-conventions.md); the tour in [tour.md](tour.md) runs the commands on
the shipped samples.
"""


def _anchor(title: str) -> str:
    """The anchor GitHub gives a heading ``title``."""
    return "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c in "-_")


def help_texts() -> list[tuple[str, str]]:
    """``[("bilin", help), ("bilin info", help), ...]`` in the order ``bilin --help`` lists
    the commands, each exactly as click renders it at :data:`WIDTH` columns."""
    os.environ["NO_COLOR"] = "1"
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import click
    import typer.main

    from bilin_cli.cli.app import app

    group = typer.main.get_command(app)
    fixed = {"terminal_width": WIDTH, "max_content_width": WIDTH}
    root = click.Context(group, info_name="bilin", **{**group.context_settings, **fixed})
    texts = [("bilin", group.get_help(root))]
    for name in group.list_commands(root):
        command = group.get_command(root, name)
        if command is None or command.hidden:
            continue
        ctx = click.Context(command, info_name=name, parent=root,
                            **{**command.context_settings, **fixed})
        texts.append((f"bilin {name}", command.get_help(ctx)))
    return texts


def render() -> str:
    """The whole of docs/cli.md."""
    texts = help_texts()
    parts = [HEADER.format(width=WIDTH)]
    parts.append("Commands: " + " · ".join(
        f"[{title.removeprefix('bilin ')}](#{_anchor(title)})" for title, _ in texts[1:]))
    for title, text in texts:
        body = "\n".join(line.rstrip() for line in text.strip("\n").splitlines())
        assert "```" not in body, f"{title}: --help holds a code fence"
        parts += ["", f"## {title}", "", "```text", body, "```"]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if docs/cli.md is not up to date")
    args = parser.parse_args(argv)
    fresh = render()
    current = TARGET.read_text(encoding="utf-8") if TARGET.is_file() else ""
    if args.check:
        if current == fresh:
            print(f"{TARGET.relative_to(ROOT)} is up to date")
            return 0
        diff = difflib.unified_diff(current.splitlines(), fresh.splitlines(),
                                    "docs/cli.md", "--help now", lineterm="", n=1)
        print("\n".join(list(diff)[:60]), file=sys.stderr)
        print("docs/cli.md is out of date: run python scripts/cli_reference.py",
              file=sys.stderr)
        return 1
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    if current != fresh:
        TARGET.write_text(fresh, encoding="utf-8")
        print(f"wrote {TARGET.relative_to(ROOT)}")
    else:
        print(f"{TARGET.relative_to(ROOT)} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())

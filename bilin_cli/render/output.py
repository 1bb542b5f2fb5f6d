"""The one renderer every command hands its result to.

A :class:`Report` carries a JSON document, a human summary, optional rows
(for tables and CSV/TSV) and optional arrays (for ``.npz``). :func:`emit` writes
it in the requested format to stdout or, atomically, to ``-o FILE``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bilin_cli.errors import BilinError
from bilin_cli.render.printable import printable
from bilin_cli.storage.atomic import atomic_write

# Text in tables is escaped (names from files may hold escape sequences), not cut short.
CELL_LIMIT = 100_000

FORMATS = ("table", "json", "csv", "tsv", "npz")


@dataclass
class Report:
    title: str
    doc: dict
    summary: list[tuple[str, str]] = field(default_factory=list)
    columns: list[str] | None = None
    rows: list[list] | None = None
    arrays: dict[str, np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Vectors to draw as coloured blocks after the table (``--show``), and their image shape.
    pictures: list[tuple[str, np.ndarray]] = field(default_factory=list)
    picture_shape: tuple[int, ...] | None = None
    # Columns holding shares (fractions of 1): a table shows them as percentages, so every
    # number in one view has one style; JSON and CSV/TSV keep the exact fraction.
    percent: tuple[str, ...] = ()


def _clean(obj):
    """JSON-safe copy: numpy scalars to Python, non-finite floats to null."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, np.generic):
        return _clean(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def to_json(report: Report) -> str:
    return json.dumps(_clean(report.doc), allow_nan=False) + "\n"


def _safe(text: object) -> str:
    """``text`` with control and bidi characters escaped, for a terminal."""
    return printable(text, CELL_LIMIT)


def _safe_lines(text: object) -> str:
    """Like :func:`_safe`, keeping the line breaks of multi-line notes of our own."""
    return "\n".join(_safe(line) for line in str(text).split("\n"))


def to_delimited(report: Report, delimiter: str, escape: bool = False,
                 lead: tuple[str, str] | None = None, header: bool = True) -> str:
    """CSV/TSV, exact; with ``escape`` (for a terminal) control characters are escaped.

    ``lead`` (column, value) puts a first column in front of every row (many reports in
    one table: the direction's key); ``header=False`` leaves out the header line."""
    if report.rows is None:
        raise BilinError(f"'{report.title}' has no row data; use --json")
    clean = _safe if escape else str
    first = [] if lead is None else [clean(lead[1])]
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    if header:
        writer.writerow(([] if lead is None else [lead[0]]) + [clean(c) for c in report.columns])
    for row in report.rows:
        writer.writerow(first + ["" if v is None else clean(_fmt_cell(v, plain=True))
                                 for v in row])
    return buf.getvalue()


def _fmt_cell(v, plain: bool = False, percent: bool = False) -> str:
    if isinstance(v, (float, np.floating)):
        if plain:
            return repr(float(v))
        if percent and math.isfinite(float(v)):
            p = 100 * float(v)
            # two decimals, as the summaries print shares; tiny shares keep two digits
            return f"{p:.2f}%" if p == 0 or abs(p) >= 0.01 else f"{p:.2g}%"
        return f"{float(v):.6g}"
    return str(v)


def to_table(report: Report, color: bool, width: int | None = None,
             decorate: bool = True) -> str:
    """Human output. Every string goes in as a rich ``Text``, never as markup, and escaped:
    a class name like ``[/bold]`` or ``:smile:`` or one holding ESC prints as itself.

    ``decorate=False`` (a pipe or a file) leaves out the title line and trailing spaces."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    buf = io.StringIO()
    console = Console(
        file=buf, force_terminal=color, no_color=not color, width=width or 120,
        highlight=False, color_system="truecolor" if color else None,
    )
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold cyan")
    grid.add_column()
    for key, value in report.summary:
        grid.add_row(Text(_safe(key)), Text(_safe(value)))
    if decorate:
        console.print(Text(_safe(report.title), style="bold"))
    if report.summary:
        console.print(grid)
    if report.rows:
        table = Table(show_edge=False, header_style="bold")
        for col in report.columns:
            table.add_column(Text(_safe(col)),
                             justify="right" if col != report.columns[-1] else "left")
        pct = [col in report.percent for col in report.columns]
        for row in report.rows:
            table.add_row(*(Text("" if v is None else _safe(_fmt_cell(
                v, percent=i < len(pct) and pct[i]))) for i, v in enumerate(row)))
        console.print(table)
    if report.pictures:
        from bilin_cli.render.terminal_images import vector_gallery

        console.print(vector_gallery(report.pictures, report.picture_shape))
    for note in report.notes:
        console.print(Text(f"note: {_safe_lines(note)}", style="dim"))
    text = buf.getvalue()
    if not decorate:
        text = "".join(line.rstrip() + "\n" for line in text.splitlines())
    return text


def resolve_format(json_flag: bool, fmt: str | None, output: str | None) -> str:
    """The format asked for; conflicting or incomplete requests are usage errors."""
    import typer

    if fmt is not None and fmt not in FORMATS:
        raise typer.BadParameter(f"choose one of {', '.join(FORMATS)}", param_hint="--format")
    if json_flag and fmt not in (None, "json"):
        raise typer.BadParameter(f"--json conflicts with --format {fmt}", param_hint="--json")
    if fmt is None and not json_flag and output is not None:
        # -o sim.csv means CSV: the extension names the format where no option does.
        suffix = Path(str(output)).suffix.lower().lstrip(".")
        fmt = {"json": "json", "jsonl": "json", "csv": "csv", "tsv": "tsv", "npz": "npz"}.get(
            suffix)
    chosen = "json" if json_flag else (fmt or "table")
    if chosen == "npz" and output is None:
        raise typer.BadParameter("--format npz writes a file: add -o FILE.npz", param_hint="-o")
    return chosen


def emit(report: Report, fmt: str, output: str | None = None, force: bool = False) -> None:
    """Render ``report`` as ``fmt`` to stdout or atomically to ``output``."""
    for w in report.warnings:
        print(f"warning: {_safe_lines(w)}", file=sys.stderr)
    if fmt == "npz":
        if not report.arrays:
            raise BilinError(f"'{report.title}' has no array data for --format npz")
        arrays = {k: np.asarray(v) for k, v in report.arrays.items()}
        atomic_write(output, lambda fh: np.savez(fh, **arrays), force)
        print(f"wrote {output} ({', '.join(arrays)})", file=sys.stderr)
        return
    if fmt == "json":
        text = to_json(report)
    elif fmt in ("csv", "tsv"):
        # Exact in a file or a pipe; escaped only where it would reach a terminal raw.
        tty = output is None and sys.stdout.isatty()
        text = to_delimited(report, "," if fmt == "csv" else "\t", escape=tty)
    else:
        tty = output is None and sys.stdout.isatty()
        width = shutil.get_terminal_size().columns if tty else 120
        # Pictures are nothing without colour, so --show keeps colour codes even in a pipe.
        text = to_table(report, color=tty or bool(report.pictures), width=width, decorate=tty)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write(output, lambda fh: fh.write(text.encode("utf-8")), force)
        print(f"wrote {output}", file=sys.stderr)


class Stream:
    """Many reports of one kind, one per direction, written as they come:

    * ``json``: JSON Lines, one document per line, each exactly what one report prints;
    * ``table``: one table after another, a blank line between;
    * ``csv``/``tsv``: one header, every report's rows with a first column ``direction``
      (the key given to :meth:`add`);
    * ``npz``: one file, each report's arrays under ``KEY_NAME`` (``class3_eigenvalues``)
      and ``directions``, the keys in order.

    To stdout each report is written as soon as it is added; ``-o FILE`` is written
    atomically by :meth:`close`. Warnings (the model's, the same for every report) are
    printed once.
    """

    def __init__(self, fmt: str, output: str | None = None, force: bool = False):
        self.fmt, self.output, self.force = fmt, output, force
        self.texts: list[str] = []
        self.arrays: dict[str, np.ndarray] = {}
        self.keys: list[str] = []
        self.tty = output is None and sys.stdout.isatty()

    def add(self, report: Report, key: str) -> None:
        if not self.keys:
            for w in report.warnings:
                print(f"warning: {_safe_lines(w)}", file=sys.stderr)
        first = not self.keys
        self.keys.append(key)
        if self.fmt == "npz":
            if not report.arrays:
                raise BilinError(f"'{report.title}' has no array data for --format npz")
            self.arrays.update({f"{key}_{k}": np.asarray(v) for k, v in report.arrays.items()})
            return
        if self.fmt == "json":
            text = to_json(report)
        elif self.fmt in ("csv", "tsv"):
            text = to_delimited(report, "," if self.fmt == "csv" else "\t", escape=self.tty,
                                lead=("direction", key), header=first)
        else:
            width = shutil.get_terminal_size().columns if self.tty else 120
            text = ("" if first else "\n") + to_table(
                report, color=self.tty or bool(report.pictures), width=width, decorate=self.tty)
        if self.output is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            self.texts.append(text)

    def close(self) -> None:
        if self.output is None:
            return
        if self.fmt == "npz":
            arrays = {**self.arrays, "directions": np.array(self.keys)}
            atomic_write(self.output, lambda fh: np.savez(fh, **arrays), self.force)
            print(f"wrote {self.output} ({len(self.keys)} directions: KEY_eigenvalues, ...; "
                  "directions lists the keys)", file=sys.stderr)
            return
        data = "".join(self.texts).encode("utf-8")
        atomic_write(self.output, lambda fh: fh.write(data), self.force)
        print(f"wrote {self.output}", file=sys.stderr)

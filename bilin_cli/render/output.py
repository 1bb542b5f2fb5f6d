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
import os
import re
import shutil
import sys
from dataclasses import dataclass, field

import numpy as np

from bilin_cli.core.errors import BilinError
from bilin_cli.core.printable import printable, say_wrote
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


def color_allowed(stream=None) -> bool:
    """Whether ``stream`` (stdout) may get colour and styles: only a terminal, and never
    with ``NO_COLOR`` set to anything non-empty (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _longest_word(text: str) -> int:
    from rich.cells import cell_len

    return max((cell_len(w) for w in text.split()), default=0)


# A number as bilin prints one (-0.145859, 5.46%, 1.2e-05, 930,816): never cut in two.
_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?%?")
# In running text (summaries, notes) a longer word (a path) may fold onto the next line.
FOLD_WORDS_OVER = 16


def _least_text_width(text: str) -> int:
    """The narrowest width that wraps ``text`` without cutting a number or a short word."""
    from rich.cells import cell_len

    numbers = (cell_len(m.group()) for m in _NUMBER.finditer(text))
    words = (min(cell_len(w), FOLD_WORDS_OVER) for w in text.split())
    return max([1, *numbers, *words])


def _longest_line(text: str) -> int:
    from rich.cells import cell_len

    return max((cell_len(line) for line in text.split("\n")), default=0)


def _overhead(n: int, compact: bool = False) -> int:
    """Columns a table of ``n`` columns spends outside its cells (no outer edge): a space
    each side of every cell and a rule between cells, or (``compact``) one space between
    cells."""
    if not n:
        return 0
    return n - 1 if compact else 3 * n - 1


def _layout(headers: list[str], cells: list[list[str]], numeric: list[bool],
            width: int) -> tuple[list[int], list[int], bool]:
    """Columns to keep, their widths, and whether the table is drawn compact (one space
    between columns, no rules), for a terminal ``width`` wide.

    Nothing is cut: a column is never narrower than its longest word, so a number (one
    word) stays whole and text wraps between words; a header longer than its column folds
    onto a second line. Where that does not fit with rules between the columns, the table
    is drawn compact; where even that does not fit, text columns (never a number column,
    never the first) are left out from the right; if numbers alone are wider than the
    terminal, the table is as wide as they need (the terminal wraps the lines)."""
    n = len(headers)
    natural = [max([_longest_line(headers[c])] + [_longest_line(t) for t in cells[c]])
               for c in range(n)]
    least = [max([1] + [_longest_word(t) for t in cells[c]]) for c in range(n)]
    kept = list(range(n))
    if sum(natural) + _overhead(n) <= width:
        return kept, natural, False
    compact = sum(least) + _overhead(n) > width
    droppable = [c for c in range(1, n) if not numeric[c]]
    while droppable and sum(least[c] for c in kept) + _overhead(len(kept), compact) > width:
        kept.remove(droppable.pop())
    # Then the widest columns give way first (as rich shares out a narrow terminal),
    # none below its longest word.
    widths = {c: natural[c] for c in kept}
    excess = sum(widths.values()) + _overhead(len(kept), compact) - width
    while excess > 0:
        shrinkable = [c for c in kept if widths[c] > least[c]]
        if not shrinkable:
            break
        c = max(shrinkable, key=lambda c: (widths[c], c))
        others = [widths[o] for o in shrinkable if o != c]
        step = max(1, min(widths[c] - least[c], excess,
                          widths[c] - max(others, default=0)))
        widths[c] -= step
        excess -= step
    return kept, [widths[c] for c in kept], compact


def to_table(report: Report, color: bool, width: int | None = None,
             decorate: bool = True, fit: bool | None = None) -> str:
    """Human output. Every string goes in as a rich ``Text``, never as markup, and escaped:
    a class name like ``[/bold]`` or ``:smile:`` or one holding ESC prints as itself.

    ``decorate=False`` (a pipe or a file) leaves out the title line and trailing spaces.
    ``fit`` (default: ``decorate``, a terminal) fits the table to ``width`` (see
    :func:`_layout`: numbers are never cut, text wraps or is left out, with a note);
    without it (a pipe or a file) nothing wraps and nothing is cut: a row is one line,
    however long, so ``grep``/``awk`` see whole rows. ``color=False`` writes no escape
    sequence at all (no colour, no bold), and draws ``--show`` pictures in characters."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    fit = decorate if fit is None else fit
    width = width or 120
    buf = io.StringIO()
    console = Console(
        # Each renderable is printed at its own width (print(width=...) can only narrow).
        file=buf, force_terminal=color, no_color=not color, width=1 << 20,
        highlight=False, color_system="truecolor" if color else None, emoji=False,
        markup=False,
    )
    wrap = {} if fit else {"no_wrap": True, "overflow": "fold"}

    def text(value: str, **style) -> Text:
        return Text(value, overflow="fold", **style) if fit else Text(value, **wrap, **style)

    def put(renderable, needed: int) -> None:
        # A terminal: its width, or what a row needs where nothing narrower keeps it whole.
        # A pipe: exactly what the longest line needs, so no line wraps.
        console.print(renderable, width=max(width, needed) if fit else max(needed, 1))

    notes = list(report.notes)
    if decorate:
        title = _safe(report.title)
        put(text(title, style="bold"),
            _least_text_width(title) if fit else _longest_line(title))
    if report.summary:
        keys = [_safe(k) for k, _ in report.summary]
        values = [_safe(v) for _, v in report.summary]
        key_w = max(_longest_line(k) for k in keys)
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold cyan", no_wrap=True, width=key_w)
        grid.add_column(**wrap)
        for key, value in zip(keys, values, strict=True):
            grid.add_row(text(key), text(value))
        value_w = max(_least_text_width(v) if fit else _longest_line(v) for v in values)
        put(grid, key_w + 2 + value_w)
    if report.rows:
        pct = [col in report.percent for col in report.columns]
        headers = [_safe(col) for col in report.columns]
        n = len(headers)
        cells = [["" if i >= len(row) or row[i] is None else _safe(_fmt_cell(
            row[i], percent=pct[i])) for row in report.rows] for i in range(n)]
        numeric = [all(_is_number(row[i]) for row in report.rows
                       if i < len(row) and row[i] is not None) for i in range(n)]
        compact = False
        if fit:
            kept, widths, compact = _layout(headers, cells, numeric, width)
        else:
            kept = list(range(n))
            widths = [max([_longest_line(headers[c])] + [_longest_line(t) for t in cells[c]])
                      for c in kept]
        table = (Table(show_edge=False, header_style="bold", box=box.SIMPLE_HEAD,
                       padding=(0, 0)) if compact else
                 Table(show_edge=False, header_style="bold"))
        last = report.columns[-1]
        for c, w in zip(kept, widths, strict=True):
            table.add_column(text(headers[c]), width=w, **wrap,
                             justify="right" if report.columns[c] != last else "left")
        for r in range(len(report.rows)):
            table.add_row(*(text(cells[c][r]) for c in kept))
        put(table, sum(widths) + _overhead(len(kept), compact))
        left_out = [headers[c] for c in range(n) if c not in kept]
        if left_out:
            notes.append(f"{', '.join(left_out)} left out to fit {width} columns; a wider "
                         "terminal, --json or --format csv shows "
                         + ("it" if len(left_out) == 1 else "them"))
    if report.pictures:
        from bilin_cli.render.terminal_images import vector_gallery

        console.print(vector_gallery(report.pictures, report.picture_shape, color=color),
                      width=max(width, 1))
    for note in notes:
        line = f"note: {_safe_lines(note)}"
        put(text(line, style="dim"), _least_text_width(line) if fit else _longest_line(line))
    out = buf.getvalue()
    if not decorate:
        out = "".join(line.rstrip() + "\n" for line in out.splitlines())
    return out


def closed_pipe() -> None:
    """The reader went away (``| head``): end quietly with exit code 0.

    As the Python documentation recommends, stdout is pointed at ``/dev/null`` first, so
    the interpreter's last flush at exit does not fail again ("Exception ignored ...
    BrokenPipeError" on stderr, exit code 120)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass
    raise SystemExit(0)


def write_stdout(text: str) -> None:
    """``text`` to stdout, flushed; a closed pipe ends the run quietly (exit 0)."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        closed_pipe()


def _human(report: Report, tty: bool) -> str:
    """The table as it goes to stdout (``tty``) or to a pipe or file."""
    width = shutil.get_terminal_size().columns if tty else 120
    # Colour (and --show's coloured blocks) only on a terminal without NO_COLOR; elsewhere
    # no escape sequence at all, and the pictures are drawn in characters.
    return to_table(report, color=tty and color_allowed(), width=width, decorate=tty)


def emit(report: Report, fmt: str, output: str | None = None, force: bool = False) -> None:
    """Render ``report`` as ``fmt`` to stdout or atomically to ``output``."""
    for w in report.warnings:
        print(f"warning: {_safe_lines(w)}", file=sys.stderr)
    if fmt == "npz":
        if not report.arrays:
            raise BilinError(f"'{report.title}' has no array data for --format npz")
        arrays = {k: np.asarray(v) for k, v in report.arrays.items()}
        atomic_write(output, lambda fh: np.savez(fh, **arrays), force)
        say_wrote(output, ", ".join(arrays))
        return
    if fmt == "json":
        text = to_json(report)
    elif fmt in ("csv", "tsv"):
        # Exact in a file or a pipe; escaped only where it would reach a terminal raw.
        tty = output is None and sys.stdout.isatty()
        text = to_delimited(report, "," if fmt == "csv" else "\t", escape=tty)
    else:
        text = _human(report, output is None and sys.stdout.isatty())
    if output is None:
        write_stdout(text)
    else:
        atomic_write(output, lambda fh: fh.write(text.encode("utf-8")), force)
        say_wrote(output)


class Stream:
    """Many reports of one kind, one per direction, written as they come:

    * ``json``: JSON Lines, one document per line, each exactly what one report prints;
    * ``table``: one table after another, a blank line between;
    * ``csv``/``tsv``: one header, every report's rows with a first column ``direction``
      (the key given to :meth:`add`);
    * ``npz``: one file, each report's arrays under ``KEY_NAME`` (``class3_eigenvalues``)
      and ``directions``, the keys in order.

    To stdout each report is written as soon as it is added; ``-o FILE`` is written
    atomically by :meth:`close`. Each warning is printed once, when the first report that
    carries it is added (a later direction can add one: float32 overflowed for it alone).
    """

    def __init__(self, fmt: str, output: str | None = None, force: bool = False):
        self.fmt, self.output, self.force = fmt, output, force
        self.texts: list[str] = []
        self.arrays: dict[str, np.ndarray] = {}
        self.keys: list[str] = []
        self.tty = output is None and sys.stdout.isatty()
        self.warned: set[str] = set()

    def add(self, report: Report, key: str) -> None:
        for w in report.warnings:
            if w not in self.warned:
                self.warned.add(w)
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
            text = ("" if first else "\n") + _human(report, self.tty)
        if self.output is None:
            write_stdout(text)
        else:
            self.texts.append(text)

    def close(self) -> None:
        if self.output is None:
            return
        if self.fmt == "npz":
            arrays = {**self.arrays, "directions": np.array(self.keys)}
            atomic_write(self.output, lambda fh: np.savez(fh, **arrays), self.force)
            say_wrote(self.output, f"{len(self.keys)} directions: KEY_eigenvalues, ...; "
                      "directions lists the keys")
            return
        data = "".join(self.texts).encode("utf-8")
        atomic_write(self.output, lambda fh: fh.write(data), self.force)
        say_wrote(self.output)

"""Option definitions shared by every command, so every command behaves the same.

Output options (``--json``, ``--format``, ``-o``, ``--force``) are defined once
here and passed to :func:`output_settings`; checkpoint options likewise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from bilin_cli.cli.shards import shard_option
from bilin_cli.core.errors import BilinError
from bilin_cli.render.output import FORMATS
from bilin_cli.storage.atomic import check_writable

# Numeric option values, one rule for every command:
#
# * a value that does not parse as the option's type (``--top x``, ``--sweep 1,,2``,
#   ``--shape 28by28``) is a usage error: exit 2, with click's usage box;
# * a value that parses but lies outside the option's range (a count below 1, a negative
#   seed, a NaN, infinite or negative strength, an energy share outside (0, 1]) is
#   ``error: --OPT must be ..., got VALUE`` and exit 1, raised while the options are read,
#   before anything is loaded; never clamped to something else;
# * options that do not go together are usage errors (exit 2), checked in the commands.
#
# :func:`count` and :func:`number` build the click callbacks that check the range, and
# :func:`number_list` parses the comma lists (``--sweep 0,2,5``) under the same rule.


def _opt_name(param) -> str:
    longs = [o for o in getattr(param, "opts", ()) if o.startswith("--")]
    return longs[0] if longs else (getattr(param, "opts", None) or [param.name])[0]


def _values(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def count(minimum: int = 1, maximum: int | None = None, says: str | None = None) -> Callable:
    """Callback for an integer option (each value of a repeatable one): ``minimum..maximum``.

    ``says`` is the rule as the error message words it (default from the bounds).
    """
    if says is None:
        if maximum is not None:
            says = f"an integer in {minimum}..{maximum}"
        elif minimum == 1:
            says = "a positive integer"
        elif minimum == 0:
            says = "0 or positive"
        else:
            says = f"an integer >= {minimum}"

    def check(ctx, param, value):
        for v in _values(value):
            if v < minimum or (maximum is not None and v > maximum):
                raise BilinError(f"{_opt_name(param)} must be {says}, got {v}")
        return value

    return check


def _in_range(v: float, low: float | None, high: float | None, low_open: bool) -> bool:
    if isinstance(v, float) and not math.isfinite(v):
        return False
    if low is not None and (v <= low if low_open else v < low):
        return False
    return high is None or v <= high


def number(low: float | None = None, high: float | None = None, low_open: bool = False,
           says: str = "a finite number") -> Callable:
    """Callback for a float option: finite (never NaN or infinity), in ``[low, high]``
    (``(low, high]`` with ``low_open``)."""

    def check(ctx, param, value):
        for v in _values(value):
            if not _in_range(v, low, high, low_open):
                raise BilinError(f"{_opt_name(param)} must be {says}, got {v}")
        return value

    return check


def number_list(text: str, option: str, integer: bool, low: float, low_open: bool = False,
                high: float | None = None, says: str = "") -> list:
    """A comma-separated list (``0,2,5``) as sorted distinct numbers.

    A list that does not parse (an empty item, a word, ``1.5`` where integers are
    wanted) is a usage error; a value out of range (see :func:`number`) is a BilinError.
    """
    kind = "integers" if integer else "numbers"
    items = [t.strip() for t in text.split(",")]
    if not any(items):
        raise typer.BadParameter(f"give a comma-separated list of {kind}", param_hint=option)
    values = []
    for t in items:
        if not t:
            raise typer.BadParameter(f"empty item in {text!r}: give a comma-separated list of "
                                     f"{kind}", param_hint=option)
        try:
            values.append(int(t) if integer else float(t))
        except ValueError:
            raise typer.BadParameter(f"{t[:40]!r} is not {'an integer' if integer else 'a number'}"
                                     f"; give a comma-separated list of {kind}",
                                     param_hint=option) from None
    for v in values:
        if not _in_range(v, low, high, low_open):
            raise BilinError(f"{option}: {v} is out of range; give {says}")
    return sorted(set(values))



# Lists and ranges of indices (``--class 0,3,7``, ``--class all``, ``--feature 0-511``,
# ``--token-file ids.txt``), one parser for every command that takes many directions:
#
# * ``all`` (alone), ``a-b`` (inclusive, a <= b), ``a,b,c`` and any mix of the last two;
# * an empty item (``1,,2``), a word or a fraction is a usage error (exit 2);
# * a negative index or a reversed range (``5-2``) is ``error: ...`` (exit 1), and so is
#   an index beyond what the model has, once that is known (:meth:`IndexList.resolve`).

_ITEM = re.compile(r"(\d+)(?:-(\d+))?")
MAX_INDEX_ITEMS = 10_000_000


@dataclass
class IndexList:
    """Indices as written: ``all`` or ``(first, last)`` ranges, resolved against a size later."""

    option: str
    text: str
    ranges: list[tuple[int, int]] = field(default_factory=list)
    all: bool = False

    @property
    def many(self) -> bool:
        """True unless it names exactly one index the plain way (``3``)."""
        return self.all or len(self.ranges) != 1 or self.ranges[0][0] != self.ranges[0][1]

    def resolve(self, n: int, what: str = "index", plural: str = "entries") -> list[int]:
        """The indices in the order written; one error line for one out of ``0..n-1``."""
        if self.all:
            return list(range(n))
        out: list[int] = []
        for a, b in self.ranges:
            if b >= n:
                bad = a if a >= n else b
                raise BilinError(f"{what} {bad} is out of range: this model has {n} {plural} "
                                 f"(0..{n - 1})")
            out.extend(range(a, b + 1))
        return out


def _index_items(items: list[str], option: str, text: str, source: str = "") -> IndexList:
    spec = IndexList(option, text)
    where = f" in {source}" if source else f" in {text[:60]!r}"
    for t in items:
        if not t:
            raise typer.BadParameter(f"empty item{where}: give indices like 3, 0,3,7, 0-9 or "
                                     "all", param_hint=option)
        if t.lower() == "all":
            if len(items) > 1:
                raise typer.BadParameter("'all' stands alone; give it without other indices",
                                         param_hint=option)
            spec.all = True
            return spec
        if re.fullmatch(r"-\d+(-\d+)?", t):
            raise BilinError(f"{option} {t} is out of range: indices count from 0")
        m = _ITEM.fullmatch(t)
        if m is None:
            raise typer.BadParameter(f"{t[:40]!r} is not an index or a range (give 3, 0,3,7, "
                                     "0-9 or all)", param_hint=option)
        a = int(m.group(1))
        b = a if m.group(2) is None else int(m.group(2))
        if b < a:
            raise BilinError(f"{option}: the range {t} runs backwards; write {b}-{a}")
        if b - a >= MAX_INDEX_ITEMS:
            raise BilinError(f"{option}: the range {t} names more than {MAX_INDEX_ITEMS:,} "
                             "indices")
        spec.ranges.append((a, b))
    return spec


def index_list(text: str, option: str) -> IndexList:
    """Parse ``all``, ``a-b`` or ``a,b,c`` (mixed: ``0,4-6``); see :class:`IndexList`."""
    text = str(text)
    return _index_items([t.strip() for t in text.split(",")], option, text)


def index_lists(values, option: str) -> list[IndexList]:
    """Every value of a repeatable option, each parsed by :func:`index_list`."""
    return [index_list(v, option) for v in _values(values)]


def index_file(path: str | Path, option: str = "--token-file") -> IndexList:
    """Indices from a file: one per line or separated by spaces or commas (ranges and
    ``all`` as in :func:`index_list`); ``#`` starts a comment."""
    from bilin_cli.core.printable import printable
    from bilin_cli.storage.files import regular_file

    p = regular_file(path, "index file")
    if p.stat().st_size > 64 * 1024**2:
        raise BilinError(f"{printable(p)}: over 64 MB; give a smaller list of indices")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BilinError(f"{printable(p)}: not UTF-8 text; give indices one per line") from None
    body = " ".join(line.split("#", 1)[0] for line in text.splitlines())
    items = [t for t in re.split(r"[\s,]+", body) if t]
    if not items:
        raise BilinError(f"{printable(p)}: no indices in the file; give one per line")
    return _index_items(items, option, str(p), source=printable(p))


Ckpt = Annotated[
    Path,
    typer.Argument(
        help="Checkpoint: a .safetensors file, a .pt/.bin state dict, or a Hugging Face "
        "style directory (config.json + weights, sharded or not).",
        show_default=False, metavar="CKPT",
    ),
]
MapOpt = Annotated[
    Path | None,
    typer.Option(
        "--map",
        help='JSON key mapping for unknown layouts: {"layers": [{"wv": KEY, "p": KEY}], '
        '"embed": KEY, "head": KEY} ("w"/"v" for separate matrices; {i} templates allowed).',
        show_default=False,
    ),
]
Float64Opt = Annotated[
    bool, typer.Option("--float64", help="Compute in float64 (default float32).")
]
LayerOpt = Annotated[
    int | None,
    typer.Option(
        "--layer", "-l", help="Bilinear layer index (default: the only or the last; -1 = last).",
        show_default=False,
    ),
]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format", "-f", help="table | json | csv | tsv | npz (npz needs -o).",
        show_default=False, metavar="FORMAT",
    ),
]
OutputOpt = Annotated[
    str | None,
    typer.Option(
        "--output", "-o", help="Write to FILE (atomically) instead of stdout.", show_default=False,
        metavar="FILE",
    ),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing -o file.")]

ShardOpt = Annotated[
    str | None,
    typer.Option("--shard", help="i/N: compute only the i-th of N contiguous blocks of the "
                 "directions (i from 1, as $SLURM_ARRAY_TASK_ID) and write a part file "
                 "(-o PART or stdout); 'bilin merge' joins the parts into what one run prints.",
                 show_default=False, metavar="i/N", callback=shard_option),
]
TokenFileOpt = Annotated[
    Path | None,
    typer.Option("--token-file", help="Token ids from a file: one per line or separated by "
                 "spaces or commas (ranges a-b allowed, # starts a comment).",
                 show_default=False),
]

# The output-direction options of ``eig`` and ``spectrum`` (with TokenFileOpt): each a
# class, token or SAE feature index (or a list, a range or all), a token's text or a .npy.
ClassOpt = Annotated[
    list[str] | None,
    typer.Option("--class", "-c", help="Output class C (row C of the head), or many: a "
                 "list 0,3,7, a range 0-4 or all (repeatable); one result per class.",
                 show_default=False, metavar="C"),
]
TokenOpt = Annotated[
    list[str] | None,
    typer.Option("--token", help="Token id T (row T of the unembedding; LMs), or a list, "
                 "a range or all (repeatable).", show_default=False, metavar="T"),
]
TokenStrOpt = Annotated[
    list[str] | None,
    typer.Option("--token-str", help="A token by its text (character vocabulary or "
                 "tokenizer.json); must be one token (repeatable).", show_default=False),
]
SaeOpt = Annotated[
    Path | None,
    typer.Option("--sae", help="Output SAE (paper or SAELens format); with --feature F its "
                 "encoder row is the direction.", show_default=False),
]
FeatureOpt = Annotated[
    list[str] | None,
    typer.Option("--feature", help="Feature index of --sae, or a list, a range or all "
                 "(repeatable).", show_default=False, metavar="F"),
]
DirectionOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--direction", "-d",
        help="A .npy vector in the layer's output space (logits for the layer that feeds "
        "a classifier head, so class 3 minus class 5 is one direction; the residual "
        "stream for a transformer layer). Repeatable.",
        show_default=False,
    ),
]


def resolve_format(json_flag: bool, fmt: str | None, output: str | None) -> str:
    """The format asked for; conflicting or incomplete requests are usage errors."""
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


def output_settings(
    json_flag: bool,
    fmt: str | None,
    output: str | None,
    force: bool = False,
    *files: str | Path | None,
    figures: tuple[str | Path | None, ...] = (),
) -> str:
    """Validate the shared output options before any work is done; return the format.

    ``output`` and any other ``files`` the command will write (``--plot``, ``--save``)
    must be writable: they may not exist without ``--force``, so a long computation
    never ends in a refusal to save it. ``figures`` (also written) must name a format
    matplotlib writes by extension (.png, .pdf, .svg): see :func:`check_figure`.
    """
    chosen = resolve_format(json_flag, fmt.lower() if fmt else None, output)
    for fig in figures:
        if fig is not None:
            check_figure(fig, force)
    for target in (output, *files):
        if target is not None:
            check_writable(target, force)
    return chosen


def check_figure(path: str | Path, force: bool) -> Path:
    """A figure's file name, checked before any work: an extension matplotlib writes
    (.png, .pdf, .svg; anything else is one error line) and writable (see
    :func:`check_writable`)."""
    from bilin_cli.render.figures import figure_format

    figure_format(path)
    return check_writable(path, force)


# Hints for a repeated option of one command, after the generic message.
_REPEAT_HINTS: dict[tuple[str, str], str] = {}


def refuse_repeated(command, name: str | None, args: list[str], parent) -> None:
    """A single-value option given twice (``--class 1 --class 2``) is an error, not the
    last one silently winning. Flags (``--json --json``) and repeatable options pass."""
    import typer

    if any(a in ("-h", "--help") for a in args):
        return
    ctx = typer.Context(command, info_name=name, parent=parent, resilient_parsing=True)
    try:
        _, _, order = command.make_parser(ctx).parse_args(args=list(args))
    except typer.TyperException:
        return  # a usage error: the real parse reports it
    seen: dict = {}
    for param in order:
        if getattr(param, "param_type_name", "") == "option" and not param.multiple \
                and not getattr(param, "is_flag", False) and not getattr(param, "count", False):
            seen[param] = seen.get(param, 0) + 1
    for param, n in seen.items():
        if n > 1:
            hint = _REPEAT_HINTS.get((name, param.name))
            raise BilinError(f"{_opt_name(param)} was given {n} times; it takes one value"
                             + (f" ({hint})" if hint else ""))


def warned(report, *models):
    """``report`` carrying the models' warnings too (each once): the CLI prints them."""
    for w in (w for m in models for w in m.warnings):
        if w not in report.warnings:
            report.warnings = [*report.warnings, w]
    return report


def dtype_of(float64: bool) -> type:
    return np.float64 if float64 else np.float32


DataOpt = Annotated[
    Path | None,
    typer.Option(
        "--data", help="Labelled data: .npz (x, y) or a directory of idx(.gz) files "
        "(default: a shipped sample's own test split).", show_default=False,
    ),
]

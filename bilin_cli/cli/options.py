"""Option definitions shared by every command, so every command behaves the same.

Output options (``--json``, ``--format``, ``-o``, ``--force``) are defined once
here and passed to :func:`output_settings`; checkpoint options likewise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from bilin_cli.atomic import check_writable
from bilin_cli.errors import BilinError
from bilin_cli.layouts import read_map, recognise
from bilin_cli.loading import Checkpoint, open_checkpoint
from bilin_cli.model import BilinearModel
from bilin_cli.render import resolve_format

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
        show_default=False,
    ),
]
OutputOpt = Annotated[
    str | None,
    typer.Option(
        "--output", "-o", help="Write to FILE (atomically) instead of stdout.", show_default=False
    ),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing -o file.")]


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
    from bilin_cli.figures import figure_format

    figure_format(path)
    return check_writable(path, force)


# Hints for a repeated option of one command, after the generic message.
_REPEAT_HINTS = {
    ("eig", "class_"): "bilin eig decomposes one direction per run; bilin spectrum takes "
                       "--class repeatedly, every class by default",
}
for _name in ("token", "token_str", "feature", "direction"):
    _REPEAT_HINTS[("eig", _name)] = ("bilin eig decomposes one direction per run; bilin "
                                     "spectrum takes it repeatedly")


def refuse_repeated(command, name: str | None, args: list[str], parent) -> None:
    """A single-value option given twice (``--class 1 --class 2``) is an error, not the
    last one silently winning. Flags (``--json --json``) and repeatable options pass."""
    # typer vendors its own click (typer._click); its commands are built from that one.
    from typer._click.core import Context
    from typer._click.exceptions import UsageError

    if any(a in ("-h", "--help") for a in args):
        return
    ctx = Context(command, info_name=name, parent=parent, resilient_parsing=True)
    try:
        _, _, order = command.make_parser(ctx).parse_args(args=list(args))
    except UsageError:
        return  # the real parse reports it
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


def _strict_group():
    from typer.core import TyperGroup

    class StrictGroup(TyperGroup):
        """The app's group: refuses a repeated single-value option of any command."""

        def resolve_command(self, ctx, args):
            name, cmd, rest = super().resolve_command(ctx, args)
            if cmd is not None:
                refuse_repeated(cmd, name, rest, ctx)
            return name, cmd, rest

    return StrictGroup


StrictGroup = _strict_group()


def dtype_of(float64: bool) -> type:
    return np.float64 if float64 else np.float32


def load(ckpt: Path, map_file: Path | None) -> tuple[Checkpoint, BilinearModel]:
    checkpoint = open_checkpoint(ckpt)
    mapping = read_map(map_file) if map_file is not None else None
    return checkpoint, recognise(checkpoint, mapping)


DataOpt = Annotated[
    Path | None,
    typer.Option(
        "--data", help="Labelled data: .npz (x, y) or a directory of idx(.gz) files "
        "(default: a shipped sample's own test split).", show_default=False,
    ),
]


def load_data(data: Path | None, ckpt: Path, config: dict, dtype: type):
    from bilin_cli.data import default_data_path, load_dataset
    from bilin_cli.errors import BilinError

    path = data if data is not None else default_data_path(ckpt, config)
    if path is None:
        raise BilinError("no data: give --data FILE.npz (arrays x, y) or an idx directory")
    return load_dataset(path, dtype)

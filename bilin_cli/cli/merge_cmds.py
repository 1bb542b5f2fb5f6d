"""``bilin merge``: join the part files of one job run with ``--shard i/N``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bilin_cli.cli.options import ForceOpt, FormatOpt, JsonOpt, OutputOpt, output_settings
from bilin_cli.cli.shards import check_parts, read_part
from bilin_cli.cli.shards import merge as merge_parts
from bilin_cli.core.errors import BilinError
from bilin_cli.core.printable import printable


def merge(
    parts: Annotated[
        list[Path],
        typer.Argument(help="Part files written by eig, spectrum or rank-features with "
                       "--shard i/N, every shard of one job, in any order.",
                       show_default=False, metavar="PART..."),
    ],
    json_: JsonOpt = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
) -> None:
    """Join the parts of a job run with --shard i/N into what one run prints.

    Every shard of one job must be given once (in any order): parts of another job
    (another checkpoint, command or option), a missing shard or a shard given twice
    is an error. The output is the job's own format (--json, --format csv, ...) unless
    --json or --format says otherwise; byte for byte what the job run whole prints.
    rank-features' --top is applied to the union, as the whole run applies it.

    Examples:

    \b
        bilin merge sample_checkpoints/parts/toy-spectrum.part1 sample_checkpoints/parts/toy-spectrum.part2
        bilin merge sample_checkpoints/parts/toy-spectrum.part2 sample_checkpoints/parts/toy-spectrum.part1 --format csv -o toy-spectrum.csv

    The parts there were written by (one line per shard, run anywhere, in any order):

    \b
        bilin spectrum sample_checkpoints/toy --json --shard 1/2 -o toy-spectrum.part1
        bilin spectrum sample_checkpoints/toy --json --shard 2/2 -o toy-spectrum.part2
    """
    # Every part is checked against the part schema (bilin_cli.cli.shards) as it is read.
    docs = [read_part(p) for p in parts]
    ordered = check_parts(docs)
    given = json_ or fmt is not None
    fmt_ = output_settings(json_, fmt, output, force) if given else \
        output_settings(False, ordered[0]["format"], output, force)
    try:
        merge_parts(ordered, fmt_, output, force)
    except (TypeError, KeyError, IndexError, ValueError, AttributeError) as exc:
        # The schema covers every field merge reads; this is the net under it.
        names = ", ".join(p["_path"] for p in ordered[:4])
        raise BilinError(f"{names}: a damaged part file ({type(exc).__name__}: "
                         f"{printable(exc, 200)}); write the parts again") from None


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=True)(merge)

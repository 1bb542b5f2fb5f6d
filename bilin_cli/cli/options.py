"""Option definitions shared by every command, so every command behaves the same.

Output options (``--json``, ``--format``, ``-o``, ``--force``) are defined once
here and passed to :func:`output_settings`; checkpoint options likewise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from bilin_cli.atomic import check_writable
from bilin_cli.layouts import read_map, recognise
from bilin_cli.loading import Checkpoint, open_checkpoint
from bilin_cli.model import BilinearModel
from bilin_cli.render import resolve_format

Ckpt = Annotated[
    Path,
    typer.Argument(
        help="Checkpoint: a .safetensors file, a .pt/.bin state dict, or a Hugging Face "
        "style directory (config.json + weights, sharded or not).",
        show_default=False,
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
) -> str:
    """Validate the shared output options before any work is done; return the format.

    ``output`` and any other ``files`` the command will write (``--plot``, ``--save``)
    must be writable: they may not exist without ``--force``, so a long computation
    never ends in a refusal to save it.
    """
    chosen = resolve_format(json_flag, fmt.lower() if fmt else None, output)
    for target in (output, *files):
        if target is not None:
            check_writable(target, force)
    return chosen


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

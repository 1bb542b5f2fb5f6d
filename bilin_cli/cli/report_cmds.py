"""``bilin report``: a browsable static HTML report of a checkpoint (opens from disk)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from bilin_cli import api
from bilin_cli.cli.options import (
    Ckpt,
    DataOpt,
    Float64Opt,
    LayerOpt,
    MapOpt,
    count,
    dtype_of,
    index_lists,
)
from bilin_cli.core.printable import printable
from bilin_cli.render.progress import progress


def report(
    ckpt: Ckpt,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder to write the report to (index.html, "
                           "one page per direction, plotly.min.js).", metavar="DIR",
                           show_default=False)
    ],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing report folder.")]
    = False,
    layer: LayerOpt = None,
    classes: Annotated[
        list[str] | None,
        typer.Option("--classes", "--class", help="Classes to report: C, a list 0,3,7, a "
                     "range 0-4 or all (default: all).", show_default=False, metavar="C"),
    ] = None,
    tokens: Annotated[
        list[str] | None,
        typer.Option("--tokens", "--token", help="Language models: token ids to report, a list "
                     "or a range (default: all; with --sae: none).", show_default=False,
                     metavar="T"),
    ] = None,
    sae: Annotated[
        Path | None,
        typer.Option("--sae", help="Output SAE of the layer (paper or SAELens format): one "
                     "page per feature, its encoder row the direction.", show_default=False),
    ] = None,
    features: Annotated[
        list[str] | None,
        typer.Option("--features", "--feature", help="Features of --sae to report: a list or a "
                     "range such as 0-63 (default: the 64 most low-rank, as bilin rank-features "
                     "ranks them).", show_default=False, metavar="F"),
    ] = None,
    sae_in: Annotated[
        Path | None,
        typer.Option("--sae-in", help="Input SAE of the layer: read each eigenvector as its "
                     "input features (D^T v).", show_default=False),
    ] = None,
    top: Annotated[
        int, typer.Option("--top", "-k", help="Eigenvectors shown per sign on each page.",
                          callback=count(1, 50))
    ] = 4,
    data: DataOpt = None,
    float64: Float64Opt = False,
    map_file: MapOpt = None,
    json_: Annotated[bool, typer.Option("--json", help="Print a JSON summary of the report "
                                        "(its index, pages, time) instead of the path.")] = False,
) -> None:
    """Write a browsable HTML report: an overview and one page per output direction.

    The overview shows the model (as bilin info), its layers, every direction's
    spectrum summary (effective rank, top-K share, the truncation bound) and, for
    classifiers, accuracy against the number K of eigenpairs kept per class. Each
    direction's page (class-3.html, token-17.html, feature-12.html) shows its
    eigenvalue spectrum, its top positive and negative eigenvectors (images for
    image models, token readings for language models, input-SAE features with
    --sae-in), the truncation error bound against K and, for classifiers, the
    adversarial mask of its top positive eigenvector. Figures are interactive
    (hover values, zoom). The folder opens from disk: no server and no network
    (plotly.js is written once into it). Prints the path of index.html.

    Examples:

    \b
        bilin report sample_checkpoints/mnist -o mnist-report
        bilin report sample_checkpoints/shakespeare --tokens 0-9 -o shakespeare-report
        bilin report sample_checkpoints/shakespeare --layer 1 --sae sample_checkpoints/shakespeare/sae-mlp-out-L1 --sae-in sample_checkpoints/shakespeare/sae-mlp-in-L1 --features 0-7 -o features-report
    """
    from bilin_cli.render.report_html import check_target, write_report

    if features and sae is None:
        raise typer.BadParameter("--features needs --sae", param_hint="--features")
    check_target(output, force)
    start = time.perf_counter()
    result = api.report(
        ckpt, map=map_file, layer=layer, classes=index_lists(classes, "--classes") or None,
        tokens=index_lists(tokens, "--tokens") or None, sae=sae,
        features=index_lists(features, "--features") or None, sae_in=sae_in, top=top,
        data=data, dtype=dtype_of(float64), progress=progress)
    with progress("writing pages", len(result.pages)) as advance:
        index = write_report(result, output, force, advance)
    if json_:
        print(json.dumps({"index": str(index), "folder": str(output), "layer": result.layer,
                          "pages": [f"{p.key}.html" for p in result.pages],
                          "notes": result.notes,
                          "seconds": round(time.perf_counter() - start, 2)}))
    else:
        print(printable(index, limit=None))


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=True)(report)

"""Commands about how few eigenvectors a classifier needs: ``truncate`` and ``eval``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bilin_cli import api
from bilin_cli.cli.options import (
    Ckpt,
    DataOpt,
    Float64Opt,
    ForceOpt,
    FormatOpt,
    JsonOpt,
    MapOpt,
    OutputOpt,
    count,
    dtype_of,
    number,
    number_list,
    output_settings,
    warned,
)
from bilin_cli.core.printable import say_wrote
from bilin_cli.render.output import emit
from bilin_cli.render.progress import progress
from bilin_cli.render.views import eval_report, sweep_report, truncate_report
from bilin_cli.storage.writing import check_checkpoint_target


def _parse_ks(text: str) -> list[int]:
    return number_list(text, "--sweep", integer=True, low=0, says="ranks >= 0")


def truncate(
    ckpt: Ckpt,
    rank: Annotated[
        int | None, typer.Option("--rank", help="Keep K eigenpairs per class.",
                                 show_default=False, callback=count(0))
    ] = None,
    energy: Annotated[
        float | None,
        typer.Option("--energy", help="Per class, the smallest K holding this share of "
                     "sum |lambda| (e.g. 0.99).", show_default=False,
                     callback=number(0, 1, low_open=True, says="in (0, 1]")),
    ] = None,
    sweep: Annotated[
        str | None,
        typer.Option("--sweep", help="Accuracy versus K for these ranks (e.g. 0,1,2,5,10,20); "
                     "writes no checkpoint.", show_default=False),
    ] = None,
    data: DataOpt = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="With --sweep: draw the curve to a figure "
                                  "(.png, .pdf or .svg, by the extension).", show_default=False)
    ] = None,
    float64: Float64Opt = False,
    map_file: MapOpt = None,
    json_: JsonOpt = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
) -> None:
    """Keep each class's K eigenpairs of largest |lambda|; write the truncated model to -o.

    The truncated model is an ordinary bilinear checkpoint (hidden unit (c, i) has
    W = V = v_ci and head weight lambda_ci) that every bilin command reads. Per class
    it reports K, the share of sum |lambda| kept, and the exact error bound
    |error| <= max|lambda discarded| * ||x||^2 (x in the layer's input space).
    Models with biases are truncated in the augmented form (input [x; 1]).

    -o NAME.safetensors writes one file (config embedded); -o DIR writes a directory
    (model.safetensors + config.json). The per-class report goes to stdout. With
    --sweep no checkpoint is written and -o takes the sweep table.

    Examples:

    \b
        bilin truncate sample_checkpoints/mnist --rank 10 -o mnist-k10.safetensors
        bilin truncate sample_checkpoints/mnist --energy 0.9 -o mnist-e90
        bilin truncate sample_checkpoints/mnist --sweep 0,1,2,5,10,20,30 --plot curve.png
    """
    ks = _parse_ks(sweep) if sweep is not None else None
    if ks is None and (rank is None) == (energy is None):
        raise typer.BadParameter("give --rank K, --energy SHARE or --sweep K1,K2,...",
                                 param_hint="--rank")
    if ks is not None and (rank is not None or energy is not None):
        raise typer.BadParameter("--sweep evaluates many ranks; drop --rank/--energy",
                                 param_hint="--sweep")
    if plot is not None and ks is None:
        raise typer.BadParameter("--plot draws the --sweep curve", param_hint="--plot")
    checkpoint_out = None
    if ks is None:
        if output is None:
            raise typer.BadParameter("where should the truncated model go? add -o OUT.safetensors",
                                     param_hint="-o")
        # -o names the command's main output: here the checkpoint; the report goes to stdout.
        checkpoint_out, output = Path(output), None
        check_checkpoint_target(checkpoint_out, force)
    fmt_ = output_settings(json_, fmt, output, force, figures=(plot,))
    dtype = dtype_of(float64)
    model = api.load(ckpt, map_file)
    if ks is not None:
        result = api.truncation_sweep(model, ks, data=data, dtype=dtype, progress=progress)
        if plot is not None:
            from bilin_cli.render.plotting import accuracy_curve

            accuracy_curve(result.ks.tolist(), [r["accuracy"] for r in result.rows],
                           result.full_accuracy,
                           f"{Path(ckpt).name}: accuracy vs eigenvectors per class", plot, force)
            say_wrote(plot)
        emit(warned(sweep_report(result.as_dict()), model), fmt_, output, force)
        return
    with progress("eigendecomposing classes", model.shapes[-1].o) as advance:
        t = api.truncate(model, rank, energy, evaluate=False, output=checkpoint_out,
                         force=force, dtype=dtype, advance=advance)
    say_wrote(t.output, f"{t.hidden_units} hidden units")
    emit(truncate_report(t.as_dict()), fmt_, output, force)


def evaluate(
    ckpt: Ckpt,
    data: DataOpt = None,
    confusion: Annotated[
        bool, typer.Option("--confusion", help="Also show the confusion matrix.")
    ] = False,
    float64: Float64Opt = False,
    map_file: MapOpt = None,
    json_: JsonOpt = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
) -> None:
    """Accuracy (overall and per class) of a classifier on labelled data.

    DATA is an .npz with arrays x and y (uint8 images are scaled by 1/255 to [0, 1],
    as the samples were trained; float inputs are used as stored) or a directory of
    MNIST-style idx(.gz) files. A shipped sample uses its own test split by default.

    Examples:

    \b
        bilin eval sample_checkpoints/mnist
        bilin eval sample_checkpoints/fmnist --confusion --json | jq .accuracy
    """
    fmt_ = output_settings(json_, fmt, output, force)
    dtype = dtype_of(float64)
    model = api.load(ckpt, map_file)
    result = api.evaluate(model, data, dtype)
    emit(warned(eval_report(result.as_dict(confusion)), model), fmt_, output, force)


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=True)(truncate)
    app.command("eval", no_args_is_help=True)(evaluate)

"""Commands that draw: ``plot`` (the paper's eigenspectrum figure)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from bilin_cli import api
from bilin_cli.cli.options import (
    Ckpt,
    Float64Opt,
    ForceOpt,
    LayerOpt,
    MapOpt,
    check_figure,
    count,
    dtype_of,
    index_lists,
)
from bilin_cli.core.errors import BilinError
from bilin_cli.core.printable import say_wrote
from bilin_cli.render.progress import progress


def _parse_shape(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        a, b = (int(t) for t in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter("HxW, e.g. 28x28", param_hint="--shape") from None
    if a < 1 or b < 1:
        raise BilinError(f"--shape must be two positive integers HxW, got {text}")
    return a, b


def plot(
    ckpt: Ckpt,
    class_: Annotated[
        list[str], typer.Option("--class", "-c", help="Class C, or many as bilin eig takes "
                                "them: a list 0,3,7, a range 0-4 or all (repeatable); one row "
                                "per class.", metavar="C")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Figure to write: .png, .pdf "
                                         "or .svg, by the extension.", metavar="FIG")],
    n: Annotated[
        int, typer.Option("--n", help="Eigenvectors drawn per sign.", callback=count(1))
    ] = 3,
    curve: Annotated[
        int, typer.Option("--curve", help="Eigenvalues per sign in the curve.",
                          callback=count(1))
    ] = 20,
    shape: Annotated[
        str | None,
        typer.Option("--shape", help="Image shape HxW (default: config.json input_shape, or "
                     "square).", show_default=False),
    ] = None,
    layer: LayerOpt = None,
    float64: Float64Opt = False,
    map_file: MapOpt = None,
    force: ForceOpt = False,
) -> None:
    """Draw the eigenspectrum figure: eigenvalue curve plus top positive/negative eigenvectors.

    Eigenvectors are drawn in input space (E^T v) as images with matplotlib's RdBu
    colormap centred on 0 (blue > 0, red < 0), each scaled to its own max |value|,
    and titled #r with their rank from 1 (|lambda| descending), as bilin eig numbers
    them. The format follows -o's extension (.png, .pdf, .svg).

    Examples:

    \b
        bilin plot sample_checkpoints/mnist --class 3 -o eig3.png
        bilin plot sample_checkpoints/mnist --class 3 -o eig3.svg
        bilin plot sample_checkpoints/fmnist --class all --n 2 -o fmnist.png
        bilin plot sample_checkpoints/mnist --class 0,3 -o eig03.png
    """
    hw = _parse_shape(shape)
    wanted = index_lists(class_, "--class")
    check_figure(output, force)
    dtype = dtype_of(float64)
    model = api.load(ckpt, map_file)
    index = model.resolve_layer(layer)
    if model.kind == "lm" or model.head_key is None:
        raise BilinError("bilin plot draws image classifiers; use bilin eig --show or --json")
    n_cls = model.shapes[-1].o
    classes = [c for spec in wanted for c in spec.resolve(n_cls, "class", "classes")]
    rows = []
    with progress("eigendecomposing classes", len(classes)) as advance:
        for c in classes:
            dec = api.eig(model, cls=c, layer=index, top=None, dtype=dtype)
            lam, vecs = dec.eigenvalues, dec.eigenvectors
            label = model.output_names[c] if model.output_names else str(c)
            rows.append({
                "label": label,
                "lam": lam,
                # (rank from 1, eigenvalue, vector): the numbering of bilin eig
                "pos": [(i + 1, lam[i], vecs[i]) for i in np.flatnonzero(lam > 0)[:n]],
                "neg": [(i + 1, lam[i], vecs[i]) for i in np.flatnonzero(lam < 0)[:n]],
            })
            advance()
    dim = dec.eigenvectors.shape[1]
    if hw is None:
        hw = model.input_shape if model.input_shape and len(model.input_shape) == 2 else None
    if hw is None:
        side = int(round(np.sqrt(dim)))
        if side * side != dim:
            raise BilinError(
                f"eigenvectors have {dim} entries, not a square image: give --shape HxW"
            )
        hw = (side, side)
    if hw[0] * hw[1] != dim:
        raise BilinError(f"--shape {hw[0]}x{hw[1]} does not match eigenvectors of {dim} entries")
    from bilin_cli.render.plotting import eigen_figure

    # No more columns than there are eigenvectors (--n is "up to N per sign").
    eigen_figure(rows, hw, min(n, len(dec.eigenvalues)), curve,
                 f"{Path(ckpt).name}, layer {index} ({dec.basis} basis)", output, force)
    say_wrote(output)


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=True)(plot)

"""``bilin adversarial``: masks built from eigenvectors that push images to a chosen class."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from bilin_cli import api
from bilin_cli.analyses import adversarial as adv
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
from bilin_cli.core.errors import BilinError
from bilin_cli.core.printable import say_wrote
from bilin_cli.render.figures import figure_format
from bilin_cli.render.output import emit
from bilin_cli.render.progress import progress
from bilin_cli.render.views_adversarial import input_report, sweep_report
from bilin_cli.storage.atomic import atomic_write

N_EXAMPLES = 6  # perturbed examples drawn per target with --images
# Masks have unit std per pixel on inputs in [0, 1]; far beyond this the squared terms of
# the forward pass overflow float32, so larger strengths are refused, not computed as NaN.
MAX_STRENGTH = 1e6
STRENGTH_RULE = f"positive and at most {MAX_STRENGTH:.0f}"


class Inverse(str, Enum):
    hidden = "hidden"
    pixel = "pixel"


class Variant(str, Enum):
    dense = "dense"
    edge = "edge"
    top_pixels = "top-pixels"


def _parse_sweep(text: str, integer: bool) -> list:
    if integer:
        return number_list(text, "--sweep", integer=True, low=1,
                           says="pixel counts >= 1")
    return number_list(text, "--sweep", integer=False, low=0, low_open=True, high=MAX_STRENGTH,
                       says=f"strengths in (0, {MAX_STRENGTH:.0f}]")


def _settings(variant: str, strength: float | None, pixels: int | None, sweep: str | None,
              single: bool) -> tuple[list[float], list[int] | None]:
    """``(strengths, n_pixels)`` to evaluate; top-pixels sweeps N at ``strengths[0]``."""
    if variant != "top-pixels":
        if pixels is not None:
            raise typer.BadParameter("--pixels goes with --variant top-pixels",
                                     param_hint="--pixels")
        if strength is not None and sweep is not None:
            raise typer.BadParameter("give --strength S or --sweep S1,S2,..., not both",
                                     param_hint="--sweep")
        default = adv.EDGE_SWEEP if variant == "edge" else adv.DENSE_SWEEP
        if strength is not None:
            return [strength], None
        if sweep is not None:
            return _parse_sweep(sweep, integer=False), None
        # One input: the end of the default sweep, where the sweep's effect is largest.
        return ([default[-1]] if single else list(default)), None
    if pixels is not None and sweep is not None:
        raise typer.BadParameter("give --pixels N or --sweep N1,N2,..., not both",
                                 param_hint="--sweep")
    s = strength if strength is not None else adv.TOP_PIXELS_STRENGTH
    if pixels is not None:
        return [s], [pixels]
    if sweep is not None:
        return [s], _parse_sweep(sweep, integer=True)
    return [s], [adv.TOP_PIXELS_SWEEP[-1]] if single else list(adv.TOP_PIXELS_SWEEP)


def _image_files(folder: Path, targets: list[int], single: bool, force: bool) -> dict:
    """The PNG paths ``--images`` will write, checked before any work is done."""
    if folder.exists() and not folder.is_dir():
        raise BilinError(f"{folder} is a file; --images takes a directory")
    if not folder.exists() and not folder.parent.exists():
        raise BilinError(f"{folder.parent}: no such directory")
    files = {}
    for t in targets:
        files[t] = {"mask": folder / f"mask-t{t}.png",
                    "examples": folder / (f"input-t{t}.png" if single else f"examples-t{t}.png")}
    if not force:
        for group in files.values():
            for p in group.values():
                if p.exists():
                    raise BilinError(f"{p} already exists; pass --force to overwrite it")
    return files


def adversarial(
    ckpt: Ckpt,
    target: Annotated[
        str, typer.Option("--target", "-t", help="Class to push images to: an index, a class "
                          "name, or all (every class in turn, with the mean).",
                          show_default=False)
    ],
    eig: Annotated[
        int, typer.Option("--eig", "-e", help="Which of the target's top positive eigenvectors "
                          "the mask excites (1 = top).", callback=count(1))
    ] = 1,
    per_class: Annotated[
        int | None, typer.Option("--per-class", help="Top positive eigenvectors stacked per "
                                 "class (default: --eig).", show_default=False,
                                 callback=count(1))
    ] = None,
    variant: Annotated[
        Variant, typer.Option(help="dense: every pixel; edge: only pixels lit in under 1% of "
                              "the images; top-pixels: the N largest mask pixels, inputs "
                              "clamped to [0, 1].")
    ] = Variant.dense,
    inverse: Annotated[
        Inverse, typer.Option("--inverse", help="hidden (the paper's recipe): pseudo-invert "
                              "the stacked eigenvectors in the layer's space, pinv(S), and "
                              "project each column to pixels with E^T; pixel: the exact "
                              "minimum-norm pixel mask pinv(S E) e_j, which leaks nothing "
                              "but is ill-conditioned once many eigenvectors are stacked.")
    ] = Inverse.hidden,
    strength: Annotated[
        float | None, typer.Option("--strength", "-s", help="One strength (mask std per pixel) "
                                   "instead of the sweep; with top-pixels, the fixed strength "
                                   f"(default {adv.TOP_PIXELS_STRENGTH:g}).",
                                   show_default=False,
                                   callback=number(0, MAX_STRENGTH, low_open=True,
                                                   says=STRENGTH_RULE))
    ] = None,
    pixels: Annotated[
        int | None, typer.Option("--pixels", help="top-pixels: one pixel count N "
                                 "instead of the sweep.", show_default=False,
                                 callback=count(1))
    ] = None,
    sweep: Annotated[
        str | None, typer.Option("--sweep", help="Values to sweep: strengths (default dense "
                                 "0.025..0.3 step 0.025, edge 0.25..3 step 0.25), or pixel "
                                 "counts for top-pixels (default 20..400 step 20).",
                                 show_default=False)
    ] = None,
    input_: Annotated[
        str | None, typer.Option("--input", "-i", help="Perturb one input: DATA.npz:INDEX "
                                 "(0-based) or a greyscale IMAGE.png; prints old and new "
                                 "prediction and logits.", show_default=False)
    ] = None,
    data: DataOpt = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the baseline's permutation (0 or positive).",
                          callback=count(0))
    ] = 0,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Draw target rate and accuracy against the "
                                  "sweep; the extension picks the format (.png, .pdf, .svg).",
                                  show_default=False)
    ] = None,
    save: Annotated[
        Path | None, typer.Option("--save", help="Write the masks (and the stack they come "
                                  "from) to an .npz.", show_default=False)
    ] = None,
    images: Annotated[
        Path | None, typer.Option("--images", help="Write each mask and a few perturbed "
                                  "examples as PNGs into this directory.", show_default=False)
    ] = None,
    float64: Float64Opt = False,
    map_file: MapOpt = None,
    json_: JsonOpt = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
) -> None:
    """Adversarial masks from eigenvectors alone: push images of other classes to a target.

    Recipe (paper §4.4): stack the top positive eigenvector(s) of every class as
    the rows of S, pseudo-invert in the layer's space and project to pixels:
    p = E^T pinv(S) e_j excites the target's eigenvector j and (nearly) no other
    stacked one. --inverse pixel takes the exact p = pinv(S E) e_j instead. The
    sign follows the mask's overlap with images of the other classes; the mask is
    scaled to unit std over all pixels, times the strength. Reported per mask: its
    excitation of the target eigenvector and its leak into the others; per strength
    (or pixel count): accuracy, the rate at which other-class images are classified
    as the target, and both again for a baseline: the same mask with its pixels
    randomly permuted.

    The data (default: a shipped sample's test split) fixes the sign, the edge pixels
    and the metrics. With --input, one image is perturbed (default: the end of the
    default sweep) and its old and new logits are printed.

    Examples:

        bilin adversarial sample_checkpoints/mnist --target 3

        bilin adversarial sample_checkpoints/mnist --target all --strength 0.3

        bilin adversarial sample_checkpoints/mnist --target 3 --variant top-pixels --plot px.png

        bilin adversarial sample_checkpoints/mnist --target 3 --input sample_checkpoints/data/mnist-test.npz:17
    """
    per_class, strengths, n_pixels, fmt_ = _check_options(
        variant, eig, per_class, strength, pixels, sweep, input_, plot, save, json_, fmt,
        output, force)
    dtype = dtype_of(float64)
    model = api.load(ckpt, map_file)
    pngs = _ImageFiles(images, input_ is not None, force)
    result = api.adversarial_masks(model, target, eig, per_class, variant.value, inverse.value,
                                   strengths, n_pixels, input=input_, data=data, seed=seed,
                                   dtype=dtype, check=pngs, progress=progress)
    _render(model, result, pngs.files, Path(ckpt).name, variant, inverse, eig, save=save,
            plot=plot, images=images, fmt=fmt_, output=output, force=force, dtype=dtype)


def _render(model, result, files: dict | None, name: str, variant: Variant, inverse: Inverse,
            eig: int, *, save: Path | None, plot: Path | None, images: Path | None, fmt: str,
            output: str | None, force: bool, dtype: type) -> None:
    """Everything the command writes: the warning, --save, --plot, --images, the report."""
    _warn_conditioning(result, inverse)
    names = _names(model)
    if save is not None:
        _save(save, result.stack, adv.embedding(model), inverse.value, result.directions,
              result.masks, result.region, result.strengths, result.n_pixels,
              result.image_shape, force)
        say_wrote(save)
    if result.input is not None:
        if files is not None:
            _input_images(result, names, files, force)
        emit(warned(input_report(result.doc, human=fmt == "table"), model), fmt, output, force)
        return
    if plot is not None:
        _plot_sweep(result, names, name, variant, inverse, eig, plot, force)
    if files is not None:
        images.mkdir(exist_ok=True)
        _draw_examples(model, result.dataset, result.masks, names, result.strengths,
                       result.n_pixels, result.image_shape, files, force, dtype)
    emit(warned(sweep_report(result.doc, human=fmt == "table"), model), fmt, output, force)


def _check_options(variant: Variant, eig: int, per_class: int | None, strength: float | None,
                   pixels: int | None, sweep: str | None, input_: str | None,
                   plot: Path | None, save: Path | None, json_: bool, fmt: str | None,
                   output: str | None, force: bool
                   ) -> tuple[int, list[float], list[int] | None, str]:
    """The options checked against each other before anything is loaded:
    ``(per_class, strengths, n_pixels, format)``."""
    if input_ is not None and sweep is not None:
        raise typer.BadParameter("--input perturbs one image at one strength; drop --sweep",
                                 param_hint="--sweep")
    if input_ is not None and plot is not None:
        raise typer.BadParameter("--plot draws the sweep; it does not go with --input",
                                 param_hint="--plot")
    per_class = eig if per_class is None else per_class
    if per_class < eig:
        raise BilinError(f"--eig {eig} needs --per-class >= {eig} (got {per_class}): the "
                         "eigenvector must be in the stack")
    strengths, n_pixels = _settings(variant.value, strength, pixels, sweep, input_ is not None)
    fmt_ = output_settings(json_, fmt, output, force, plot, save)
    if plot is not None:
        figure_format(plot)
    return per_class, strengths, n_pixels, fmt_


class _ImageFiles:
    """The ``check`` of :func:`api.adversarial_masks`: once the targets are known, before
    any eigendecomposition, the PNGs ``--images`` will write (``files``; None without it)."""

    def __init__(self, folder: Path | None, single: bool, force: bool) -> None:
        self.folder, self.single, self.force = folder, single, force
        self.files: dict | None = None

    def __call__(self, targets: list[int], shape) -> None:
        if self.folder is not None:
            self.files = _image_files(self.folder, targets, self.single, self.force)
            if shape is None:
                raise BilinError("--images needs image-shaped inputs; this data is flat and "
                                 "the checkpoint gives no input_shape")


def _warn_conditioning(result, inverse: Inverse) -> None:
    """With ``--inverse pixel``, a warning on stderr when the exact masks are ill-posed."""
    cond = result.doc["conditioning"]
    if inverse is Inverse.pixel and cond["condition_number"] > adv.ILL_CONDITIONED:
        print(f"warning: {cond['matrix']} is ill-conditioned (smallest singular value "
              f"{cond['smallest_singular_value']:.3g}, condition number "
              f"{cond['condition_number']:.3g}): the exact masks are made of near-null pixel "
              "directions and barely excite their eigenvectors (see excitation); "
              "--inverse hidden is the paper's recipe", file=sys.stderr)


def _plot_sweep(result, names: list[str], name: str, variant: Variant, inverse: Inverse,
                eig: int, plot: Path, force: bool) -> None:
    """``--plot``: target rate and accuracy against the sweep (the mean, with ``all``)."""
    from bilin_cli.render.plotting_adversarial import rate_curves

    doc = result.doc
    every, key = doc["target"] == "all", doc["swept"]
    who = "mean over all targets" if every else f"target {names[result.targets[0]]}"
    rate_curves([r[key] for r in doc["rows"]], doc["rows"],
                [t["rows"] for t in doc["per_target"]] if every else None,
                "pixels changed (N)" if key == "n_pixels" else "strength (mask std per pixel)",
                f"{name}: {variant.value} mask ({inverse.value} inverse, "
                f"{doc['per_class']} per class), positive eigenvector {eig}"
                + (f" (eig rank #{result.masks[0].eig_rank})" if not every else "")
                + f", {who}",
                plot, force)
    say_wrote(plot)


def _names(model) -> list[str]:
    return model.output_names or [str(c) for c in range(model.shapes[-1].o)]


def _input_images(result, names, files, force) -> None:
    """Each mask, and the input before and after it (``--input`` with ``--images``)."""
    from bilin_cli.render.plotting_adversarial import input_figure, mask_figure

    x1, doc = result.input.x, result.doc
    strength, n_pixels = doc["strength"], doc["n_pixels"]
    per_mask = doc["targets"] if doc["target"] == "all" else [doc]
    old = doc["old"]["prediction"]
    for m, r in zip(result.masks, per_mask, strict=True):
        files[m.target]["mask"].parent.mkdir(exist_ok=True)
        x_new = adv.perturb(x1[None], m.pixel, strength, n_pixels)[0]
        new = r["new"]["prediction"]
        mask_figure(m.pixel, m.baseline, result.image_shape, f"target {names[m.target]}: "
                    f"{m.variant} mask, eigenvector #{m.eig_rank} (unit std)",
                    files[m.target]["mask"], force)
        input_figure(x1, x_new - x1, x_new, result.image_shape,
                     (f"input: {names[old]}", "change", f"perturbed: {names[new]}"),
                     files[m.target]["examples"], force)
    print(f"wrote {2 * len(result.masks)} PNGs", file=sys.stderr)


def _draw_examples(model, dataset, masks, names, strengths, n_pixels, shape, files, force,
                   dtype) -> None:
    """Each mask, and the first few other-class images before and after it."""
    from bilin_cli.render.plotting_adversarial import examples_figure, mask_figure

    # The strongest setting of the sweep, where the effect is easiest to see.
    s = strengths[-1] if n_pixels is None else strengths[0]
    n = None if n_pixels is None else n_pixels[-1]
    how = f"strength {s:g}" if n is None else f"top {n} pixels, strength {s:g}"
    for m in masks:
        idx = np.flatnonzero(dataset.y != m.target)[:N_EXAMPLES]
        clean = dataset.x[idx]
        pert = adv.perturb(clean, m.pixel, s, n)
        before = np.argmax(model.forward(clean, dtype), axis=1)
        after = np.argmax(model.forward(pert, dtype), axis=1)
        mask_figure(m.pixel, m.baseline, shape, f"target {names[m.target]}: {m.variant} mask, "
                    f"eigenvector #{m.eig_rank} (unit std)", files[m.target]["mask"], force)
        examples_figure(clean, pert, shape, [f"pred {names[b]}" for b in before],
                        [f"-> {names[a]}" for a in after],
                        f"target {names[m.target]}, {how}", files[m.target]["examples"], force)
    print(f"wrote {2 * len(masks)} PNGs", file=sys.stderr)


def _save(path, stack, E, inverse, directions, masks, region, strengths, n_pixels, shape,
          force) -> None:
    arrays = {
        "targets": np.array([m.target for m in masks]),
        "eig": np.array(masks[0].eig),
        "variant": np.array(masks[0].variant),
        "inverse": np.array(inverse),
        "masks": np.stack([m.pixel for m in masks]),  # unit std: x + strength * mask
        "baselines": np.stack([m.baseline for m in masks]),
        "signs": np.array([m.sign for m in masks]),
        # Row t: S E mask_t, the stacked eigenvectors' activations one unit of mask t adds.
        "excitations": np.stack([m.excitations for m in masks]),
        "leaks": np.array([m.leak for m in masks]),
        "region": region,
        "stack": stack.S,
        "stack_classes": stack.classes,
        "stack_ranks": stack.ranks,
        "eigenvalues": stack.eigenvalues,
        "hidden_inverse": stack.hidden,  # rows m_j: S m_j = e_j
        # Rows p_j before sign and scale: E^T m_j (hidden) or pinv(S E) e_j (pixel).
        "directions": directions,
        "strengths": np.array(strengths),
    }
    if n_pixels is not None:
        arrays["n_pixels"] = np.array(n_pixels)
    if shape is not None:
        arrays["image_shape"] = np.array(shape)
    atomic_write(path, lambda fh: np.savez(fh, **arrays), force)


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=True)(adversarial)

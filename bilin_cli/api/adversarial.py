"""Adversarial masks from eigenvectors: ``adversarial_masks``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bilin_cli.api._overflow import float64_on_overflow
from bilin_cli.api._types import PathLike
from bilin_cli.api.directions import _items
from bilin_cli.api.loading import _dataset, _model
from bilin_cli.api.truncation import _stage
from bilin_cli.core.errors import BilinError, option
from bilin_cli.model.bilinear import BilinearModel

# ------------------------------------------------------------------------- adversarial


@dataclass
class Adversarial:
    """Adversarial masks built from eigenvectors alone (``bilin adversarial``).

    ``masks``: one :class:`~bilin_cli.analyses.adversarial.Mask` per target (``pixel (n_in,)``, unit
    std, add ``strength * pixel`` to an input; ``baseline``: its pixels permuted;
    ``excitation``, ``leak``, ``eig_rank``...). ``doc`` (``as_dict()``) is the ``--json``
    document: per strength (or pixel count) the accuracy and the rate at which other-class
    inputs go to the target, for the mask and its baseline (``rows``; their mean over
    targets with ``target="all"``), or with ``input`` the old and new logits of that one
    input. ``stack`` holds the stacked eigenvectors ``S (n_stacked, d)``, ``directions``
    the masks' directions before sign and scale ``(n_stacked, n_in)``, ``region`` the
    pixels a mask may use ``(n_in,)``.
    """

    targets: list[int]
    masks: list
    strengths: list[float]
    n_pixels: list[int] | None
    doc: dict
    stack: object
    directions: np.ndarray
    region: np.ndarray
    image_shape: tuple[int, ...] | None
    dataset: object
    input: object | None = None

    def as_dict(self) -> dict:
        """The ``--json`` document of ``bilin adversarial``."""
        return self.doc


def _adv_target(text, n_cls: int, names: list[str] | None) -> list[int] | None:
    """``None`` for ``all``, else ``[c]`` from an index or a class name."""
    if isinstance(text, (int, np.integer)):
        text = str(int(text))
    if text.strip().lower() == "all":
        return None
    try:
        c = int(text)
    except ValueError:
        if names and text in names:
            return [names.index(text)]
        known = f" or one of {', '.join(names)}" if names else ""
        raise BilinError(f"{option('--target', 'target')} {text!r}: give a class index "
                         f"0..{n_cls - 1}{known}, "
                         "or all") from None
    if not 0 <= c < n_cls:
        raise BilinError(f"class {c} is out of range: this model has {n_cls} classes "
                         f"(0..{n_cls - 1})")
    return [c]


def _mask_fields(m, stack) -> dict:
    """What one mask reports about itself (JSON keys; eigenvectors ranked from 1)."""
    return {"eigenvalue": float(stack.eigenvalues[m.index]), "sign": m.sign,
            "excitation": m.excitation, "efficiency": m.efficiency, "leak": m.leak,
            "leak_class": m.leak_class, "leak_eig": m.leak_eig, "eig_rank": m.eig_rank,
            "leak_eig_rank": m.leak_eig_rank}


@float64_on_overflow("the adversarial masks' logits and eigenvectors", "model")
def adversarial_masks(
    model: BilinearModel | PathLike,
    target: int | str = "all",
    eig: int = 1,
    per_class: int | None = None,
    variant: str = "dense",
    inverse: str = "hidden",
    strength: float | Sequence[float] | None = None,
    n_pixels: int | Sequence[int] | None = None,
    *,
    input: str | None = None,  # noqa: A002
    data: PathLike | None = None,
    seed: int = 0,
    dtype: type = np.float32,
    check=None,
    progress=None,
) -> Adversarial:
    """Masks from eigenvectors that push inputs of other classes to ``target`` (paper §4.4).

    The top ``per_class`` (default ``eig``) positive eigenvectors of every class are stacked
    as the rows of ``S``; the mask for ``target`` excites its eigenvector ``eig`` (1 = top):
    ``p = E^T pinv(S) e_j`` (``inverse="hidden"``, the paper's) or ``pinv(S E) e_j``
    (``"pixel"``). ``variant``: ``"dense"``, ``"edge"`` (pixels lit in under 1% of the
    images) or ``"top-pixels"`` (the ``n_pixels`` largest mask pixels at one ``strength``,
    inputs clamped to [0, 1]). ``strength`` / ``n_pixels``: one value or a sweep (default
    the CLI's sweep; with ``input``, its last value). ``target``: a class index, a class
    name or ``"all"``. ``data`` (default: a shipped sample's test split) fixes the sign, the
    edge pixels and the metrics; ``input`` (``"DATA.npz:INDEX"`` or a PNG) perturbs one
    input instead. ``check(targets, image_shape)`` (optional) runs before any
    eigendecomposition; ``progress`` as in :func:`truncation_sweep`.

    Example::

        >>> a = bilin.adversarial_masks(m, target="all", strength=0.3)
        >>> mean = a.doc["rows"][0]
        >>> round(mean["accuracy"], 4), round(mean["target_rate"], 4)
        (0.1622, 0.9066)
    """
    per_class, strengths, pixels = _settings(eig, per_class, variant, strength, n_pixels,
                                             input is not None)
    model = _model(model)
    setup = _setup(model, target, pixels, input, data, dtype)
    if check is not None:
        check(setup.targets, setup.shape)
    built = _build(model, setup, per_class, eig, variant, inverse, seed, progress)
    result = Adversarial(setup.targets, built.masks, strengths, pixels, {}, built.stack,
                         built.directions, built.region, setup.shape, setup.dataset, setup.one)
    common = _common(built, eig, per_class, variant, inverse, seed)
    if setup.one is not None:
        result.doc = _input_doc(model, setup, built, common, input, strengths, pixels, dtype)
    else:
        result.doc = _sweep_doc(model, setup, built, common, strengths, pixels, dtype, progress)
    return result


def _settings(eig: int, per_class: int | None, variant: str, strength, n_pixels,
              single: bool) -> tuple[int, list[float], list[int] | None]:
    """The arguments checked: ``(per_class, strengths, n_pixels)`` with the defaults filled
    in (``single``: one input, so the end of the default sweep)."""
    from bilin_cli.analyses import adversarial as adv

    per_class = eig if per_class is None else per_class
    if per_class < eig:
        raise BilinError(f"{option('--eig', 'eig')} {eig} needs "
                         f"{option('--per-class', 'per_class')} >= {eig} (got {per_class}): the "
                         "eigenvector must be in the stack")
    strengths = [float(s) for s in _items(strength)] or None
    pixels = [int(n) for n in _items(n_pixels)] or None
    if variant != "top-pixels":
        if pixels is not None:
            raise BilinError("n_pixels goes with variant='top-pixels'")
        default = adv.EDGE_SWEEP if variant == "edge" else adv.DENSE_SWEEP
        if strengths is None:
            strengths = [default[-1]] if single else list(default)
    else:
        strengths = strengths[:1] if strengths else [adv.TOP_PIXELS_STRENGTH]
        if pixels is None:
            sweep = adv.TOP_PIXELS_SWEEP
            pixels = [sweep[-1]] if single else list(sweep)
    return per_class, strengths, pixels


@dataclass
class _Setup:
    """What the masks are built for: the targets, the data and the one input (if any)."""

    targets: list[int]
    chosen: list[int] | None  # None for target "all"
    names: list[str]
    n_in: int
    one: object | None
    dataset: object
    shape: tuple[int, ...] | None


def _setup(model: BilinearModel, target, pixels: list[int] | None, input: str | None,  # noqa: A002
           data: PathLike | None, dtype: type) -> _Setup:
    """The model checked against the request; the input, the data and the image shape."""
    from bilin_cli.analyses import adversarial as adv
    from bilin_cli.storage.data import check_fits

    adv.check_supported(model)
    n_cls = model.shapes[-1].o
    names = model.output_names or [str(c) for c in range(n_cls)]
    chosen = _adv_target(target, n_cls, model.output_names)
    targets = list(range(n_cls)) if chosen is None else chosen
    n_in = model.embed_shape[1] if model.embed_key else model.shapes[0].d
    if pixels is not None and max(pixels) > n_in:
        raise BilinError(f"{option('--pixels', 'n_pixels')} {max(pixels)} exceeds the {n_in} input "
                         f"pixels")
    one = None
    if input is not None:
        one = _one_input(input, dtype, n_in)
        data = _input_data(model, data, one)
    dataset = _dataset(model, data, dtype)
    check_fits(dataset, n_in, n_cls)
    shape = None
    for candidate in (dataset.image_shape, model.input_shape, one.shape if one else None):
        if candidate and int(np.prod(candidate)) == n_in:
            shape = tuple(int(s) for s in candidate)
            break
    return _Setup(targets, chosen, names, n_in, one, dataset, shape)


def _one_input(input: str, dtype: type, n_in: int):  # noqa: A002
    """The ``--input`` image, of the model's input size."""
    from bilin_cli.analyses import adversarial as adv
    from bilin_cli.core.printable import printable

    one = adv.load_input(input, dtype, n_in)
    if one.x.size != n_in:
        raise BilinError(f"{option('--input', 'input')} {printable(input, 80)}: {one.x.size} "
                         f"pixels, the model "
                         f"takes {n_in}")
    return one


def _input_data(model: BilinearModel, data: PathLike | None, one) -> PathLike | None:
    """Data for the sign and the metrics: data, else the checkpoint's own split, else the
    file the input came from."""
    from bilin_cli.storage.data import default_data_path

    source = model.meta.get("source_path")
    if data is None and one.data and (source is None or default_data_path(
            source, model.meta.get("source_config", {})) is None):
        data = Path(one.data)
    return data


@dataclass
class _Built:
    """The stacked eigenvectors and the masks built from them."""

    stack: object
    region: np.ndarray
    directions: np.ndarray
    cond: dict
    masks: list


def _build(model: BilinearModel, setup: _Setup, per_class: int, eig: int, variant: str,
           inverse: str, seed: int, progress) -> _Built:
    """Stack every class's top eigenvectors and build one mask per target."""
    from bilin_cli.analyses import adversarial as adv

    with _stage(progress, "eigendecomposing classes", model.shapes[-1].o) as advance:
        stack = adv.eigen_stack(model, per_class, advance)
    E = adv.embedding(model)
    x, y = setup.dataset.x, setup.dataset.y
    region = (adv.edge_region(x) if variant == "edge" else np.ones(setup.n_in, dtype=bool))
    if not region.any():
        raise BilinError(f"no edge pixels: every pixel is lit in at least "
                         f"{adv.EDGE_SHARE:.0%} of the images")
    directions, cond = adv.mask_directions(stack, E, inverse, region)
    masks = [adv.build_mask(stack, E, directions, x, y, t, eig, variant, region, seed)
             for t in setup.targets]
    return _Built(stack, region, directions, cond, masks)


def _common(built: _Built, eig: int, per_class: int, variant: str, inverse: str,
            seed: int) -> dict:
    """The keys every ``--json`` document of ``bilin adversarial`` starts with."""
    from bilin_cli.analyses import adversarial as adv

    where = "" if variant != "edge" else "[:, edge]"
    return {
        "eig": eig, "per_class": per_class, "variant": variant, "inverse": inverse,
        "stacked": int(built.stack.S.shape[0]), "region_pixels": int(built.region.sum()),
        "edge_share": adv.EDGE_SHARE,
        "projection": (f"p = E{where}^T pinv(S) e_j" if inverse == "hidden"
                       else f"p = pinv(S E{where}) e_j (S E p = e_j)")
        + "; sign by overlap with other classes' images; unit std over all pixels x strength",
        "conditioning": built.cond,
        "baseline": f"mask pixels permuted within the variant's pixels (seed {seed})",
    }


def _input_doc(model: BilinearModel, setup: _Setup, built: _Built, common: dict,
               input: str, strengths: list[float], pixels: list[int] | None,  # noqa: A002
               dtype: type) -> dict:
    """The document for one input: its old and new logits under each mask."""
    from bilin_cli.analyses import adversarial as adv

    one, names, masks = setup.one, setup.names, built.masks
    s, n = strengths[0], pixels[0] if pixels else None
    results = []
    for m in masks:
        logits = adv.input_logits(model, one.x, m, s, n, dtype)
        results.append({"target": m.target, "target_name": names[m.target],
                        **_mask_fields(m, built.stack),
                        **{k: {"prediction": int(np.argmax(v)), "logits": v.tolist()}
                           for k, v in logits.items()}})
    doc = {"input": input, "label": one.label,
           "target": "all" if setup.chosen is None else masks[0].target, **common,
           "strength": s, "n_pixels": n, "class_names": names, "old": results[0]["old"]}
    if setup.chosen is None:
        doc["targets"] = [{k: v for k, v in r.items() if k != "old"} for r in results]
    else:
        doc.update({k: v for k, v in results[0].items() if k not in ("target", "old")})
    return doc


def _sweep_doc(model: BilinearModel, setup: _Setup, built: _Built, common: dict,
               strengths: list[float], pixels: list[int] | None, dtype: type,
               progress) -> dict:
    """The document for the data: accuracy and target rate per strength (or pixel count)."""
    from bilin_cli.analyses import adversarial as adv

    dataset, names, masks, targets = setup.dataset, setup.names, built.masks, setup.targets
    cache = adv.layer_cache(model, dataset.x, dtype)
    clean = adv.clean_rates(model, cache, dataset.y, targets)
    per_target = []
    with _stage(progress, "evaluating masks", len(masks) * len(pixels or strengths)) as advance:
        for m in masks:
            rows = adv.sweep(model, cache, dataset.x, dataset.y, m, strengths, pixels, advance)
            per_target.append({
                "target": m.target, "target_name": names[m.target],
                **_mask_fields(m, built.stack),
                "clean_target_rate": clean[m.target][1], "rows": rows,
            })
    doc = {"target": "all" if setup.chosen is None else targets[0], **common,
           "data": dataset.source, "n": int(dataset.y.size),
           "clean_accuracy": clean[targets[0]][0],
           "swept": "n_pixels" if pixels is not None else "strength"}
    if pixels is not None:
        doc["strength"] = strengths[0]
    if setup.chosen is None:
        doc["rows"] = adv.mean_rows([t["rows"] for t in per_target])
        doc["per_target"] = per_target
    else:
        doc.update({k: v for k, v in per_target[0].items() if k != "target"})
    return doc

"""Explaining one prediction of a classifier: the library behind ``bilin explain``.

For class ``c`` and the last bilinear layer's input ``h`` (``h = E x`` for an image
model), the logit splits exactly into

    logit_c = sum_i lambda_i (v_i . h)^2  +  linear . h  +  constant  [+ head_c . h]
              (interaction, one term per       (biases only)            (residual skip path)
               eigenpair of Q(e_c))

so ``lambda_i (v_i . h)^2`` is eigenvector ``i``'s contribution. Arrays here are in
``bilin eig --all`` order (``|lambda|`` descending, same sign rule); everything a user
reads (tables, JSON ``rank``, figure titles) numbers eigenvectors by rank from 1, as
``bilin eig`` prints them, so array row ``i`` is eigenvector ``#i+1``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bilin_cli.analyses.directions import from_class
from bilin_cli.core.errors import BilinError, option
from bilin_cli.core.printable import printable, with_article
from bilin_cli.model.bilinear import BilinearModel
from bilin_cli.model.interaction import interaction
from bilin_cli.model.spectra import eigh_sorted
from bilin_cli.storage.files import image_size, regular_file


@dataclass
class Input:
    """One input to explain: ``x : (n_in,)`` as the model reads it, and where it came from."""

    x: np.ndarray
    source: dict  # JSON-ready
    warnings: list[str] = field(default_factory=list)


def check_classifier(model: BilinearModel) -> None:
    if model.kind == "lm":
        raise BilinError(
            f"bilin explain works on classifiers; this is {with_article(model.layout)}, "
            "whose logits also "
            "depend on attention. Use 'bilin eig --token T' to decompose one MLP layer"
        )
    if model.head_key is None:
        raise BilinError("bilin explain needs a model with a head (its rows define the classes)")


def input_size(model: BilinearModel) -> int:
    return model.embed_shape[1] if model.embed_key else model.shapes[0].d


def _to_grey(img: np.ndarray) -> np.ndarray:
    if img.ndim == 3:
        img = img[..., :3].mean(axis=2)  # RGB(A) -> grey; alpha is ignored
    if img.dtype == np.uint8:
        return img.astype(np.float64) / 255.0
    img = img.astype(np.float64)
    return img / 255.0 if img.max() > 1.0 else img


def _stat_kind(text: str) -> str | None:
    """``"file"``, ``"dir"``, ``"other"`` (FIFO, device...) or None where nothing is there
    (a name too long to be a path counts as nothing, not as an error)."""
    try:
        st = os.stat(text)
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(st.st_mode):
        return "file"
    return "dir" if stat.S_ISDIR(st.st_mode) else "other"


def _numbers(text: str) -> list[float] | None:
    """``text`` as comma-separated numbers, or None if it is not that."""
    try:
        return [float(t) for t in text.split(",")]
    except ValueError:
        return None


def image_pixels(path: str, model_shape, n_in: int) -> None:
    """Check an image's size from its header, before any pixel is decoded."""
    where = printable(path)
    try:
        w, h = image_size(path)
    except Exception as exc:  # PIL raises many types for a file that is not an image
        raise BilinError(f"{where}: cannot read it as an image "
                         f"({printable(exc, 120)})") from None
    if model_shape and len(model_shape) == 2:
        if (h, w) != tuple(model_shape):
            raise BilinError(f"{where}: image is {w}x{h} pixels, the model takes "
                             f"{model_shape[1]}x{model_shape[0]}")
    elif w * h != n_in:
        raise BilinError(f"{where}: image has {w}x{h} = {w * h} pixels, the model takes {n_in}")


def load_input(spec: str, model: BilinearModel, dtype: type = np.float32) -> Input:
    """Read ``DATA:INDEX`` (.npz or idx directory), an image file (PNG), a ``.npy`` vector,
    or comma-separated numbers; check it has the model's input size.

    Comma-separated numbers are recognised as such before any file lookup (an MNIST image
    written out is far longer than a file name may be). Images are read with matplotlib
    (PNG gives values in [0, 1]), turned grey, and flattened row-major like the training
    data; their size is checked from the header first.
    """
    n_in = input_size(model)
    warnings: list[str] = []
    shown = printable(spec, 80)
    head, sep, tail = spec.rpartition(":")
    values = _numbers(spec) if "," in spec else None
    is_data = (values is None and bool(sep) and tail.strip().lstrip("-").isdigit()
               and _stat_kind(head) is not None)
    kind = None if values is not None or is_data else _stat_kind(spec)
    if values is None and not is_data and kind is None and _is_number(spec):
        values = [float(spec)]
    if values is not None:
        with np.errstate(over="ignore"):  # beyond float32: infinite, refused below
            x = np.array(values, dtype=np.float64).astype(dtype)
        source = {"kind": "values"}
    elif is_data:
        from bilin_cli.storage.data import load_dataset

        data = load_dataset(head, dtype)
        index = int(tail)
        n = data.x.shape[0]
        if not 0 <= index < n:
            raise BilinError(f"index {index} is out of range: {printable(head)} has {n} examples "
                             f"(0..{n - 1})")
        x = data.x[index]
        source = {"kind": "data", "path": head, "index": index, "label": int(data.y[index])}
    elif kind is None:
        raise BilinError(
            f"{option('--input', 'input')} {shown}: no such file; give DATA.npz:INDEX, an image "
            f"(PNG), a .npy "
            "vector, or comma-separated numbers"
        )
    elif kind != "file":
        regular_file(spec, "file")  # a directory, FIFO or device: one error line
        raise BilinError(f"{option('--input', 'input')} {shown}: not a regular file")
    elif Path(spec).suffix.lower() == ".npy":
        from bilin_cli.storage.data import read_npy

        x = read_npy(spec, "input .npy file")
        with np.errstate(over="ignore"):
            x = (x.astype(dtype) / 255 if x.dtype == np.uint8 else x.astype(dtype)).ravel()
        source = {"kind": "npy", "path": spec}
    else:
        import matplotlib.image

        image_pixels(spec, model.input_shape, n_in)
        try:
            img = matplotlib.image.imread(spec)
        except Exception as exc:  # PIL/matplotlib raise many types for a bad image
            raise BilinError(f"{printable(spec)}: cannot read it as an image "
                             f"({printable(exc, 120)})") from None
        grey = _to_grey(np.asarray(img))
        shape = model.input_shape
        if shape and len(shape) == 2 and grey.shape != tuple(shape):
            raise BilinError(
                f"{printable(spec)}: image is {grey.shape[1]}x{grey.shape[0]} pixels, the "
                f"model takes {shape[1]}x{shape[0]}"
            )
        if grey.mean() > 0.5:
            warnings.append(f"{printable(spec)} is mostly bright; MNIST-style models expect a "
                            "light digit on a dark background (invert the image?)")
        x = grey.astype(dtype).ravel()
        source = {"kind": "image", "path": spec}
    if x.size != n_in:
        raise BilinError(f"input has {x.size} values, the model takes {n_in}")
    bad = int(x.size - np.count_nonzero(np.isfinite(x)))
    if bad:
        limit = "" if dtype == np.float64 else (
            f"; float32 holds at most 3.4e38, try {option('--float64', 'dtype=np.float64')}")
        raise BilinError(f"input contains NaN or infinity ({bad} of {x.size} values{limit})")
    return Input(x, source, warnings)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def layer_input(model: BilinearModel, x: np.ndarray, layer: int, dtype: type) -> np.ndarray:
    """The input ``h : (d,)`` of bilinear ``layer`` for model input ``x : (n_in,)``.

    Follows :meth:`BilinearModel.forward` (embedding, earlier layers, their skips).
    """
    h = np.asarray(x, dtype=dtype)
    E = model.embed(dtype)
    if E is not None:
        h = E @ h
    for i in range(layer):
        y = model.layer(i, dtype).forward(h)
        h = y + h if model.residual else y
    return h


@dataclass
class ClassExplanation:
    """The exact split of one class's logit (see module docstring)."""

    cls: int
    name: str
    logit: float  # from the model's forward pass
    eigenvalues: np.ndarray  # (d,) of Q(e_c), |lambda| descending
    projections: np.ndarray  # (d,) v_i . h
    contributions: np.ndarray  # (d,) lambda_i (v_i . h)^2
    linear: float | None  # linear . h (biases)
    constant: float | None  # bias constant (incl. the head bias)
    skip: float | None  # head_c . h (residual models)
    vectors: np.ndarray  # (d, dim) eigenvectors in the plotting basis (rows)

    @property
    def interaction(self) -> float:
        return float(np.sum(self.contributions, dtype=np.float64))

    @property
    def total(self) -> float:
        return self.interaction + sum(v for v in (self.linear, self.constant, self.skip) if v)

    @property
    def residual(self) -> float:
        return self.logit - self.total

    def top(self, n: int, sign: int) -> np.ndarray:
        """Indices of the ``n`` largest contributions of ``sign`` (+1 / -1), largest first."""
        c = self.contributions * sign
        idx = np.flatnonzero(c > 0)
        return idx[np.argsort(-c[idx], kind="stable")][:n]


@dataclass
class Explanation:
    logits: np.ndarray  # (n_classes,)
    prediction: int
    classes: list[ClassExplanation]
    input: Input
    basis: str  # of ClassExplanation.vectors: "input" (pixels, E^T v) or "hidden"
    layer: int
    layout: str
    dtype: str
    output_names: list[str] | None
    input_shape: tuple[int, ...] | None
    notes: list[str] = field(default_factory=list)


def explain(
    model: BilinearModel, inp: Input, n_classes: int = 3, dtype: type = np.float32
) -> Explanation:
    """Split the logits of the ``n_classes`` highest-scoring classes into eigen-contributions."""
    from bilin_cli.analyses.decompose import input_basis_available

    check_classifier(model)
    if n_classes < 1:
        raise BilinError(f"{option('--classes', 'classes')} must be a positive integer, got "
                         f"{n_classes}")
    layer = model.n_layers - 1
    x = inp.x.astype(dtype)
    logits = model.forward(x[None, :], dtype)[0]
    order = np.argsort(-logits, kind="stable")[:n_classes]
    h = layer_input(model, x, layer, dtype)
    L = model.layer(layer, dtype)
    E = model.embed(dtype) if input_basis_available(model, layer) else None
    head = model.head(dtype) if model.residual and L.P is not None else None
    notes = []
    if head is not None:
        notes.append("residual model: the skip path head_c . h is reported as 'skip'")
    if model.n_layers > 1:
        notes.append(f"decomposed at the last bilinear layer ({layer}); its input h comes from "
                     "the earlier layers")
    names = model.output_names
    out = []
    for c in order:
        c = int(c)
        inter = interaction(L, from_class(model, layer, c, dtype).u)
        lam, vecs = eigh_sorted(inter.Q)
        z = vecs @ h
        has_bias = inter.linear is not None or L.b_p is not None
        out.append(ClassExplanation(
            cls=c,
            name=names[c] if names else str(c),
            logit=float(logits[c]),
            eigenvalues=lam,
            projections=z,
            contributions=lam * z * z,
            linear=float(inter.linear @ h) if inter.linear is not None else None,
            constant=inter.constant if has_bias else None,
            skip=float(head[c] @ h) if head is not None else None,
            vectors=vecs if E is None else vecs @ E,
        ))
    return Explanation(
        logits=logits,
        prediction=int(np.argmax(logits)),
        classes=out,
        input=inp,
        basis="hidden" if E is None else "input",
        layer=layer,
        layout=model.layout,
        dtype=np.dtype(dtype).name,
        output_names=names,
        input_shape=model.input_shape if E is not None else None,
        notes=notes,
    )

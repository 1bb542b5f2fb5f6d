"""Decomposing one output direction of one layer: the library behind ``bilin eig``.

``u . y(x) = sum_i lambda_i (v_i . x)^2 [+ linear . x + constant]`` exactly, with
``v_i`` orthonormal in the layer's input ("hidden") basis. In the "input" basis of
an image model the vectors are ``E^T v_i`` (pixels; no longer orthonormal).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bilin_cli.directions import Direction
from bilin_cli.errors import BilinError
from bilin_cli.interaction import hidden_coefficients, interaction, interaction_operator
from bilin_cli.model import BilinearModel
from bilin_cli.spectra import (
    effective_rank,
    eigenvalues,
    eigh_sorted,
    share_of_top,
    summarize,
    top_eigenpairs,
)

DENSE_LIMIT = 8192  # above this d, a dense (d, d) float64 Q is over 0.5 GB: use ARPACK
# ``method="auto"`` takes the matrix-free top-K route (ARPACK) from this d on, when K is
# at most d / ARPACK_MAX_FRACTION. Measured here (benchmarks/bench_topk.py, 2 cores,
# float32, h = d): d = 4096, K = 10: dense 24.7 s, ARPACK 0.74 s (spectrum falling off
# like a trained layer's) and K = 100: 6.3 s; d = 2048, K = 10: 2.8 s against 0.28 s
# (3.2 s on i.i.d. Gaussian factors, whose gapless spectrum is Lanczos' worst case,
# against 5.3 s dense). Below d = 2048 dense takes under a second and ARPACK gains little
# or loses (d = 1024, K = 5: 0.6 s dense, 1.7 s ARPACK).
ARPACK_MIN_D = 2048
ARPACK_MAX_FRACTION = 40
ARPACK_NOTE = ("method arpack: only the top {k} eigenpairs were computed (matrix-free "
               "Lanczos, scipy eigsh, Q never formed); sum_abs_eigenvalues, effective_rank "
               "and top_k_share need the whole spectrum and are null: --method dense "
               "computes them")


def auto_method(d: int, k: int | None) -> str:
    """The route ``method="auto"`` takes for ``k`` eigenpairs (None = all) of a ``(d, d)`` Q."""
    if k is None or k >= d - 1:
        return "dense"
    if d > DENSE_LIMIT or (d >= ARPACK_MIN_D and k * ARPACK_MAX_FRACTION <= d):
        return "arpack"
    return "dense"


def _bias_parts(L, u: np.ndarray) -> tuple[np.ndarray, float]:
    """The linear part and the constant of ``u . y(x)`` from the factors (no ``(d, d)``):
    ``W^T (c * b_v) + V^T (c * b_w)`` and ``sum c b_w b_v + u . b_p``, as in
    :func:`bilin_cli.interaction.interaction`."""
    c = hidden_coefficients(L, u)
    b_w = L.b_w if L.b_w is not None else np.zeros(L.h, L.W.dtype)
    b_v = L.b_v if L.b_v is not None else np.zeros(L.h, L.W.dtype)
    linear = L.W.T @ (c * b_v) + L.V.T @ (c * b_w)
    constant = float(np.sum(c * b_w * b_v, dtype=np.float64))
    if L.b_p is not None:
        constant += float(u @ L.b_p)
    return linear, constant


@dataclass
class Decomposition:
    """Plain data for one eigendecomposition (see :func:`decompose`)."""

    eigenvalues: np.ndarray  # (k,) ordered by |lambda| desc
    eigenvectors: np.ndarray  # (k, dim) in ``basis``
    basis: str
    layer: int
    direction: dict
    n_eigenvalues: int
    sum_abs: float | None
    effective_rank: float | None
    top_share: float | None
    method: str
    layout: str
    dtype: str
    linear: np.ndarray | None = None  # bias models: linear part, in ``basis``
    constant: float | None = None
    input_shape: tuple[int, ...] | None = None
    notes: list[str] = field(default_factory=list)
    tokens: list[dict] | None = None  # LMs: each eigenvector read as tokens (token_reading)

    def as_dict(self) -> dict:
        """The JSON document of ``bilin eig`` (the contract scripts rely on)."""
        doc = {
            "eigenvalues": self.eigenvalues.tolist(),
            "eigenvectors": self.eigenvectors.tolist(),
            "basis": self.basis,
            "layer": self.layer,
            "direction": self.direction,
            "n_eigenvalues": self.n_eigenvalues,
            "effective_rank": self.effective_rank,
            "sum_abs_eigenvalues": self.sum_abs,
            "top_k": int(self.eigenvalues.shape[0]),
            "top_k_share": self.top_share,
            "layout": self.layout,
            "dtype": self.dtype,
            "method": self.method,
            "notes": self.notes,
        }
        if self.linear is not None or self.constant is not None:
            doc["bias_parts"] = {
                "interaction": "the eigenpairs above (quadratic part)",
                "linear": None if self.linear is None else self.linear.tolist(),
                "linear_norm": None if self.linear is None else float(np.linalg.norm(self.linear)),
                "constant": self.constant,
            }
        if self.input_shape:
            doc["input_shape"] = list(self.input_shape)
        if self.tokens is not None:
            doc["tokens"] = self.tokens
        return doc


def input_basis_available(model: BilinearModel, layer: int) -> bool:
    """Eigenvectors map to the model's inputs only where the layer reads ``E x`` directly."""
    return model.embed_key is not None and model.kind != "lm" and layer == 0


def resolve_basis(model: BilinearModel, layer: int, basis: str) -> str:
    """``"auto"`` becomes ``"input"`` where the layer reads ``E x``, else ``"hidden"``;
    an explicit ``"input"`` where it cannot be had is a user error."""
    has_input = input_basis_available(model, layer)
    if basis == "auto":
        return "input" if has_input else "hidden"
    if basis == "input" and not has_input:
        what = "has no embedding" if model.embed_key is None else f"layer {layer} does not read E x"
        raise BilinError(
            f"--basis input needs an embedding right before the layer; this model {what}: "
            "use --basis hidden"
        )
    return basis


def decompose(
    model: BilinearModel,
    layer: int,
    direction: Direction,
    top: int | None = 10,
    basis: str = "auto",
    dtype: type = np.float32,
    method: str = "auto",
) -> Decomposition:
    """Eigendecompose ``Q(u)`` of ``layer`` for ``direction``; keep the ``top`` by ``|lambda|``.

    ``top=None`` keeps all. ``basis``: "hidden" (the layer's input space), "input"
    (through the embedding, image models), or "auto" (input where available).
    ``method``: "dense" (``eigh`` on the ``(d, d)`` Q; exact spectrum statistics),
    "arpack" (matrix-free top-``k``; statistics need the full spectrum, so they are
    null, and a note says so), or "auto" (:func:`auto_method`: arpack for a few
    eigenpairs of a large layer, else dense).
    """
    if top is not None and top < 1:
        raise BilinError(f"--top must be a positive integer, got {top}")
    basis = resolve_basis(model, layer, basis)
    L = model.layer(layer, dtype)
    d = L.d
    k = d if top is None else min(top, d)
    if method == "auto":
        method = auto_method(d, None if top is None else k)
    notes = list(direction.notes)
    if model.residual:
        notes.append(
            "residual model: the linear skip path (x -> x + P g(x)) is not part of Q; "
            "Q describes the bilinear branch only"
        )
    # ARPACK needs k < d - 1; a smaller d falls back to the dense route. Biases change
    # only the linear and constant parts, not Q, and those come from the factors.
    arpack = method == "arpack" and k < d - 1
    inter = None if arpack else interaction(L, direction.u)
    linear = constant = None
    if arpack:
        lam, vecs = top_eigenpairs(interaction_operator(L, direction.u), k)
        sum_abs = eff = top_share = None
        notes.append(ARPACK_NOTE.format(k=k))
        if L.has_bias:
            linear, constant = _bias_parts(L, direction.u)
        elif L.b_p is not None:
            constant = float(direction.u @ L.b_p)
    else:
        method = "dense"
        lam_all, vecs_all = eigh_sorted(inter.Q)
        lam, vecs = lam_all[:k], vecs_all[:k]
        sum_abs = float(np.sum(np.abs(lam_all), dtype=np.float64))
        eff = effective_rank(lam_all)
        top_share = share_of_top(lam_all, k)
    if inter is not None and inter.linear is not None:
        linear, constant = inter.linear, inter.constant
    elif inter is not None and L.b_p is not None:
        constant = inter.constant
    if basis == "input":
        E = model.embed(dtype)  # (d, n_in)
        vecs = vecs @ E
        if linear is not None:
            linear = linear @ E
    return Decomposition(
        eigenvalues=lam,
        eigenvectors=vecs,
        basis=basis,
        layer=layer,
        direction=direction.info,
        n_eigenvalues=d,
        sum_abs=sum_abs,
        effective_rank=eff,
        top_share=top_share,
        method=method,
        layout=model.layout,
        dtype=np.dtype(dtype).name,
        linear=linear,
        constant=constant,
        input_shape=model.input_shape if basis == "input" else None,
        notes=notes,
    )


def spectra(
    model: BilinearModel,
    layer: int,
    directions: list[Direction],
    dtype: type = np.float32,
    advance=None,
) -> tuple[dict, list[np.ndarray]]:
    """Spectrum summaries (see :func:`bilin_cli.spectra.summarize`) for many directions.

    Returns the JSON document and the full eigenvalue arrays (for plots and npz).
    """
    L = model.layer(layer, dtype)
    rows, lams = [], []
    for direction in directions:
        lam = eigenvalues(interaction(L, direction.u).Q)
        lams.append(lam)
        rows.append({"direction": direction.info, **summarize(lam)})
        if advance:
            advance()
    doc = {"layout": model.layout, "layer": layer, "n_eigenvalues": L.d, "directions": rows}
    return doc, lams


def chain(
    model: BilinearModel,
    layer: int,
    direction: Direction,
    j: int,
    top: int | None = 10,
    basis: str = "auto",
    dtype: type = np.float32,
) -> list[Decomposition]:
    """Chained decomposition: eigenvector ``j`` (1-based) of layer L is the direction of L-1.

    Layer L's input space is layer L-1's output space, so each step's hidden-basis
    eigenvector is a valid output direction one layer down; the last step (layer 0)
    is shown in ``basis``.
    """
    if j < 1:
        raise BilinError(f"--chain takes a 1-based eigenvector index, got {j}")
    steps: list[Decomposition] = []
    current = direction
    for index in range(layer, 0, -1):
        dec = decompose(model, index, current, top=None, basis="hidden", dtype=dtype)
        if j > dec.n_eigenvalues:
            raise BilinError(
                f"--chain {j}: layer {index} has only {dec.n_eigenvalues} eigenvectors"
            )
        v, lam_j = dec.eigenvectors[j - 1], float(dec.eigenvalues[j - 1])
        k = dec.n_eigenvalues if top is None else min(top, dec.n_eigenvalues)
        dec.eigenvalues, dec.eigenvectors = dec.eigenvalues[:k], dec.eigenvectors[:k]
        dec.top_share = float(np.abs(dec.eigenvalues).sum() / dec.sum_abs) if dec.sum_abs else 0.0
        steps.append(dec)
        notes = []
        info = {"kind": "chain", "from_layer": index, "eigenvector": j, "eigenvalue": lam_j}
        if model.kind == "lm":
            # Layer L reads g * x / rms(x) from the residual stream x, so v . input is
            # (g * v) . x up to the positive 1/rms(x): g * v is the residual direction.
            g = model.mlp_norm_gain(index, np.float64)
            if g is not None:
                v = g * v
                info["norm_gain"] = True
            notes.append(
                "chained through the residual stream: attention between layers and the norms' "
                "1/rms scale are ignored" + ("; each norm's gain is applied" if g is not None
                                             else "")
            )
        current = Direction(v.astype(dtype), info, notes)
    steps.append(decompose(model, 0, current, top=top, basis=basis, dtype=dtype))
    return steps

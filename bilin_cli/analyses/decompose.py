"""Decomposing one output direction of one layer: the library behind ``bilin eig``.

``u . y(x) = sum_i lambda_i (v_i . x)^2 [+ linear . x + constant]`` exactly, with
``v_i`` orthonormal in the layer's input ("hidden") basis. In the "input" basis of
an image model the vectors are ``E^T v_i`` (pixels; no longer orthonormal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from bilin_cli.analyses.directions import Direction
from bilin_cli.core.errors import BilinError, option
from bilin_cli.model.bilinear import BilinearModel
from bilin_cli.model.interaction import hidden_coefficients, interaction, interaction_operator
from bilin_cli.model.spectra import (
    add_warning,
    all_finite,
    check_top,
    effective_rank,
    eigenvalues,
    eigh_sorted,
    float64_warning,
    is_float64,
    kept,
    largest_magnitude,
    layer_magnitude,
    overflow_error,
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
    :func:`bilin_cli.model.interaction.interaction`."""
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
    # two-input forms (map "inputs": 2): {"x_a": [start, stop], "x_b": [...]} of each vector
    operands: dict | None = None
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
        if self.operands is not None:
            doc["operands"] = self.operands
            doc["operand_shares"] = [
                {name: float(np.sum(np.square(v[a:b], dtype=np.float64)))
                 for name, (a, b) in self.operands.items()} for v in self.eigenvectors]
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
            f"{option('--basis input', 'basis=input')} needs an embedding right before the layer; "
            f"this model {what}: "
            f"use {option('--basis hidden', 'basis=hidden')}"
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
    check_top(top)
    basis = resolve_basis(model, layer, basis)
    dec = _decompose_widening(model, layer, direction, top, basis, dtype, method)
    if model.meta.get("inputs") == 2 and layer == 0:
        dec.operands = dict(model.meta["operands"])
        dec.notes.append("two-input form: each eigenvector's entries split into x_a and x_b "
                         "(operands, operand_shares); eigenvalues come in pairs "
                         "+-sigma_i(M)/2, M = W_l^T diag(W_p^T u) W_r")
    return dec


def _decompose_widening(model, layer, direction, top, basis, dtype, method) -> Decomposition:
    """:func:`_decompose_checked`, redone in float64 where float32 overflowed."""
    dec = _decompose_checked(model, layer, direction, top, basis, dtype, method)
    if dec is not None:
        return dec
    # Inf or NaN on the way (weights near float32's limit, or a direction beyond it): redo
    # it all in float64 from the same (exactly widened) weights, or say why it cannot be.
    what = f"the interaction matrix of {describe_direction(direction.info)} (layer {layer})"
    if is_float64(dtype):
        raise _overflow(model, layer, direction, what)
    wide = widened(model, layer, direction)
    dec = _decompose_checked(model, layer, wide, top, basis, np.float64, method)
    if dec is None:
        raise _overflow(model, layer, wide, what)
    dec.notes.append(f"computed in float64: {what} overflowed float32")
    add_warning(model.warnings, float64_warning(f"layer {layer}'s interaction matrices"))
    return dec


def describe_direction(info: dict) -> str:
    """``class 3``, ``token 101``, ``SAE feature 8``... for messages (what ``info`` chose)."""
    kind = info.get("kind")
    if kind == "class":
        return f"class {info.get('index')}"
    if kind == "token":
        return f"token {info.get('index')}"
    if kind == "sae_feature":
        return f"SAE feature {info.get('feature')}"
    if kind == "file":
        return f"direction {info.get('path')}"
    if kind == "chain":
        return f"eigenvector {info.get('eigenvector')} of layer {info.get('from_layer')}"
    return "the direction"


def widened(model: BilinearModel, layer: int, direction: Direction) -> Direction:
    """``direction`` in float64 for a recomputation: its float32 ``u`` widened exactly, or,
    where that overflowed float32 on the way in (a float64 ``.npy`` of 1e300), the file read
    again in float64. A vector that cannot be had in float64 is an error."""
    u = direction.u
    if all_finite(u):
        return replace(direction, u=np.asarray(u, dtype=np.float64))
    if direction.info.get("kind") == "file":
        from bilin_cli.analyses.directions import from_file

        with np.errstate(over="ignore", invalid="ignore"):
            again = from_file(model, layer, direction.info["path"], np.float64)
        return replace(direction, u=again.u)
    raise BilinError(f"{describe_direction(direction.info)} does not fit in float32; "
                     f"give it in float64 ({option('--float64', 'dtype=np.float64')})")


def _overflow(model, layer, direction, what) -> BilinError:
    """The error for a Q that overflows float64 too, naming the larger of its inputs."""
    L = model.layer(layer, np.float64)
    w, u = layer_magnitude(L), largest_magnitude([direction.u])
    return overflow_error(what, u, "direction entries") if u > max(w, 1.0) else \
        overflow_error(what, w)


def direction_info(direction: Direction) -> dict:
    """``direction.info`` with a finite ``norm``: a vector of 1e300 has a norm that is
    finite but whose square is not, so ``norm`` is recomputed scaled where it overflowed."""
    info = direction.info
    norm = info.get("norm")
    if not isinstance(norm, float) or math.isfinite(norm):
        return info
    u = np.asarray(direction.u, dtype=np.float64)
    top = largest_magnitude([u])
    if not all_finite(u) or top == 0:
        return info
    return {**info, "norm": top * float(np.linalg.norm(u / top))}


def _decompose_checked(model, layer, direction, top, basis, dtype, method):
    """:func:`_decompose`, or None where anything it computes is infinite or NaN."""
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            return _decompose(model, layer, direction, top, basis, dtype, method)
        except _NotFinite:
            return None


class _NotFinite(Exception):
    """A result on the way was infinite or NaN (or LAPACK/ARPACK gave up on one)."""


def _finite(*arrays) -> None:
    if not all_finite(*arrays):
        raise _NotFinite


def _checked_operator(op):
    """``op`` that stops ARPACK at the first infinite or NaN product (``O(d)`` per product),
    before LAPACK sees one (it prints xerbla messages on stderr and returns NaN)."""
    from scipy.sparse.linalg import LinearOperator

    def matvec(v: np.ndarray) -> np.ndarray:
        out = op.matvec(v)
        _finite(out)
        return out

    return LinearOperator(op.shape, matvec=matvec, rmatvec=matvec, dtype=op.dtype)


def _decompose(model, layer, direction, top, basis, dtype, method) -> Decomposition:
    L = model.layer(layer, dtype)
    d = L.d
    k = kept(top, d)
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
    _finite(direction.u)
    inter = None if arpack else interaction(L, direction.u)
    linear = constant = None
    if arpack:
        from scipy.sparse.linalg import ArpackError

        _finite(hidden_coefficients(L, direction.u))
        try:
            lam, vecs = top_eigenpairs(_checked_operator(interaction_operator(L, direction.u)), k)
        except (ArpackError, np.linalg.LinAlgError):
            raise _NotFinite from None
        sum_abs = eff = top_share = None
        notes.append(ARPACK_NOTE.format(k=k))
        if L.has_bias:
            linear, constant = _bias_parts(L, direction.u)
        elif L.b_p is not None:
            constant = float(direction.u @ L.b_p)
    else:
        method = "dense"
        _finite(inter.Q)  # before LAPACK, which fails or returns NaN on inf
        try:
            lam_all, vecs_all = eigh_sorted(inter.Q)
        except np.linalg.LinAlgError:
            raise _NotFinite from None
        _finite(lam_all)
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
    _finite(lam, vecs, sum_abs, eff, top_share, linear, constant)
    return Decomposition(
        eigenvalues=lam,
        eigenvectors=vecs,
        basis=basis,
        layer=layer,
        direction=direction_info(direction),
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
    """Spectrum summaries (see :func:`bilin_cli.model.spectra.summarize`) for many directions.

    Returns the JSON document and the full eigenvalue arrays (for plots and npz).
    """
    L = model.layer(layer, dtype)
    wide = None  # the layer in float64, loaded the first time a spectrum overflows float32
    rows, lams = [], []
    for direction in directions:
        row = _spectrum_checked(L, direction)
        if row is None:
            what = f"the interaction matrix of {describe_direction(direction.info)} (layer {layer})"
            if is_float64(dtype):
                raise _overflow(model, layer, direction, what)
            direction = widened(model, layer, direction)
            wide = wide or model.layer(layer, np.float64)
            row = _spectrum_checked(wide, direction)
            if row is None:
                raise _overflow(model, layer, direction, what)
            add_warning(model.warnings, float64_warning(f"layer {layer}'s interaction matrices"))
        lam, summary = row
        lams.append(lam)
        rows.append({"direction": direction_info(direction), **summary})
        if advance:
            advance()
    doc = {"layout": model.layout, "layer": layer, "n_eigenvalues": L.d, "directions": rows}
    return doc, lams


def _spectrum_checked(L, direction: Direction) -> tuple[np.ndarray, dict] | None:
    """All eigenvalues of ``Q(u)`` and their summary, or None where any is infinite or NaN."""
    with np.errstate(over="ignore", invalid="ignore"):
        if not all_finite(direction.u):
            return None
        Q = interaction(L, direction.u).Q
        if not all_finite(Q):  # before LAPACK, which fails or returns NaN on inf
            return None
        try:
            lam = eigenvalues(Q)
        except np.linalg.LinAlgError:
            return None
        if not all_finite(lam):
            return None
        summary = summarize(lam)
    if not all_finite(summary["sum_abs_eigenvalues"], summary["effective_rank"]):
        return None
    return lam, summary


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
        raise BilinError(f"{option('--chain', 'chain')} takes a 1-based eigenvector index, got {j}")
    steps: list[Decomposition] = []
    current = direction
    for index in range(layer, 0, -1):
        dec = decompose(model, index, current, top=None, basis="hidden", dtype=dtype)
        if j > dec.n_eigenvalues:
            raise BilinError(
                f"{option('--chain', 'chain')} {j}: layer {index} has only {dec.n_eigenvalues} "
                f"eigenvectors"
            )
        v, lam_j = dec.eigenvectors[j - 1], float(dec.eigenvalues[j - 1])
        k = kept(top, dec.n_eigenvalues)
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

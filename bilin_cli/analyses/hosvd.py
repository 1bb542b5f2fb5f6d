"""Higher-order SVD of a bilinear layer: the library behind ``bilin hosvd``.

The symmetrized tensor ``B : (o, d, d)`` unfolded to ``(o, d^2)`` has the SVD

    B = sum_k sigma_k u_k (x) Q_k,     u_k : (o,) unit,  Q_k : (d, d) symmetric, ||Q_k||_F = 1

``u_k`` says how much each output uses component ``k``; ``Q_k`` is an interaction
matrix like any other and is eigendecomposed as such.

Two ways to get there (both exact; ``auto`` takes the one needing less memory):

* ``gram`` (default): never forms the unfolding. The Gram matrix ``G = B B^T``
  ``(o, o)`` has the closed form ``G = 1/2 P (Gw * Gv + M * M^T) P^T`` with
  ``Gw = W W^T``, ``Gv = V V^T``, ``M = W V^T`` (all ``(h, h)``, ``*`` elementwise),
  because ``<B_c, B_e>_F = 1/2 (<A_c, A_e> + <A_c, A_e^T>)`` for
  ``A_c = W^T diag(P[c]) V``. ``G = U diag(sigma^2) U^T``; then
  ``sigma_k Q_k = B^T u_k = Q(u_k)``, one :func:`symmetric_form` per requested
  component. Cost ``O(h^2 d)``, memory ``O(h^2)``. ``G`` is formed in float64: it
  squares the singular values, and ``sigma_k`` is re-read as ``||Q(u_k)||_F`` so it
  does not inherit that squaring.
* ``unfold``: builds the ``(o, d^2)`` unfolding row by row (``B_c = Q(e_c)``) and
  calls LAPACK's SVD; ``O(o h d^2 + o^2 d^2)`` time, ``3 o d^2`` floats of memory.

With biases the decomposition covers the interaction (quadratic) block only;
the linear and constant parts are not part of ``B``.

Numerical rank (which singular values are zero): the tolerance suits what each method
actually computes, in float64 (both methods work in float64 whatever ``--float64`` says).

* ``unfold``: NumPy's ``matrix_rank`` convention on the unfolding,
  ``sigma_k > sigma_1 * max(o, d^2) * eps``.
* ``gram``: the same convention on the eigenvalues ``sigma^2`` of ``G``,
  ``sigma_k^2 > sigma_1^2 * n * eps`` with ``n = o + h + d`` (G's size plus the inner
  dimensions of its products), i.e. ``sigma_k > sigma_1 * sqrt(n * eps)``. A singular
  value recovered from its square is only resolved down to about ``sqrt(eps) * sigma_1``
  (rounding noise in ``G`` of ``eps * sigma_1^2`` is ``sqrt(eps) * sigma_1`` in sigma), so
  anything below that is zero for this method.

Singular values at or below the tolerance are reported as 0 and never eigendecomposed.
Both methods give the same rank wherever the nonzero singular values lie above
``sqrt(n * eps) * sigma_1`` (every trained or random layer; ``--method unfold`` resolves
smaller ones).

Numbering: components and each component's eigenpairs are counted from 1 (``sigma_1`` is
the largest), as ``bilin eig`` numbers eigenvectors.

Sign rule: each ``u_k`` has its largest-magnitude entry positive (``Q_k`` follows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bilin_cli.core.errors import BilinError, option
from bilin_cli.model.bilinear import BilinearLayer, BilinearModel
from bilin_cli.model.interaction import hidden_coefficients, symmetric_form
from bilin_cli.model.spectra import (
    add_warning,
    all_finite,
    check_top,
    effective_rank,
    eigh_sorted,
    float64_warning,
    is_float64,
    kept,
    layer_magnitude,
    overflow_error,
    top_note,
)

METHODS = ("auto", "gram", "unfold")
_EPS = float(np.finfo(np.float64).eps)  # both methods compute in float64


def rank_tolerance(sigma_max: float, method: str, d: int, h: int, o: int) -> float:
    """The singular value at or below which ``method``'s ``sigma_k`` is numerically zero.

    ``unfold``: ``sigma_1 * max(o, d^2) * eps`` (NumPy's ``matrix_rank`` on the unfolding).
    ``gram``: ``sigma_1 * sqrt((o + h + d) * eps)``: the same convention applied to the
    eigenvalues ``sigma^2`` of ``B B^T``, which resolve sigma only to ``~sqrt(eps) sigma_1``.
    """
    if method == "gram":
        return float(sigma_max) * float(np.sqrt((o + h + d) * _EPS))
    if method == "unfold":
        return float(sigma_max) * max(o, d * d) * _EPS
    raise BilinError(f"unknown HOSVD method {method!r}")


def _f8(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else np.asarray(a, dtype=np.float64)


def estimate_bytes(layer_shape, method: str) -> int:
    """Peak working memory (bytes) of ``method`` for a layer with ``d, h, o``.

    ``gram``: float64 copies of W, V, P and four ``(h, h)`` products, plus one ``(d, d)``
    Q with its ``eigh`` workspace at a time. ``unfold``: the ``(o, d^2)`` unfolding,
    the SVD's right vectors of the same size and LAPACK's copy.
    """
    d, h, o = layer_shape.d, layer_shape.h, layer_shape.o
    per_q = 4 * d * d * 8
    if method == "gram":
        return 8 * (4 * h * h + 2 * h * d + 2 * o * h + 2 * o * o) + per_q
    return 3 * o * d * d * 8 + per_q


def unfolding_bytes(layer_shape) -> int:
    """Bytes of the float64 ``(o, d^2)`` unfolding of B (what a naive HOSVD holds)."""
    return layer_shape.o * layer_shape.d * layer_shape.d * 8


def available_memory() -> int | None:
    """``MemAvailable`` from /proc/meminfo in bytes, or None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def choose_method(layer_shape, method: str = "auto") -> str:
    if method not in METHODS:
        raise BilinError(f"unknown HOSVD method {method!r}: choose one of {', '.join(METHODS)}")
    if method != "auto":
        return method
    return min(("gram", "unfold"), key=lambda m: estimate_bytes(layer_shape, m))


MAX_MEMORY_GB = 2.0**40  # a zebibyte: a larger --max-memory means the same (no limit)


def check_memory(needed: int, limit_gb: float | None = None) -> int | None:
    """Raise if ``needed`` bytes exceed ``limit_gb`` (or MemAvailable); return the limit used."""
    if limit_gb is not None and not limit_gb > 0:  # NaN too
        raise BilinError(f"{option('--max-memory', 'max_memory_gb')} must be a positive number of "
                         f"GB, got {limit_gb}")
    # Any positive value works: past MAX_MEMORY_GB (1e308 or inf included) there is no
    # limit to speak of, and the bytes are computed from a value that cannot overflow.
    limit = int(min(float(limit_gb), MAX_MEMORY_GB) * 1024**3) if limit_gb is not None \
        else available_memory()
    if limit is not None and needed > limit:
        source = (option("--max-memory", "max_memory_gb") if limit_gb is not None
                  else "available memory (MemAvailable)")
        raise BilinError(
            f"HOSVD of this layer needs about {needed / 1024**3:.2f} GB, more than the "
            f"{limit / 1024**3:.2f} GB of {source}; free memory, or raise the limit with "
            f"{option('--max-memory GB', 'max_memory_gb=')} if you know better"
        )
    return limit


def gram_matrix(layer: BilinearLayer) -> np.ndarray:
    """``G = B B^T : (o, o)`` (float64) of the unfolded symmetrized B, without forming B.

    ``G = 1/2 P (Gw * Gv + M * M^T) P^T``, ``Gw = W W^T``, ``Gv = V V^T``, ``M = W V^T``.
    """
    W, V, P = _f8(layer.W), _f8(layer.V), _f8(layer.P)
    H = W @ W.T
    H *= V @ V.T
    M = W @ V.T
    H += M * M.T
    del M
    H *= 0.5
    G = H if P is None else P @ H @ P.T
    return 0.5 * (G + G.T)  # exact symmetry for eigh (it reads one triangle)


def unfolding(layer: BilinearLayer) -> np.ndarray:
    """The symmetrized B unfolded to ``(o, d^2)`` (float64), one row ``Q(e_c)`` at a time."""
    W, V, P = _f8(layer.W), _f8(layer.V), _f8(layer.P)
    o, d = layer.o, layer.d
    B = np.empty((o, d * d))
    for c in range(o):
        if P is None:  # identity P: B_c is the one hidden unit's product
            coef = np.zeros(o)
            coef[c] = 1.0
        else:
            coef = P[c]
        B[c] = symmetric_form(W, V, coef).ravel()
    return B


@dataclass
class Loadings:
    """The output side of the HOSVD: all singular values and output vectors."""

    sigma: np.ndarray  # (r,) descending, r = number computed (o, or d^2 if less); 0 past rank
    U: np.ndarray  # (o, r) columns u_k, unit norm, sign-fixed
    Qs: np.ndarray | None = None  # (r, d, d), only from the unfold method
    tolerance: float = 0.0  # singular values at or below this are numerically zero
    rank: int = 0  # how many singular values lie above ``tolerance``


def loadings(layer: BilinearLayer, method: str = "gram") -> Loadings:
    """Singular values and output vectors ``u_k`` of the unfolded B (float64).

    Singular values at or below :func:`rank_tolerance` are set to 0 (``rank`` counts the others).
    """
    if method == "gram":
        G = gram_matrix(layer)
        lam, U = np.linalg.eigh(G)
        order = np.argsort(-lam, kind="stable")
        sigma = np.sqrt(np.clip(lam[order], 0.0, None))
        U = U[:, order]
        Qs = None
    elif method == "unfold":
        B = unfolding(layer)
        U, sigma, Vt = np.linalg.svd(B, full_matrices=False)
        del B
        d = layer.d
        Qs = Vt.reshape(-1, d, d)
        Qs = 0.5 * (Qs + Qs.transpose(0, 2, 1))  # symmetric up to rounding already
    else:
        raise BilinError(f"unknown HOSVD method {method!r}")
    # Sign rule: the largest-magnitude entry of each u_k is positive (Q_k flips with it).
    pivot = np.argmax(np.abs(U), axis=0)
    signs = np.sign(U[pivot, np.arange(U.shape[1])])
    signs[signs == 0] = 1.0
    U = U * signs
    if Qs is not None:
        Qs = Qs * signs[:, None, None]
    sigma_max = float(sigma[0]) if sigma.size else 0.0
    tol = rank_tolerance(sigma_max, method, layer.d, layer.h, layer.o)
    keep = sigma > tol
    sigma = np.where(keep, sigma, 0.0)
    return Loadings(sigma, U, Qs, tol, int(np.sum(keep)))


def component(layer: BilinearLayer, u: np.ndarray) -> tuple[float, np.ndarray]:
    """``(sigma_k, Q_k)`` for output vector ``u_k``: ``Q(u_k) = sigma_k Q_k``, ``||Q_k||_F = 1``.

    Computed in the layer's dtype. Returns ``(0, zeros)`` for a ``u`` in B's left null space.
    """
    Q = symmetric_form(layer.W, layer.V, hidden_coefficients(layer, u.astype(layer.W.dtype)))
    sigma = float(np.linalg.norm(Q.astype(np.float64)))
    return sigma, (Q / sigma if sigma > 0 else Q)


def _components(L: BilinearLayer, E: np.ndarray | None, load: Loadings, K: int, n_top: int,
                dtype: type):
    """``sigma (K,)``, eigenvalues ``(K, n_top)``, eigenvectors ``(K, n_top, dim)`` and
    effective ranks ``(K,)`` of the first ``K`` components, or None where any is infinite
    or NaN (weights near float32's limit)."""
    sigma = np.empty(K)
    lams = np.empty((K, n_top))
    vecs = np.empty((K, n_top, L.d if E is None else E.shape[1]), dtype=dtype)
    eff = np.empty(K)
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(K):
            if load.Qs is not None:
                sigma[k], Qk = float(load.sigma[k]), load.Qs[k].astype(dtype)
            else:
                sigma[k], Qk = component(L, load.U[:, k])
            if not all_finite(sigma[k], Qk):  # before LAPACK, which fails on inf
                return None
            try:
                lam, V = eigh_sorted(Qk)
            except np.linalg.LinAlgError:
                return None
            eff[k] = effective_rank(lam)
            lams[k] = lam[:n_top]
            V = V[:n_top]
            vecs[k] = V if E is None else V @ E
            if not all_finite(lams[k], vecs[k], eff[k]):
                return None
    return sigma, lams, vecs, eff


@dataclass
class HOSVD:
    """Plain data for ``bilin hosvd``: K components with their top eigenpairs."""

    sigma: np.ndarray  # (K,)
    U: np.ndarray  # (o, K)
    sigma_all: np.ndarray  # (r,) every singular value computed; 0 past ``rank``
    eigenvalues: np.ndarray  # (K, top) of each Q_k, |lambda| descending
    eigenvectors: np.ndarray  # (K, top, dim) in ``basis``
    effective_ranks: np.ndarray  # (K,) of each Q_k's full spectrum
    basis: str
    layer: int
    method: str
    layout: str
    dtype: str
    d: int
    o: int
    bytes_needed: int
    unfolding_bytes: int
    output_names: list[str] | None = None
    input_shape: tuple[int, ...] | None = None
    notes: list[str] = field(default_factory=list)
    rank: int = 0  # singular values above ``rank_tolerance``
    rank_tolerance: float = 0.0

    @property
    def energy_share(self) -> np.ndarray:
        """``sigma_k^2 / sum sigma^2``: the share of ``||B||_F^2`` each component holds."""
        s = self.sigma_all.astype(np.float64)
        with np.errstate(over="ignore"):
            total = float(np.sum(s**2))
        if not np.isfinite(total):  # sigma beyond 1e154: the shares are scale-free
            top = float(s.max())
            return (self.sigma / top) ** 2 / float(np.sum((s / top) ** 2))
        return self.sigma**2 / total if total > 0 else np.zeros_like(self.sigma)


def hosvd(
    model: BilinearModel,
    layer: int,
    components: int | None = 10,
    top: int = 5,
    basis: str = "auto",
    dtype: type = np.float32,
    method: str = "auto",
    max_memory_gb: float | None = None,
) -> HOSVD:
    """HOSVD of ``layer``'s symmetrized B; keep ``components`` components, ``top`` eigenpairs each.

    ``components=None`` keeps every component with a nonzero singular value.
    ``basis`` as in :func:`bilin_cli.analyses.decompose.decompose`.
    """
    from bilin_cli.analyses.decompose import resolve_basis

    if components is not None and components < 1:
        raise BilinError(f"{option('--components', 'components')} must be a positive integer, got "
                         f"{components}")
    check_top(top)
    basis = resolve_basis(model, layer, basis)
    shape = model.shapes[layer]
    method = choose_method(shape, method)
    needed = estimate_bytes(shape, method)
    check_memory(needed, max_memory_gb)

    L = model.layer(layer, dtype)
    what = f"the HOSVD of layer {layer}"
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            load = loadings(L, method)  # float64 whatever dtype says: no wider one to retry
        except np.linalg.LinAlgError:
            load = None
    if load is None or not all_finite(load.sigma, load.U):  # each Q_k is checked below
        raise overflow_error(what, layer_magnitude(L))
    rank = load.rank
    K = rank if components is None else min(components, rank)
    notes: list[str] = []
    if rank == 0:
        notes.append("B is zero (every singular value is 0): no component to show")
    elif components is not None and components > rank:
        notes.append(f"B has rank {rank}: {rank} singular values above the {method} method's "
                     f"tolerance {load.tolerance:.3g}, the rest are numerically zero; showing "
                     f"{K} components")
    if L.has_bias:
        notes.append("biases: the HOSVD covers the interaction (quadratic) block of B; the "
                     "linear and constant parts are not part of it")
    if model.residual:
        notes.append("residual model: the linear skip path is not part of B")
    n_top = kept(top, L.d)
    if top_note(top, L.d, f" of layer {layer}"):
        notes.append(top_note(top, L.d, f" of layer {layer}"))
    parts = _components(L, model.embed(dtype) if basis == "input" else None, load, K, n_top,
                        dtype)
    if parts is None:
        # Q(u_k) or its eigenvectors overflowed: redo the components from the float64 layer.
        if is_float64(dtype):
            raise overflow_error(what, layer_magnitude(L))
        dtype = np.float64
        L = model.layer(layer, dtype)
        parts = _components(L, model.embed(dtype) if basis == "input" else None, load, K,
                            n_top, dtype)
        if parts is None:
            raise overflow_error(what, layer_magnitude(L))
        notes.append(f"computed in float64: {what} overflowed float32")
        add_warning(model.warnings, float64_warning(f"the HOSVD components of layer {layer}"))
    sigma, lams, vecs, eff = parts
    sigma_all = load.sigma.copy()
    sigma_all[:K] = sigma  # the re-read norms (see module docstring)
    return HOSVD(
        sigma=sigma,
        U=load.U[:, :K],
        sigma_all=sigma_all,
        eigenvalues=lams,
        eigenvectors=vecs,
        effective_ranks=eff,
        basis=basis,
        layer=layer,
        method=method,
        layout=model.layout,
        dtype=np.dtype(dtype).name,
        d=L.d,
        o=L.o,
        bytes_needed=needed,
        unfolding_bytes=unfolding_bytes(shape),
        # Names label the model's outputs: only the layer feeding the head produces them.
        output_names=model.output_names
        if model.kind != "lm" and layer == model.n_layers - 1 else None,
        input_shape=model.input_shape if basis == "input" else None,
        notes=notes,
        rank=rank,
        rank_tolerance=load.tolerance,
    )

"""Low-rank search at scale without building every ``Q``: ``bilin rank-features --measure
sq_top_k_share --top N``.

Measure: the share of ``sum lambda^2`` in the ``k`` eigenvalues of largest ``|lambda|``,
``sq_top_k_share = T / S`` with ``T = sum_{top k} lambda^2`` and ``S = ||Q||_F^2``.

* ``S`` is exact for every feature at once, spectrum-free (docs/architecture.md,
  "Spectrum-free identities"):
  ``||Q||_F^2 = c^T K c`` with ``K = 1/2 (G_WW o G_VV + M o M^T)``, ``c = P^T e``,
  ``G_WW = W W^T``, ``G_VV = V V^T``, ``M = V W^T`` (``h x h``, once per layer).
* A single-vector Lanczos run of ``s`` steps per feature, batched over features so that
  every product ``Q_a z_a = 1/2 X^T [c_a o V z_a; c_a o W z_a]`` (``X = [W; V]``) is two
  GEMMs over the batch, gives the projection ``H`` with ``Q Z = Z H_s + beta z e_s^T``.
  Ritz values of ``H_s`` interlace the spectrum, so ``sum_{top k} theta^2 / S`` is a
  rigorous lower bound on the share; ``mu = sigma_max(H)^2 = max_{x in span Z} x^T Q^2 x /
  x^T x`` is a Rayleigh quotient of ``Q^2``.
* Upper bound (probabilistic, stated): the Krylov space of ``Q`` from a random start ``z``
  holds ``p(Q^2) z`` for every polynomial ``p`` of degree ``m = floor((s - 1) / 2)``. With the
  Chebyshev polynomial of ``[0, (1 - eps) lambda_max^2]`` (Kuczynski & Wozniakowski's
  argument, kept in its exact Chebyshev form), ``mu < (1 - eps) lambda_max^2`` only if
  ``a^2 / (1 - a^2) < (1 - eps) / (eps T_m((1 + eps)/(1 - eps))^2)``, where ``a^2`` is the
  squared component of ``z`` on the top eigenvector of ``Q^2``: ``a^2 ~ Beta(1/2, (d-1)/2)``.
  So ``lambda_max^2 <= mu / r`` with probability at least ``1 - delta``, ``r`` solving that
  with the Beta quantile at ``delta`` (:func:`kw_factor`), and ``T <= k lambda_max^2``.
  A second bound holds always: ``T <= S - sum_{j > k} theta_j^2`` (interlacing,
  :func:`lanczos_bounds`); each feature keeps the smaller.
* Ranking: the best candidates by their lower bounds are recomputed exactly (dense float64
  ``eigvalsh`` of ``Q``) until the ``N``-th exact share, the cut ``tau``, is above every other
  feature's upper bound; features still undecided after the first Lanczos run get a longer
  one (a fresh start, so its failure probability stands alone), then a dense check. Every
  reported number is the dense one (``method: "dense"``); each excluded feature ranks below
  the cut except with probability at most ``delta`` (default 1e-10), at most
  ``delta x excluded`` over the whole run (union bound), both reported.

Without ``--top`` every feature is computed densely (there is no cut to certify against).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bilin_cli.model.bilinear import BilinearLayer
from bilin_cli.model.interaction import symmetric_form

DELTA = 1e-10  # failure probability allowed per excluded feature
STEPS = 11  # Lanczos steps for every feature (polynomials of degree 5 in Q^2)
DEEP_STEPS = 33  # Lanczos steps for features the first run leaves undecided (degree 16)
SAFETY = 1e-3  # relative slack on mu for float32 products and rounding of the Ritz values
BASIS_BYTES = 64 << 20  # Lanczos basis per batch
MAX_BATCH = 1024  # features per batch: the (F, 2h) product temporaries stay small
SCREEN_MIN = 64  # undecided features above which the float32 dense screen runs
F32_MARGIN = 1e-3  # relative margin on a float32 dense share (its error is ~1e-6 here)
AUTO_WORK = 1e12  # features x h x d^2 above which --measure auto takes this route


def auto_route(layer: BilinearLayer, n_features: int, top: int | None, sharded: bool) -> str:
    """How bilin ranks by the paper's measures when not told: ``"certified"`` where building
    every ``Q`` (``2 h d^2`` flops a feature) is long (``n h d^2 >= AUTO_WORK``) and a
    ``--top N`` gives a cut to certify against; ``"dense"`` otherwise and for shards."""
    h, d = layer.W.shape
    if top is None or top >= n_features or sharded:
        return "dense"
    return "certified" if n_features * h * d * d >= AUTO_WORK else "dense"


def frobenius_sq(layer: BilinearLayer, E: np.ndarray, block: int = 1024,
                 rows: int = 512) -> np.ndarray:
    """``||Q(e_a)||_F^2 = sum lambda^2`` for every row ``e_a`` of ``E : (n, o)``, in float64.

    ``c^T K c`` with the ``h x h`` matrix ``K = 1/2 (G_WW o G_VV + M o M^T)``; with an output
    projection ``P`` the per-feature quadratic form is ``e^T (P K P^T) e`` (``o x o``).
    ``K`` is built ``rows`` rows at a time (``M o M^T`` row block ``r`` is
    ``(V_r W^T) o (W_r V^T)``) and folded into ``P K`` at once, so no ``h x h`` matrix is held
    when there is a ``P``.
    """
    W = np.asarray(layer.W, dtype=np.float64)
    V = np.asarray(layer.V, dtype=np.float64)
    h = W.shape[0]
    P = None if layer.P is None else np.asarray(layer.P, dtype=np.float64)
    acc = np.zeros((P.shape[0], h)) if P is not None else np.empty((h, h))
    for r in range(0, h, rows):
        Kr = (W[r : r + rows] @ W.T) * (V[r : r + rows] @ V.T)
        Kr += (V[r : r + rows] @ W.T) * (W[r : r + rows] @ V.T)
        Kr *= 0.5
        if P is not None:
            acc += P[:, r : r + rows] @ Kr
        else:
            acc[r : r + rows] = Kr
        del Kr
    K = acc @ P.T if P is not None else acc
    out = np.empty(E.shape[0])
    for s in range(0, E.shape[0], block):
        e = np.asarray(E[s : s + block], dtype=np.float64)
        out[s : s + block] = np.einsum("ni,ni->n", e @ K, e)
    return np.maximum(out, 0.0)


def kw_factor(steps: int, d: int, delta: float = DELTA) -> float:
    """``F`` with ``P(lambda_max(Q^2) > F mu) <= delta`` after ``steps`` Lanczos steps on a
    ``d x d`` matrix from a start uniform on the sphere (module docstring); ``inf`` when the
    run is too short to say anything, 1 when the Krylov space is the whole space."""
    if steps >= d:
        return 1.0
    m = (steps - 1) // 2
    if m < 1:
        return math.inf
    from scipy.special import betaincinv

    x = float(betaincinv(0.5, (d - 1) / 2, delta))  # P(a^2 < x) = delta
    log_t = math.log(x) - math.log1p(-x)

    def log_g(r: float) -> float:  # log of (r / (1 - r)) / T_m((2 - r) / r)^2, rising in r
        y = (2 - r) / r
        log_cheb = m * math.acosh(y) + math.log1p(math.exp(-2 * m * math.acosh(y))) - math.log(2)
        return math.log(r) - math.log1p(-r) - 2 * log_cheb

    lo, hi = 1e-300, 1.0 - 1e-15
    if log_g(lo) > log_t:
        return math.inf
    for _ in range(200):  # bisection on log r
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if log_g(mid) <= log_t else (lo, mid)
        if hi / lo < 1 + 1e-12:
            break
    return 1.0 / lo


class _Backend:
    """NumPy or torch (``device``) for the batched Lanczos products."""

    def __init__(self, device: str | None, dtype):
        self.device = device
        if device is None:
            self.xp, self.dtype = np, dtype
        else:
            from bilin_cli.core.accel import torch_device

            torch, self.dev = torch_device(device)
            self.xp = torch
            self.dtype = torch.float64 if dtype == np.float64 else torch.float32

    def put(self, a: np.ndarray):
        if self.device is None:
            return np.ascontiguousarray(a, dtype=self.dtype)
        return self.xp.from_numpy(np.ascontiguousarray(a)).to(self.dev, self.dtype)

    def get(self, a) -> np.ndarray:
        return np.asarray(a, dtype=np.float64) if self.device is None \
            else a.double().cpu().numpy()

    def zeros(self, shape):
        if self.device is None:
            return np.zeros(shape, dtype=self.dtype)
        return self.xp.zeros(shape, dtype=self.dtype, device=self.dev)


def lanczos(
    layer: BilinearLayer,
    C: np.ndarray,
    steps: int = STEPS,
    device: str | None = None,
    dtype=np.float32,
    seed: int = 0,
    advance: Callable[[int], None] | None = None,
    P: np.ndarray | None = None,
) -> np.ndarray:
    """Lanczos with full reorthogonalisation on ``Q_a`` for ``c_a`` = rows of ``C : (n, h)``
    (with ``P : (o, h)``: ``C : (n, o)`` holds output directions and ``c_a = C_a P``, formed
    batch by batch so no ``(n, h)`` array is held).

    Returns ``H : (n, s + 1, s)`` in float64 with ``Q_a Z_a = Z_a H_a[:s] + z_a H_a[s]``
    (``Z_a : (d, s)`` orthonormal, from a Gaussian start); ``s = min(steps, d)``. A breakdown
    (an invariant subspace) continues from a fresh random vector, so ``span Z_a`` still holds
    the whole Krylov space of the start.
    """
    be = _Backend(device, dtype)
    xp = be.xp
    h, d = layer.W.shape
    s = min(steps, d)
    X = be.put(np.concatenate([layer.W, layer.V], axis=0))  # (2h, d)
    Yt = be.put(np.concatenate([layer.V, layer.W], axis=0)).T  # (d, 2h): q @ Yt = [V q; W q]
    rng = np.random.default_rng(seed)
    n = C.shape[0]
    H = np.zeros((n, s + 1, s))
    batch = max(1, min(n, MAX_BATCH, BASIS_BYTES // (4 * s * d)))
    for lo in range(0, n, batch):
        rows = np.asarray(C[lo : lo + batch], dtype=np.float64)
        c = be.put(rows @ P if P is not None else rows)  # (F, h)
        F = c.shape[0]
        c2 = xp.concatenate([c, c], 1) * 0.5  # (F, 2h)

        def matvec(q, c2=c2):  # (F, d) -> Q q = 1/2 X^T [c o V q; c o W q], two GEMMs
            return ((q @ Yt) * c2) @ X

        Z = be.zeros((F, s, d))
        Hb = be.zeros((F, s + 1, s))
        q = be.put(rng.standard_normal((F, d)))
        q = q / _norm(xp, q)[:, None]
        for j in range(s):
            Z[:, j] = q
            w, Hb[:, : j + 1, j] = _project_out(matvec(q), Z[:, : j + 1])
            beta = _norm(xp, w)
            Hb[:, j + 1, j] = beta
            if j + 1 == s:
                break
            scale = xp.abs(Hb[:, : j + 2, : j + 1]).reshape(F, -1)
            scale = scale.max(1) if xp is np else scale.amax(1)
            broke = beta <= 1e-5 * scale + 1e-30
            if bool(broke.any()):  # restart those from a random vector orthogonal to Z
                fresh, _ = _project_out(be.put(rng.standard_normal((F, d))), Z[:, : j + 1])
                fresh = fresh / _norm(xp, fresh)[:, None]
                w = xp.where(broke[:, None], fresh, w)
                beta = xp.where(broke, xp.ones_like(beta), beta)
                Hb[:, j + 1, j] = xp.where(broke, xp.zeros_like(beta), Hb[:, j + 1, j])
            q = w / beta[:, None]
        H[lo : lo + F] = be.get(Hb)
        if advance:
            advance(F)
    return H


def _project_out(v, Zj):
    """``v : (F, d)`` minus its components on the rows of ``Zj : (F, j, d)`` (orthonormal),
    by classical Gram-Schmidt twice (orthogonal to float precision); returns ``v`` and the
    summed coefficients ``(F, j)``."""
    total = 0.0
    for _ in range(2):
        coef = (Zj @ v[:, :, None])[:, :, 0]
        v = v - (coef[:, None, :] @ Zj)[:, 0]
        total = total + coef
    return v, total


def _norm(xp, a):
    return xp.linalg.norm(a, axis=1) if xp is np else xp.linalg.norm(a, dim=1)


def lanczos_bounds(H: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From :func:`lanczos`'s ``H``: ``(theta, top_sq, mu)``: Ritz values sorted by
    ``|theta|`` descending ``(n, s)``, ``sum_{top k} theta^2`` (a lower bound on
    ``sum_{top k} lambda^2``) and ``mu = sigma_max(H)^2`` (a Rayleigh quotient of ``Q^2``).

    Interlacing gives more: the ``j``-th largest ``|lambda|`` is at least the ``j``-th largest
    ``|theta|`` (the ``a`` largest positive and ``b`` most negative Ritz values each sit inside
    distinct eigenvalues of their sign), so ``sum_{top k} lambda^2 <= S - sum_{j > k} theta_j^2``
    (see :func:`rank_sq_share`)."""
    s = H.shape[2]
    Hs = H[:, :s, :]
    theta = np.linalg.eigvalsh(0.5 * (Hs + Hs.transpose(0, 2, 1)))
    order = np.lexsort((-theta, -np.abs(theta)), axis=-1)
    theta = np.take_along_axis(theta, order, -1)
    top_sq = (theta[:, :k] ** 2).sum(1)
    mu = np.linalg.eigvalsh(H.transpose(0, 2, 1) @ H)[:, -1]
    return theta, top_sq, np.maximum(mu, 0.0)


def dense_top(layer: BilinearLayer, c: np.ndarray, k: int, WV=None) -> tuple[np.ndarray, float]:
    """Exact top-``k`` eigenvalues (by ``|lambda|``, signed) of ``Q`` for ``c = P^T e`` and
    ``sum lambda^2``, from a dense float64 ``eigvalsh`` (``WV``: float64 ``(W, V)`` if held)."""
    lam = dense_spectrum(layer, c, WV)
    return lam[:k], float((lam**2).sum())


def dense_spectrum(layer: BilinearLayer, c: np.ndarray, WV=None) -> np.ndarray:
    """Every eigenvalue of ``Q`` for ``c = P^T e``, by ``|lambda|`` descending (dense float64)."""
    W, V = WV or (np.asarray(layer.W, dtype=np.float64), np.asarray(layer.V, dtype=np.float64))
    lam = np.linalg.eigvalsh(symmetric_form(W, V, c))
    return lam[np.lexsort((-lam, -np.abs(lam)))]


def _dense32_rows(layer: BilinearLayer, E: np.ndarray, k: int,
                  device: str | None) -> list[dict]:
    """The batched float32 dense route's rows for the directions ``E``, in their order.

    (:func:`bilin_cli.analyses.features.rank_features`.)"""
    from bilin_cli.analyses.features import rank_features

    rows = rank_features(layer, np.asarray(E, dtype=np.float32), k, unfold_limit=0,
                         device=device)
    return sorted(rows, key=lambda r: r["feature"])


def _dense32_shares(layer: BilinearLayer, E: np.ndarray, k: int, S: np.ndarray,
                    device: str | None) -> np.ndarray:
    """``sq_top_k_share`` of the directions ``E`` from the batched float32 dense route
    (:func:`bilin_cli.analyses.features.rank_features`), over the exact float64 ``S``."""
    top_sq = np.array([float(np.sum(np.square(r["top_eigenvalues"][:k])))
                       for r in _dense32_rows(layer, E, k, device)])
    return np.where(S > 0, top_sq / np.where(S > 0, S, 1.0), 0.0)


@dataclass
class SqRanking:
    """:func:`rank_sq_share`'s result: ``rows`` (the reported features, most low-rank
    first, every number dense and exact) and ``certificate`` (how the rest were excluded)."""

    rows: list[dict]
    certificate: dict = field(default_factory=dict)


@dataclass
class _Measure:
    """What a certified ranking maximises: ``score`` of an exact spectrum (``lam`` by
    ``|lambda|`` descending, ``S = sum lambda^2``), rigorous ``bounds`` ``(lower, upper)`` on
    the score from a Lanczos run ``(theta, top_sq, mu, F, S, k)``, and a float32 ``screen``
    of many features ``(layer, E, k, S, device)``."""

    score: Callable[[np.ndarray, float], float]
    bounds: Callable[..., tuple[np.ndarray, np.ndarray]]
    screen: Callable[..., np.ndarray]
    zero: float = 0.0  # the score of a zero Q (no eigenvalue at all)


def _sq_bounds(theta, top_sq, mu, f, S, kk):
    safe = np.where(S > 0, S, 1.0)
    rest = (theta[:, kk:] ** 2).sum(1) * (1 - SAFETY)  # energy certainly outside the top k
    lower = np.minimum(top_sq / safe, 1.0)
    upper = np.minimum(kk * mu * (1 + SAFETY) * f / safe, 1.0 - rest / safe)
    return lower, upper


def abs_bounds(theta, mu, f, S, kk, d, sort_by: str = "top_k_share"):
    """Rigorous bounds on the paper's measures from one Lanczos run (per feature, arrays):

    * ``lambda_max <= L = sqrt(F mu (1 + SAFETY))`` (probabilistic, :func:`kw_factor`);
    * ``T = sum_{top k} lambda^2 <= T+ = min(k L^2, S - sum_{j>k} theta_j^2)``;
    * ``N = sum_{top k} |lambda|``: ``N- = sum_{top k} |theta|`` (interlacing) ``<= N <=
      N+ = min(k L, sqrt(k T+))``;
    * ``sum |lambda| >= max(sum |theta|, S / L, N- + (S - T+) / L)`` (the Ritz values are
      the eigenvalues of a compression ``Z^T Q Z``, whose nuclear norm is at most ``Q``'s;
      ``sum lambda^2 <= max |lambda| sum |lambda|``, for all and for the rest);
    * ``top_k_share <= min(1, N+ / sum|lambda|-, N+ / (N+ + R-))``, ``R- = (S - T+) / L``;
      ``effective_rank = (sum |lambda|)^2 / S >= (sum|lambda|-)^2 / S``.

    and, the other way, ``sum |lambda| <= N+ + R+`` with ``R+ = sqrt((d - k)(S - T-))``
    (Cauchy-Schwarz over the rest, ``T- = sum_{top k} theta^2``), so
    ``top_k_share >= N- / (N- + R+)`` and ``effective_rank <= (N+ + R+)^2 / S``.

    Returns ``(lower, upper)`` of the score maximised: ``top_k_share``, or minus the
    effective rank; ``d`` is the number of eigenvalues."""
    b = abs_parts(theta, mu, f, S, kk, d)
    N_lo, N_up, A_lo, R_lo, R_up = b["N_lo"], b["N_up"], b["A_lo"], b["R_lo"], b["R_up"]
    safe = np.where(S > 0, S, 1.0)
    if sort_by == "effective_rank":
        return -((N_up + R_up) ** 2) / safe, -(A_lo**2) / safe
    upper = np.minimum.reduce([np.ones_like(S), N_up / np.where(A_lo > 0, A_lo, 1.0),
                               N_up / np.where(N_up + R_lo > 0, N_up + R_lo, 1.0)])
    lower = N_lo / np.where(N_lo + R_up > 0, N_lo + R_up, 1.0)
    return np.minimum(lower, upper), upper


def abs_parts(theta, mu, f, S, kk, d) -> dict[str, np.ndarray]:
    """The pieces of :func:`abs_bounds`, per feature: ``N_lo <= N <= N_up`` (``N = sum_{top k}
    |lambda|``), ``A_lo <= sum |lambda| <= N_up + R_up``, ``R_lo <= sum_{j > k} |lambda_j|``,
    ``L >= lambda_max`` (probabilistic)."""
    at = np.abs(theta)
    L = np.sqrt(np.maximum(f * mu * (1 + SAFETY), 0.0))
    L = np.where(L > 0, L, 1e-300)
    rest_sq = (theta[:, kk:] ** 2).sum(1) * (1 - SAFETY)
    T_up = np.minimum(kk * L**2, np.maximum(S - rest_sq, 0.0))
    N_lo = at[:, :kk].sum(1) * (1 - SAFETY)
    N_up = np.minimum(kk * L, np.sqrt(kk * T_up))
    R_lo = np.maximum(S - T_up, 0.0) / L
    A_lo = np.maximum.reduce([at.sum(1) * (1 - SAFETY), S / L, N_lo + R_lo])
    top_sq = (theta[:, :kk] ** 2).sum(1) * (1 - SAFETY)
    R_up = np.sqrt(max(d - kk, 0) * np.maximum(S - top_sq, 0.0) * (1 + SAFETY))
    return {"L": L, "N_lo": N_lo, "N_up": N_up, "A_lo": A_lo, "R_lo": R_lo, "R_up": R_up}


def _certified_top(layer, E, S, kk, top, measure: _Measure, steps, deep_steps, delta, device,
                   advance):
    """The engine of :func:`rank_sq_share` and :func:`rank_abs_share` (module docstring):
    ``(scores, exact, spectra, certificate)`` after the ``top`` features by ``measure``'s
    score are exact and every other feature's upper bound is below the cut."""
    n = E.shape[0]
    P64 = None if layer.P is None else np.asarray(layer.P, dtype=np.float64)
    d = layer.W.shape[1]
    vals = np.zeros(n)
    spectra: dict[int, np.ndarray] = {}
    exact = np.zeros(n, dtype=bool)
    WV: list = []

    def refine(idx) -> None:
        if len(idx) and not WV:
            WV.extend((np.asarray(layer.W, dtype=np.float64),
                       np.asarray(layer.V, dtype=np.float64)))
        for i in idx:
            if not exact[i]:
                c = E[i] @ P64 if P64 is not None else E[i]
                lam = dense_spectrum(layer, c, tuple(WV))
                spectra[i] = lam
                vals[i] = measure.score(lam, float((lam**2).sum()))
                exact[i] = True

    if top is None or top >= n:
        refine(range(n))
        if advance:
            advance(n)
        return vals, exact, spectra, {"features": n, "dense": n, "excluded": 0}

    lower = np.full(n, -np.inf)
    upper = np.where(S > 0, np.inf, measure.zero)
    lower[S <= 0] = measure.zero
    live = np.flatnonzero(S > 0)

    def bound(idx, n_steps, seed, adv=None) -> None:
        H = lanczos(layer, E[idx], n_steps, device=device, seed=seed, advance=adv, P=P64)
        theta, top_sq, mu = lanczos_bounds(H, kk)
        f = kw_factor(min(n_steps, d), d, delta)
        lo, up = measure.bounds(theta, top_sq, mu, f, S[idx], kk)
        lower[idx] = np.maximum(lower[idx], lo)
        upper[idx] = np.minimum(upper[idx], up)

    bound(live, steps, 0, advance)
    steps_run = [min(steps, d)]

    def settle() -> tuple[float, np.ndarray]:
        """Refine the best candidates until the cut is the N-th exact score; return the cut
        and the features still above it."""
        while True:
            score = np.where(exact, vals, lower)
            head = np.argsort(-score, kind="stable")[:top]
            todo = head[~exact[head]]
            if todo.size == 0:
                tau = float(np.sort(vals[exact])[::-1][top - 1])
                # candidates whose lower bound beats the cut must be computed
                beat = np.flatnonzero(~exact & (lower >= tau))
                if beat.size == 0:
                    return tau, np.flatnonzero(~exact & (upper >= tau))
                refine(beat)
            else:
                refine(todo)

    tau, open_ = settle()
    if open_.size and deep_steps > steps:
        bound(open_, deep_steps, 1)
        steps_run.append(min(deep_steps, d))
        tau, open_ = settle()
    screened = 0
    if open_.size > max(SCREEN_MIN, 4 * top):
        # The cut lies in the bulk: bounds cannot separate features of nearly equal score.
        # Screen them with the batched float32 dense route (the paper's, every core), then
        # keep in float64 only those within float32's error of the cut.
        approx = measure.screen(layer, E[open_], kk, S[open_], device)
        upper[open_] = np.minimum(upper[open_], approx + np.abs(approx) * F32_MARGIN + 1e-7)
        screened = int(open_.size)
        tau, open_ = settle()
    refine(open_)  # whatever no bound separates from the cut is computed exactly
    tau, open_ = settle()
    excluded = int(n - exact.sum())
    cert = {
        "features": n, "dense": int(exact.sum()), "excluded": excluded, "cut": tau,
        "lanczos_steps": steps_run, "failure_probability_per_feature": delta,
        "failure_probability_bound": min(1.0, delta * excluded),
        "max_excluded_upper_bound": float(upper[~exact].max()) if excluded else None,
        "screened_dense_float32": screened,
    }
    return vals, exact, spectra, cert


def rank_sq_share(
    layer: BilinearLayer,
    enc: np.ndarray,
    k: int = 2,
    features: np.ndarray | None = None,
    top: int | None = None,
    steps: int = STEPS,
    deep_steps: int = DEEP_STEPS,
    delta: float = DELTA,
    device: str | None = None,
    advance: Callable[[int], None] | None = None,
) -> SqRanking:
    """The ``top`` features with the largest ``sq_top_k_share``, exact; see the module
    docstring. ``enc : (n_features, o)`` holds the output directions (SAE encoder rows);
    without ``top`` every feature is computed densely and reported."""
    features = np.arange(enc.shape[0]) if features is None else np.asarray(features)
    E = np.asarray(enc[features], dtype=np.float64)
    S = frobenius_sq(layer, E)
    kk = min(k, layer.W.shape[1])
    measure = _Measure(
        score=lambda lam, sq: float((lam[:kk] ** 2).sum() / sq) if sq > 0 else 0.0,
        bounds=_sq_bounds, screen=_dense32_shares)
    vals, exact, spectra, cert = _certified_top(layer, E, S, kk, top, measure, steps,
                                                deep_steps, delta, device, advance)
    order = np.argsort(-np.where(exact, vals, -1.0), kind="stable")
    order = order[: exact.sum() if top is None else top]
    rows = []
    for i in order:
        top_lam = np.zeros(kk)
        top_lam[: min(kk, spectra[i].size)] = spectra[i][:kk]
        rows.append({"feature": int(features[i]), "sq_top_k_share": float(vals[i]),
                     "sum_sq_eigenvalues": float(S[i]), "top_eigenvalues": top_lam.tolist(),
                     "method": "dense"})
    return SqRanking(rows, cert)


def rank_abs_share(
    layer: BilinearLayer,
    enc: np.ndarray,
    k: int = 2,
    features: np.ndarray | None = None,
    top: int | None = None,
    sort_by: str = "top_k_share",
    steps: int = STEPS,
    deep_steps: int = DEEP_STEPS,
    delta: float = DELTA,
    device: str | None = None,
    advance: Callable[[int], None] | None = None,
) -> SqRanking:
    """The paper's measure at scale: the ``top`` features with the largest ``top_k_share``
    (share of ``sum |lambda|`` in the top ``k``) or, with ``sort_by="effective_rank"``, the
    smallest effective rank ``(sum |lambda|)^2 / sum lambda^2``, certified like
    :func:`rank_sq_share` with the bounds of :func:`abs_bounds`. Every reported number is
    the dense float64 one; rows carry the dense route's keys (``top_k_share``,
    ``effective_rank``, ``sum_abs_eigenvalues``, ``top_eigenvalues``)."""
    features = np.arange(enc.shape[0]) if features is None else np.asarray(features)
    E = np.asarray(enc[features], dtype=np.float64)
    S = frobenius_sq(layer, E)
    kk = min(k, layer.W.shape[1])

    def stats(lam: np.ndarray, sq: float) -> tuple[float, float, float]:
        total = float(np.abs(lam).sum())
        share = float(np.abs(lam[:kk]).sum() / total) if total > 0 else 0.0
        eff = total**2 / sq if sq > 0 else 0.0
        return share, eff, total

    def score(lam, sq):
        share, eff, _ = stats(lam, sq)
        return share if sort_by == "top_k_share" else -eff

    def screen(layer_, E_, kk_, S_, device_):
        rows = _dense32_rows(layer_, E_, kk_, device_)
        key = "top_k_share" if sort_by == "top_k_share" else "effective_rank"
        vals = np.array([r[key] for r in rows], dtype=np.float64)
        return vals if sort_by == "top_k_share" else -vals

    measure = _Measure(
        score=score, screen=screen,
        bounds=lambda theta, top_sq, mu, f, S_, kk_: abs_bounds(theta, mu, f, S_, kk_,
                                                                layer.W.shape[1], sort_by))
    vals, exact, spectra, cert = _certified_top(layer, E, S, kk, top, measure, steps,
                                                deep_steps, delta, device, advance)
    order = np.argsort(-np.where(exact, vals, -np.inf), kind="stable")
    order = order[: exact.sum() if top is None else top]
    rows = []
    for i in order:
        lam = spectra[i]
        share, eff, total = stats(lam, float((lam**2).sum()))
        top_lam = np.zeros(kk)
        top_lam[: min(kk, lam.size)] = lam[:kk]
        rows.append({"feature": int(features[i]), "top_k_share": share, "effective_rank": eff,
                     "sum_abs_eigenvalues": total, "top_eigenvalues": top_lam.tolist(),
                     "method": "dense"})
    return SqRanking(rows, cert)

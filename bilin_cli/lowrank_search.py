"""Low-rank search at scale without building every ``Q``: ``bilin rank-features --measure
sq_top_k_share``.

Measure: the share of ``sum lambda^2`` in the ``k`` eigenvalues of largest ``|lambda|``,
``sq_top_k_share = sum_{top k} lambda^2 / ||Q||_F^2``.

* The denominator is exact for every feature at once, spectrum-free (DESIGN.md section 1):
  ``||Q||_F^2 = c^T K c`` with ``K = 1/2 (G_WW o G_VV + M o M^T)``, ``c = P^T e``,
  ``G_WW = W W^T``, ``G_VV = V V^T``, ``M = V W^T`` (``h x h``, once per layer), so
  ``sum_a ||Q_a||_F^2 = rowsum((E P K P^T) o E)``: ``O(h^2 d)`` once plus ``O(d^2)`` a feature.
* The numerator: a few steps of block Krylov for a batch of features at once, every
  product ``Q_a Z_a = 1/2 X^T [c_a o V Z_a; c_a o W Z_a]`` (``X = [W; V]``) being two GEMMs
  over the whole batch; Rayleigh-Ritz per feature is a tiny ``eigh``. Ritz values interlace,
  so ``sum_{top k} theta^2`` is a rigorous lower bound on ``sum_{top k} lambda^2``.
* Ranking: features are screened by their Ritz estimate; every feature that could reach the
  reported top ``N`` (its estimate times ``SCREEN`` (2) reaches the cut, or its spectrum is not
  yet resolved) is recomputed exactly (dense ``eigvalsh`` of ``Q`` in float64), and the
  reported numbers are those exact values (``method: "dense"``). Features that stay screened
  out carry their Krylov estimate (``method: "krylov"``, a lower bound).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bilin_cli.interaction import symmetric_form
from bilin_cli.model import BilinearLayer

SCREEN = 2.0  # a screened-out feature's Krylov estimate would have to be 2x too small to rank


def frobenius_sq(layer: BilinearLayer, E: np.ndarray, block: int = 1024) -> np.ndarray:
    """``||Q(e_a)||_F^2 = sum lambda^2`` for every row ``e_a`` of ``E : (n, o)``, in float64.

    ``c^T K c`` with the ``h x h`` matrix ``K = 1/2 (G_WW o G_VV + M o M^T)``; with an output
    projection ``P`` the per-feature quadratic form is ``e^T (P K P^T) e`` (``o x o``).
    """
    W = np.asarray(layer.W, dtype=np.float64)
    V = np.asarray(layer.V, dtype=np.float64)
    M = V @ W.T
    K = W @ W.T
    K *= V @ V.T
    K += M * M.T
    K *= 0.5
    del M
    if layer.P is not None:
        P = np.asarray(layer.P, dtype=np.float64)
        K = (P @ K) @ P.T
    out = np.empty(E.shape[0])
    for s in range(0, E.shape[0], block):
        e = np.asarray(E[s : s + block], dtype=np.float64)
        out[s : s + block] = np.einsum("ni,ni->n", e @ K, e)
    return np.maximum(out, 0.0)


class _Backend:
    """NumPy or torch (``device``) for the batched Krylov products."""

    def __init__(self, device: str | None, dtype):
        self.device = device
        if device is None:
            self.xp, self.dtype = np, dtype
        else:
            from bilin_cli.accel import torch_device

            torch, self.dev = torch_device(device)
            self.xp = torch
            self.dtype = torch.float64 if dtype == np.float64 else torch.float32

    def put(self, a: np.ndarray):
        if self.device is None:
            return np.ascontiguousarray(a, dtype=self.dtype)
        return self.xp.from_numpy(np.ascontiguousarray(a)).to(self.dev, self.dtype)

    def get(self, a) -> np.ndarray:
        return a if self.device is None else a.double().cpu().numpy()


def krylov_top(
    layer: BilinearLayer,
    C: np.ndarray,
    k: int,
    steps: int = 3,
    block: int | None = None,
    batch: int = 256,
    device: str | None = None,
    dtype=np.float32,
    seed: int = 0,
    advance: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Ritz values of ``Q_a`` for ``c_a`` = rows of ``C : (n, h)``: block Krylov, batched.

    Returns ``(theta, resid)``, each ``(n, steps * block)``, Ritz values sorted by ``|theta|``
    descending (positive first on ties) and their residual norms ``||Q y - theta y||``
    (each ``theta`` has an eigenvalue of ``Q_a`` within its residual).
    """
    b = block or k + 2
    be = _Backend(device, dtype)
    xp = be.xp
    h, d = layer.W.shape
    X = be.put(np.concatenate([layer.W, layer.V], axis=0))  # (2h, d)
    Xt = X.T
    rng = np.random.default_rng(seed)
    n = C.shape[0]
    m = steps * b
    thetas = np.zeros((n, m))
    resids = np.zeros((n, m))
    qr = np.linalg.qr if be.device is None else xp.linalg.qr
    eigh = np.linalg.eigh if be.device is None else xp.linalg.eigh

    def perm(a, axes):
        return a.transpose(axes) if be.device is None else a.permute(*axes)

    for s in range(0, n, batch):
        c = be.put(C[s : s + batch].T)  # (h, F)
        F = c.shape[1]
        c2 = xp.concatenate([c, c], 0)[:, :, None] * 0.5  # (2h, F, 1)

        def matvec(Z, F=F, c2=c2):  # Z: (F, d, b) -> Q Z, same shape
            Zd = perm(Z, (1, 0, 2)).reshape(d, -1)
            XZ = (X @ Zd).reshape(2 * h, F, -1)
            T = xp.concatenate([XZ[h:], XZ[:h]], 0) * c2
            return perm((Xt @ T.reshape(2 * h, -1)).reshape(d, F, -1), (1, 0, 2))

        Z0 = be.put(rng.standard_normal((F, d, b)))
        U, _ = qr(Z0)
        Us, QUs = [], []
        for j in range(steps):
            QU = matvec(U)
            Us.append(U)
            QUs.append(QU)
            if j == steps - 1:
                break
            Y = QU
            for _ in range(2):  # block classical Gram-Schmidt, twice
                for P in Us:
                    Y = Y - P @ (perm(P, (0, 2, 1)) @ Y)
            U, _ = qr(Y)
        Ub = xp.concatenate(Us, 2)  # (F, d, m)
        QUb = xp.concatenate(QUs, 2)
        T = perm(Ub, (0, 2, 1)) @ QUb
        T = 0.5 * (T + perm(T, (0, 2, 1)))
        th, Yv = eigh(T)
        R = QUb @ Yv - (Ub @ Yv) * th[:, None, :]
        rn = be.get((R * R).sum(1) ** 0.5)
        th = be.get(th)
        order = np.lexsort((-th, -np.abs(th)), axis=-1)
        thetas[s : s + F] = np.take_along_axis(th, order, -1)
        resids[s : s + F] = np.take_along_axis(rn, order, -1)
        if advance:
            advance(F)
    return thetas, resids


def dense_top(layer: BilinearLayer, c: np.ndarray, k: int, WV=None) -> tuple[np.ndarray, float]:
    """Exact top-``k`` eigenvalues (by ``|lambda|``, signed) of ``Q`` for ``c = P^T e`` and
    ``sum lambda^2``, from a dense float64 ``eigvalsh`` (``WV``: float64 ``(W, V)`` if held)."""
    W, V = WV or (np.asarray(layer.W, dtype=np.float64), np.asarray(layer.V, dtype=np.float64))
    lam = np.linalg.eigvalsh(symmetric_form(W, V, c))
    order = np.lexsort((-lam, -np.abs(lam)))
    return lam[order[:k]], float((lam**2).sum())


def rank_sq_share(
    layer: BilinearLayer,
    enc: np.ndarray,
    k: int = 2,
    features: np.ndarray | None = None,
    top: int | None = None,
    steps: int = 3,
    device: str | None = None,
    advance: Callable[[int], None] | None = None,
    exact_all: bool = False,
) -> list[dict]:
    """Features ranked by ``sq_top_k_share``, largest first; see the module docstring.

    With ``top`` the first ``top`` rows are exact (dense eigvalsh, float64) and so is every
    feature that might rank among them; the rest carry Krylov lower bounds. ``exact_all``
    (or no ``top``) recomputes every feature exactly whose Krylov spectrum is not resolved
    to 1e-9 relative.
    """
    features = np.arange(enc.shape[0]) if features is None else np.asarray(features)
    E = np.asarray(enc[features], dtype=np.float64)
    S = frobenius_sq(layer, E)
    C = E @ np.asarray(layer.P, dtype=np.float64) if layer.P is not None else E
    theta, resid = krylov_top(layer, C, k, steps=steps, device=device, advance=advance)
    n = len(features)
    safe = np.where(S > 0, S, 1.0)
    lower = np.where(S > 0, (theta[:, :k] ** 2).sum(1) / safe, 0.0)
    # Resolved: the top k Ritz values have tiny residuals and hold nearly all of sum lambda^2,
    # so no other eigenvalue can be large (|lambda_other|^2 <= S - sum of the others' squares).
    captured = np.maximum(np.abs(theta) - resid, 0.0) ** 2
    rest = np.maximum(S - captured.sum(1), 0.0)
    kth = np.maximum(np.abs(theta[:, k - 1]) - resid[:, k - 1], 0.0) if k <= theta.shape[1] \
        else np.zeros(n)
    tol = 1e-9 * np.sqrt(safe)
    resolved = (resid[:, :k].max(1) <= tol) & (rest <= kth**2)
    exact = np.zeros(n, dtype=bool)
    vals = lower.copy()
    tops = theta[:, :k].copy()
    method = np.array(["krylov"] * n, dtype=object)
    method[resolved] = "krylov (resolved)"

    WV: list = []

    def refine(idx):
        if len(idx) and not WV:
            WV.extend((np.asarray(layer.W, dtype=np.float64),
                       np.asarray(layer.V, dtype=np.float64)))
        for i in idx:
            if exact[i]:
                continue
            lam, _ = dense_top(layer, C[i], k, tuple(WV))
            tops[i, : lam.size] = lam
            vals[i] = (lam**2).sum() / safe[i] if S[i] > 0 else 0.0
            exact[i] = True
            method[i] = "dense"

    if top is None or exact_all or top >= n:
        refine(np.flatnonzero(~resolved))
    else:
        # Exact values for the best candidates until the cut is safe: every feature not yet
        # exact must have SCREEN * estimate below the N-th exact value.
        while True:
            order = np.argsort(-np.where(exact, vals, SCREEN * vals), kind="stable")
            head = order[:top]
            todo = head[~exact[head]]
            if todo.size == 0:
                break
            refine(todo)
    rows = []
    for i in np.argsort(-vals, kind="stable"):
        rows.append({
            "feature": int(features[i]),
            "sq_top_k_share": float(vals[i]),
            "sum_sq_eigenvalues": float(S[i]),
            "top_eigenvalues": tops[i].tolist(),
            "method": str(method[i]),
        })
    return rows

"""SAE features and the interaction matrix: ``bilin interact`` and ``bilin rank-features``.

* Input-SAE basis: with decoder columns ``D : (d, f_in)``, ``z^T (D^T Q D) z`` is the
  layer's response when the input is ``D z``; ``(D^T Q D)_ii`` is feature i's self
  interaction and ``2 (D^T Q D)_ij`` the coefficient of ``z_i z_j``. The
  ``(f_in, f_in)`` matrix is streamed in row blocks, never held whole.
* Ranking output features: for every encoder row ``e_a`` of the output SAE,
  ``Q_a = 1/2 (W^T diag(P^T e_a) V + V^T diag(P^T e_a) W)``, and how low-rank it is:
  the share of ``sum |lambda|`` in its top-k eigenvalues, and its effective rank.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from itertools import islice

import numpy as np
from threadpoolctl import threadpool_limits

from bilin_cli.core.accel import available_cores, torch_device
from bilin_cli.model.bilinear import BilinearLayer
from bilin_cli.model.spectra import eigh_sorted


def _top_indices(values: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest ``|values|``, largest first."""
    n = min(n, values.size)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.argpartition(-np.abs(values), n - 1)[:n]
    return idx[np.argsort(-np.abs(values[idx]), kind="stable")]


def top_pairs(Q: np.ndarray, D: np.ndarray, n: int, block: int = 512) -> dict:
    """Top ``n`` self and cross interactions of ``D^T Q D`` by their coefficient.

    Streams over blocks of ``block`` rows: memory ``O(block * f_in)``.
    Returns ``{"self": [...], "cross": [...]}`` with entries
    ``{"i", "j", "value" (= (D^T Q D)_ij), "coefficient" (of z_i z_j)}``.
    """
    f = D.shape[1]
    QD = Q @ D  # (d, f)
    diag = np.einsum("di,di->i", D, QD)  # (D^T Q D)_ii without the full matrix
    self_idx = _top_indices(diag, n)
    best_vals = np.zeros(0)
    best_i = np.zeros(0, dtype=np.int64)
    best_j = np.zeros(0, dtype=np.int64)
    for start in range(0, f, block):
        stop = min(start + block, f)
        M = D[:, start:stop].T @ QD  # (b, f) rows of D^T Q D
        rows = np.arange(start, stop)[:, None]
        M = np.where(np.arange(f)[None, :] > rows, M, 0.0)  # strict upper triangle only
        flat = _top_indices(M.ravel(), n)
        bi, bj = np.unravel_index(flat, M.shape)
        best_vals = np.concatenate([best_vals, M[bi, bj]])
        best_i = np.concatenate([best_i, bi + start])
        best_j = np.concatenate([best_j, bj])
        keep = _top_indices(best_vals, n)
        best_vals, best_i, best_j = best_vals[keep], best_i[keep], best_j[keep]
    return {
        "self": [{"i": int(i), "j": int(i), "value": float(diag[i]),
                  "coefficient": float(diag[i])} for i in self_idx],
        "cross": [{"i": int(i), "j": int(j), "value": float(v), "coefficient": float(2 * v)}
                  for i, j, v in zip(best_i, best_j, best_vals, strict=True)],
    }


def eigen_in_features(Q: np.ndarray, D: np.ndarray, top: int, n_features: int) -> list[dict]:
    """Top eigenpairs of ``Q``, each eigenvector as its largest input-SAE loadings ``D^T v``."""
    lam, vecs = eigh_sorted(Q)
    out = []
    for k in range(min(top, lam.size)):
        load = D.T @ vecs[k]
        idx = _top_indices(load, n_features)
        out.append({
            "rank": k + 1,
            "eigenvalue": float(lam[k]),
            "features": [{"feature": int(i), "loading": float(load[i])} for i in idx],
        })
    return out


def _output_unfolding(layer: BilinearLayer) -> np.ndarray:
    """``B_flat : (o, d*d)``, row c = the symmetrized ``B_c`` (one product per output)."""
    P = np.eye(layer.h, dtype=layer.W.dtype) if layer.P is None else layer.P
    Wt, V = layer.W.T, layer.V
    B = np.empty((P.shape[0], layer.d, layer.d), dtype=layer.W.dtype)
    for c in range(P.shape[0]):
        A = (Wt * P[c]) @ V
        B[c] = 0.5 * (A + A.T)
    return B.reshape(P.shape[0], -1)


def spectra_stats(lam: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Low-rankness of each spectrum in ``lam : (n, d)``, all rows at once.

    ``top_k_share`` = share of ``sum|lambda|`` in the ``k`` largest ``|lambda|``;
    ``effective_rank`` = ``(sum|lambda|)^2 / sum lambda^2``; ``top_eigenvalues : (n, k)``
    signed, by ``|lambda|`` descending, positive first on ties (as ``spectra.order_by_magnitude``).
    """
    lam = lam.astype(np.float64)
    order = np.lexsort((-lam, -np.abs(lam)), axis=-1)[:, :k]
    top = np.take_along_axis(lam, order, axis=-1)
    total = np.abs(lam).sum(axis=-1)
    sq = (lam**2).sum(axis=-1)
    safe_total = np.where(total > 0, total, 1.0)
    return {
        "top_k_share": np.where(total > 0, np.abs(top).sum(axis=-1) / safe_total, 0.0),
        "effective_rank": np.where(sq > 0, total**2 / np.where(sq > 0, sq, 1.0), 0.0),
        "sum_abs_eigenvalues": total,
        "top_eigenvalues": top,
    }


def rank_features(
    layer: BilinearLayer,
    enc: np.ndarray,
    k: int = 2,
    features: np.ndarray | None = None,
    chunk: int | None = None,
    advance: Callable[[int], None] | None = None,
    unfold_limit: int = 512 * 1024**2,
    workers: int | None = None,
    device: str | None = None,
    chunk_budget: int = 1024**3,
    sort_by: str = "top_k_share",
) -> list[dict]:
    """Low-rankness of ``Q(e_a)`` for output-SAE encoder rows ``enc : (f, o)``.

    Per feature: ``top_k_share`` = share of ``sum|lambda|`` in the ``k`` largest
    ``|lambda|``, ``effective_rank`` = ``(sum|lambda|)^2 / sum lambda^2``; most
    low-rank first (``sort_by``: largest ``top_k_share`` or smallest ``effective_rank``).

    ``Q`` for a chunk of features is one matrix product: with the ``(o, d^2)``
    unfolding of B when it fits in ``unfold_limit`` bytes (``Q = E_chunk B_flat``),
    else from the factored form (``W^T diag(P^T e_a) V`` batched, chunks capped so the
    products in flight stay under ``chunk_budget`` bytes). On the CPU the
    chunks run on ``workers`` threads (default: every available core), each with
    single-threaded BLAS/LAPACK, which release the GIL: many small independent
    eigenproblems scale across cores far better than threading inside one 128x128
    LAPACK call. With ``device`` (a torch device such as ``"cuda"``) each chunk is
    one batched ``torch.linalg.eigvalsh`` there instead.
    """
    features = np.arange(enc.shape[0]) if features is None else np.asarray(features)
    E = enc[features]
    size = layer.W.itemsize
    use_unfolding = E.shape[1] * layer.d * layer.d * size <= unfold_limit
    chunk = chunk or (32 if device is None else 256)
    workers = workers or available_cores()
    if not use_unfolding:
        # The factored form holds a (chunk, d, h) product per chunk in flight: cap it so
        # layers with thousands of dimensions stream instead of exhausting memory.
        in_flight = (2 * workers if device is None else 1) * layer.d * layer.h * size
        chunk = max(1, min(chunk, chunk_budget // in_flight))
    if device is None:
        spectra = _cpu_chunk_spectra(layer, E, chunk, use_unfolding, workers)
    else:
        spectra = _torch_chunk_spectra(layer, E, chunk, use_unfolding, device)
    rows = []
    for start, lam in spectra:
        st = spectra_stats(lam, k)
        for i, a in enumerate(features[start : start + len(lam)]):
            rows.append({
                "feature": int(a),
                "top_k_share": float(st["top_k_share"][i]),
                "effective_rank": float(st["effective_rank"][i]),
                "sum_abs_eigenvalues": float(st["sum_abs_eigenvalues"][i]),
                "top_eigenvalues": st["top_eigenvalues"][i].tolist(),
            })
        if advance:
            advance(len(lam))
    if sort_by == "effective_rank":
        rows.sort(key=lambda r: r["effective_rank"])
    else:
        rows.sort(key=lambda r: -r["top_k_share"])
    return rows


def _cpu_chunk_spectra(
    layer: BilinearLayer, E: np.ndarray, chunk: int, use_unfolding: bool, workers: int
) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, eigenvalues of Q for E[start:start+chunk])`` in order, on a thread pool."""
    from concurrent.futures import ThreadPoolExecutor

    d = layer.d
    if use_unfolding:
        B_flat = _output_unfolding(layer)
    else:
        C = E @ layer.P if layer.P is not None else E  # (n, h): P^T e_a
        Wt, V = layer.W.T, layer.V

    def chunk_eigvals(start: int) -> np.ndarray:
        if use_unfolding:
            Q = (E[start : start + chunk] @ B_flat).reshape(-1, d, d)
        else:
            A = (Wt[None, :, :] * C[start : start + chunk, None, :]) @ V
            Q = 0.5 * (A + A.transpose(0, 2, 1))
        return np.linalg.eigvalsh(Q)

    starts = iter(range(0, E.shape[0], chunk))
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        # A sliding window of submitted chunks keeps memory at O(workers * chunk * d^2).
        pending = deque((s, pool.submit(chunk_eigvals, s)) for s in islice(starts, 2 * workers))
        while pending:
            start, fut = pending.popleft()
            following = next(starts, None)
            if following is not None:
                pending.append((following, pool.submit(chunk_eigvals, following)))
            yield start, fut.result()


def _torch_chunk_spectra(
    layer: BilinearLayer, E: np.ndarray, chunk: int, use_unfolding: bool, device: str
) -> Iterator[tuple[int, np.ndarray]]:
    """As :func:`_cpu_chunk_spectra`, each chunk one batched eigvalsh on a torch device."""
    torch, dev = torch_device(device)
    d = layer.d

    def put(a: np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(a)).to(dev)

    Et = put(E)
    if use_unfolding:
        B_flat = put(_output_unfolding(layer))
    else:
        C = Et @ put(layer.P) if layer.P is not None else Et
        Wt, V = put(layer.W).T, put(layer.V)
    for start in range(0, E.shape[0], chunk):
        if use_unfolding:
            Q = (Et[start : start + chunk] @ B_flat).reshape(-1, d, d)
        else:
            A = (Wt[None, :, :] * C[start : start + chunk, None, :]) @ V
            Q = 0.5 * (A + A.transpose(1, 2))
        yield start, torch.linalg.eigvalsh(Q).cpu().numpy()

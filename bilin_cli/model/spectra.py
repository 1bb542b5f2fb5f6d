"""Eigendecompositions of symmetric interaction matrices, ordered and sign-fixed.

Conventions (relied on by scripts):

* eigenpairs are ordered by ``|lambda|`` descending, eigenvalues keep their sign;
  ties in ``|lambda|`` put the positive eigenvalue first;
* eigenvector sign rule: the entry of largest absolute value (in the layer's own
  input basis; the first such entry on ties) is made positive;
* effective rank is the paper's "continuous L0", ``(sum |lambda|)^2 / sum lambda^2``,
  not the entropy-based effective rank of Roy & Vetterli.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
from threadpoolctl import threadpool_limits

from bilin_cli.core.errors import BilinError, option

if TYPE_CHECKING:
    from scipy.sparse.linalg import LinearOperator


def order_by_magnitude(lam: np.ndarray) -> np.ndarray:
    """Indices that sort ``lam`` by ``|lambda|`` descending (positive first on ties)."""
    return np.lexsort((-lam, -np.abs(lam)))


def fix_signs(vecs: np.ndarray) -> np.ndarray:
    """Flip each row of ``vecs : (k, d)`` so its largest-magnitude entry is positive."""
    if vecs.size == 0:
        return vecs
    pivot = np.argmax(np.abs(vecs), axis=1)
    signs = np.sign(vecs[np.arange(vecs.shape[0]), pivot])
    signs[signs == 0] = 1.0
    return vecs * signs[:, None]


def eigh_sorted(Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All eigenpairs of symmetric ``Q : (d, d)``: ``lam : (d,)``, ``vecs : (d, d)`` as rows.

    ``Q`` must already be symmetric: LAPACK reads one triangle only.
    """
    # Threaded OpenBLAS syevd busy-waits: with the cores in use elsewhere it ran 100x
    # slower (3.4 s instead of 0.03 s at d = 512), while one thread loses little.
    with threadpool_limits(1, user_api="blas"):
        lam, vecs = _eigh(Q)
    order = order_by_magnitude(lam)
    return lam[order], fix_signs(vecs[:, order].T)


def _eigh(Q: np.ndarray, eigvals_only: bool = False):
    """LAPACK's syevd through numpy, which spares the fast path scipy's ~0.3 s import."""
    return np.linalg.eigvalsh(Q) if eigvals_only else np.linalg.eigh(Q)


def eigenvalues(Q: np.ndarray) -> np.ndarray:
    """All eigenvalues of symmetric ``Q``, ordered by ``|lambda|`` descending."""
    with threadpool_limits(1, user_api="blas"):
        lam = _eigh(Q, eigvals_only=True)
    return lam[order_by_magnitude(lam)]


def top_eigenpairs(op: LinearOperator, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` eigenpairs of largest ``|lambda|`` of a symmetric operator (ARPACK).

    The start vector is seeded so repeated runs give the same answer.
    """
    from scipy.sparse.linalg import eigsh

    d = op.shape[0]
    v0 = np.random.default_rng(seed).standard_normal(d).astype(op.dtype)
    lam, vecs = eigsh(op, k=k, which="LM", v0=v0)
    order = order_by_magnitude(lam)
    return lam[order], fix_signs(vecs[:, order].T)


def _scaled_abs(lam: np.ndarray) -> np.ndarray:
    """``|lambda| / max |lambda|`` (float64): spectrum statistics that are ratios are the same
    for it, and its squares and sums cannot overflow."""
    a = np.abs(np.asarray(lam, dtype=np.float64))
    top = float(a.max()) if a.size else 0.0
    with np.errstate(invalid="ignore"):  # inf / inf: NaN, which the callers' checks refuse
        return a / top if top > 0 else a


def effective_rank(lam: np.ndarray) -> float:
    """``(sum |lambda|)^2 / sum lambda^2``; 0 for an all-zero spectrum.

    A spectrum whose squares overflow float64 (``|lambda| > 1e154``) is rescaled by its
    largest ``|lambda|`` first (the ratio does not change); ordinary spectra take the plain
    formula, bit for bit.
    """
    lam = np.asarray(lam, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        sq = float(np.sum(lam**2))
        if not sq > 0:
            return 0.0
        eff = float(np.sum(np.abs(lam)) ** 2 / sq)
    if math.isfinite(eff):
        return eff
    a = _scaled_abs(lam)
    sq = float(np.sum(a**2))
    return float(np.sum(a) ** 2 / sq) if sq > 0 else 0.0


def share_of_top(lam: np.ndarray, k: int) -> float:
    """Share of ``sum |lambda|`` held by the ``k`` largest ``|lambda|``."""
    a = np.sort(np.abs(np.asarray(lam, dtype=np.float64)))[::-1]
    with np.errstate(over="ignore"):
        total = float(a.sum())
    if not math.isfinite(total):  # the sum overflows float64: the share is scale-free
        a = _scaled_abs(a)
        total = float(a.sum())
    return float(a[:k].sum() / total) if total > 0 else 0.0


def rank_for_share(lam: np.ndarray, share: float) -> int:
    """Smallest ``k`` whose top-``k`` ``|lambda|`` hold at least ``share`` of the sum."""
    a = np.sort(np.abs(np.asarray(lam, dtype=np.float64)))[::-1]
    with np.errstate(over="ignore"):
        total = a.sum()
    if not math.isfinite(total):
        a = _scaled_abs(a)
        total = a.sum()
    if total == 0:
        return 0
    cum = np.cumsum(a) / total
    return int(min(np.searchsorted(cum, share - 1e-12) + 1, a.size))


def summarize(lam: np.ndarray, n_extreme: int = 3) -> dict:
    """Top positive / negative eigenvalues, effective rank, and K for 50/90/99% of sum|lambda|."""
    lam = np.asarray(lam, dtype=np.float64)
    pos = np.sort(lam[lam > 0])[::-1][:n_extreme]
    neg = np.sort(lam[lam < 0])[:n_extreme]
    with np.errstate(over="ignore"):  # inf past float64's range: callers check (all_finite)
        sum_abs = float(np.abs(lam).sum())
    return {
        "n_eigenvalues": int(lam.size),
        "top_positive": pos.tolist(),
        "top_negative": neg.tolist(),
        "sum_abs_eigenvalues": sum_abs,
        "effective_rank": effective_rank(lam),
        "k50": rank_for_share(lam, 0.5),
        "k90": rank_for_share(lam, 0.9),
        "k99": rank_for_share(lam, 0.99),
    }


# ------------------------------------------------------------------ overflow: float32, float64
#
# Finite weights near the float32 limit (3.4e38), or a float64 direction of 1e300, make the
# products behind Q, B's singular values or a truncated model overflow: inf, NaN, or a
# LinAlgError from LAPACK. Every place that computes them checks its (small) results with
# :func:`all_finite`, recomputes in float64 where the inputs allow it (saying so once with
# :func:`float64_warning`) and otherwise raises :func:`overflow_error`. Ordinary results take
# the same path as before, bit for bit: the checks only read them.

def all_finite(*arrays) -> bool:
    """True when every array (or number) given is free of inf and NaN; None is skipped."""
    for a in arrays:
        if a is None:
            continue
        if isinstance(a, (float, int)):
            if not math.isfinite(a):
                return False
        elif not np.isfinite(a).all():
            return False
    return True


def largest_magnitude(arrays: Iterable[np.ndarray | None]) -> float:
    """The largest finite ``|entry|`` of ``arrays`` (float64; for messages, off the fast path)."""
    top = 0.0
    for a in arrays:
        if a is None or np.size(a) == 0:
            continue
        a = np.abs(np.asarray(a, dtype=np.float64))
        a = a[np.isfinite(a)]
        if a.size:
            top = max(top, float(a.max()))
    return top


def layer_magnitude(layer) -> float:
    """The largest ``|weight|`` of a :class:`~bilin_cli.model.bilinear.BilinearLayer`."""
    return largest_magnitude((layer.W, layer.V, layer.P, layer.b_w, layer.b_v, layer.b_p))


def float64_warning(what: str) -> str:
    """The one stderr line that says a float32 computation was redone in float64."""
    return f"{what} overflowed float32; recomputed in float64"


def overflow_error(what: str, magnitude: float | None = None, of: str = "weights") -> BilinError:
    """``what`` overflows even in float64: the one-line error, with the size of the inputs."""
    size = f" ({of} up to {magnitude:.2g})" if magnitude else ""
    return BilinError(f"{what} overflows even in float64{size}; rescale the checkpoint")


def add_warning(warnings: list[str], message: str) -> None:
    """Append ``message`` to a model's ``warnings`` once (the CLI prints each on stderr)."""
    if message not in warnings:
        warnings.append(message)


def is_float64(dtype) -> bool:
    return np.dtype(dtype) == np.float64


# ----------------------------------------------------------------- how many to keep


def check_top(top: int | None, what: str | None = None) -> None:
    """``top`` is None (every eigenpair) or a positive integer; else one error line."""
    if top is not None and (isinstance(top, bool) or not isinstance(top, (int, np.integer))
                            or top < 1):
        raise BilinError(f"{what or option('--top', 'top')} must be a positive integer, got {top}")


def kept(top: int | None, n: int) -> int:
    """How many of ``n`` eigenpairs ``top`` keeps: all of them for None or a larger ``top``."""
    return n if top is None else min(top, n)


def top_note(top: int | None, n: int, of: str = "", verb: str = "kept") -> str | None:
    """The note for a ``top`` larger than the ``n`` eigenpairs there are (never silent):
    the count is clamped to ``n`` and said so. ``of``: whose eigenpairs (" of layer 2")."""
    if top is None or top <= n:
        return None
    return (f"--top {top} asked for more eigenpairs than the {n}{of or ' there are'}; "
            f"all {n} are {verb}")

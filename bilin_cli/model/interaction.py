"""Interaction matrices Q(u) of a bilinear layer, dense or factored.

For an output direction ``u : (o,)`` the layer's response ``u . y(x)`` is the
quadratic form ``x^T Q x`` with

    c = P^T u                                   (h,)
    Q = 1/2 (W^T diag(c) V + V^T diag(c) W)     (d, d), symmetric

built with one matrix product; the ``(o, d, d)`` tensor B is never formed.
With biases the input is augmented with a constant 1 (``W' = [W | b_w]``), and
``Q'`` splits into the interaction block ``Q'[:d, :d]``, the linear part
``2 Q'[:d, d]`` and the constant ``Q'[d, d]`` (plus ``u . b_p``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bilin_cli.model.bilinear import BilinearLayer

if TYPE_CHECKING:
    from scipy.sparse.linalg import LinearOperator


def hidden_coefficients(layer: BilinearLayer, u: np.ndarray) -> np.ndarray:
    """``c = P^T u : (h,)``: how much each hidden unit's product counts towards ``u``."""
    return u if layer.P is None else layer.P.T @ u


def _augmented(layer: BilinearLayer) -> tuple[np.ndarray, np.ndarray]:
    """``W' = [W | b_w]``, ``V' = [V | b_v] : (h, d + 1)`` (the input gains a constant 1)."""
    if not layer.has_bias:
        return layer.W, layer.V
    return (
        np.concatenate([layer.W, layer.b_w[:, None]], axis=1),
        np.concatenate([layer.V, layer.b_v[:, None]], axis=1),
    )


def symmetric_form(W: np.ndarray, V: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``Q = 1/2 (W^T diag(c) V + (W^T diag(c) V)^T)`` for ``W, V : (h, d)``, ``c : (h,)``."""
    A = W.T @ (c[:, None] * V)
    return 0.5 * (A + A.T)


@dataclass
class Interaction:
    """The exact quadratic description of ``u . y(x)`` for one layer and direction.

    ``u . y(x) = x^T Q x + linear . x + constant`` (``linear`` is None without biases).
    """

    Q: np.ndarray  # (d, d) symmetric interaction part
    linear: np.ndarray | None  # (d,)
    constant: float

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """``x : (..., d) -> (...)``; equals ``u . layer.forward(x)``."""
        out = np.einsum("...i,ij,...j->...", x, self.Q, x) + self.constant
        return out if self.linear is None else out + x @ self.linear


def interaction(layer: BilinearLayer, u: np.ndarray) -> Interaction:
    """Dense ``Q(u)`` for the layer, with the bias parts split out (see module docstring)."""
    c = hidden_coefficients(layer, u)
    const_p = float(u @ layer.b_p) if layer.b_p is not None else 0.0
    if not layer.has_bias:
        return Interaction(symmetric_form(layer.W, layer.V, c), None, const_p)
    Wa, Va = _augmented(layer)
    Qa = symmetric_form(Wa, Va, c)
    d = layer.d
    return Interaction(Qa[:d, :d].copy(), 2.0 * Qa[:d, d], float(Qa[d, d]) + const_p)


def interaction_operator(layer: BilinearLayer, u: np.ndarray) -> LinearOperator:
    """Matrix-free ``Q(u)`` (interaction part): ``Q v = 1/2 (W^T(c * V v) + V^T(c * W v))``.

    Costs ``O(h d)`` per product, so top eigenpairs of a huge layer never need the
    ``(d, d)`` matrix.
    """
    from scipy.sparse.linalg import LinearOperator  # ~0.1 s import, only on this path

    c = hidden_coefficients(layer, u)
    W, V = layer.W, layer.V

    def matvec(v: np.ndarray) -> np.ndarray:
        return 0.5 * (W.T @ (c * (V @ v)) + V.T @ (c * (W @ v)))

    return LinearOperator((layer.d, layer.d), matvec=matvec, rmatvec=matvec, dtype=W.dtype)

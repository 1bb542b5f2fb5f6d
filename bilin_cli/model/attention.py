"""Bilinear attention, the in-memory model of one block's attention and its forward pass.

A fully bilinear transformer (2026 research code) has, per head ``h``, two query and two
key projections and no softmax::

    q1_i = Wq1[h] x_i,  k1_j = Wk1[h] x_j  (d_head,)     likewise q2, k2
    score(i, j) = scale * (q1_i . k1_j) (q2_i . k2_j)     scale = 1 / d_head^2 by default
    out_i = sum_{j <= i} score(i, j) Wo[h] Wv[h] x_j      (causal mask; RoPE rotates q, k)

so the weight-based objects of a head are the two QK bilinear forms
``A_1 = Wq1[h]^T Wk1[h]``, ``A_2 = Wq2[h]^T Wk2[h]`` (``(d, d)``, rank <= d_head) with
``q1_i . k1_j = x_i^T A_1 x_j`` at relative position 0, and the OV map
``Wo[h] Wv[h] : (d, d)``. For a fixed query ``x_q`` the score is a quadratic form in the key,
``score = x_k^T Q x_k`` with ``Q = scale * 1/2 (a_1 a_2^T + a_2 a_1^T)``, ``a_n = A_n^T x_q``.

Arrays are stacked per head: ``Wq1 ... Wv : (H, d_head, d)``, ``Wo : (H, d, d_head)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class AttentionKeys:
    """Where one block's bilinear attention lives in a checkpoint (``(H * d_head, d)``
    projections and the ``(d, H * d_head)`` output) and the linear pre-scale folded into it."""

    q1: str
    q2: str
    k1: str
    k2: str
    v: str
    o: str
    scale: str | None = None  # y = s * x in front of the attention (0-d or (d,)), folded

    def names(self) -> list[str]:
        return [self.q1, self.q2, self.k1, self.k2, self.v, self.o]


@dataclass
class AttentionSettings:
    """What a checkpoint's config says about its attention (``stated`` lists what it said)."""

    n_heads: int
    d_head: int
    scale: float
    scale_text: str
    rope: bool | None = None
    rope_base: float = 10000.0
    causal: bool | None = None
    stated: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"n_heads": self.n_heads, "d_head": self.d_head, "scale": self.scale,
                "scale_text": self.scale_text, "rope": self.rope, "rope_base": self.rope_base,
                "causal": self.causal, "stated_in_config": self.stated}


@dataclass
class AttentionLayer:
    """One block's bilinear attention (see the module docstring), float32 or float64."""

    Wq1: np.ndarray  # (H, d_head, d)
    Wq2: np.ndarray
    Wk1: np.ndarray
    Wk2: np.ndarray
    Wv: np.ndarray  # (H, d_v, d)
    Wo: np.ndarray  # (H, d, d_v)
    settings: AttentionSettings

    @property
    def n_heads(self) -> int:
        return self.Wq1.shape[0]

    @property
    def d(self) -> int:
        return self.Wq1.shape[2]

    def qk_forms(self, head: int) -> tuple[np.ndarray, np.ndarray]:
        """``A_1 = Wq1[h]^T Wk1[h]``, ``A_2 = Wq2[h]^T Wk2[h] : (d, d)`` (query rows, key
        columns): ``q_n . k_n = x_q^T A_n x_k`` before RoPE."""
        return self.Wq1[head].T @ self.Wk1[head], self.Wq2[head].T @ self.Wk2[head]

    def ov(self, head: int) -> np.ndarray:
        """``Wo[h] Wv[h] : (d, d)``: what head ``h`` writes for a key ``x_k`` it attends to
        with score 1."""
        return self.Wo[head] @ self.Wv[head]

    def query_form(self, head: int, x_q: np.ndarray) -> np.ndarray:
        """Symmetric ``Q : (d, d)`` with ``score(x_q, x_k) = x_k^T Q x_k`` (relative
        position 0)."""
        a1 = self.Wk1[head].T @ (self.Wq1[head] @ x_q)  # A_1^T x_q
        a2 = self.Wk2[head].T @ (self.Wq2[head] @ x_q)
        outer = np.outer(a1, a2)
        return self.settings.scale * 0.5 * (outer + outer.T)

    def patterns(self, X: np.ndarray) -> np.ndarray:
        """``(H, T, T)`` scores of a sequence ``X : (T, d)`` (RoPE and mask applied)."""
        s = self.settings
        q1, q2 = np.einsum("hed,td->hte", self.Wq1, X), np.einsum("hed,td->hte", self.Wq2, X)
        k1, k2 = np.einsum("hed,td->hte", self.Wk1, X), np.einsum("hed,td->hte", self.Wk2, X)
        if s.rope:
            q1, q2, k1, k2 = (rope(t, s.rope_base) for t in (q1, q2, k1, k2))
        scores = s.scale * np.einsum("hie,hje->hij", q1, k1) * np.einsum("hie,hje->hij", q2, k2)
        if s.causal is not False:
            scores = np.tril(scores)
        return scores

    def forward(self, X: np.ndarray) -> np.ndarray:
        """The attention's output ``(T, d)`` for ``X : (T, d)`` (the input after any
        pre-scale, which the loader folds into the projections)."""
        values = np.einsum("hed,td->hte", self.Wv, X)
        heads = np.einsum("hij,hje->hie", self.patterns(X), values)
        return np.einsum("hde,hte->td", self.Wo, heads)


def rope(t: np.ndarray, base: float) -> np.ndarray:
    """Rotary embedding, rotate-half (GPT-NeoX) convention, over axis -2 = position:
    ``t : (..., T, e)`` with ``e`` even."""
    T, e = t.shape[-2], t.shape[-1]
    half = e // 2
    inv = base ** (-np.arange(half, dtype=np.float64) * 2.0 / e)
    ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]
    cos, sin = np.cos(ang).astype(t.dtype), np.sin(ang).astype(t.dtype)
    a, b = t[..., :half], t[..., half:]
    return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)


def split_heads(weight: np.ndarray, n_heads: int, out: bool = False) -> np.ndarray:
    """``(H * e, d) -> (H, e, d)``, or for an output projection ``(d, H * e) -> (H, d, e)``."""
    if out:
        d, he = weight.shape
        return weight.reshape(d, n_heads, he // n_heads).transpose(1, 0, 2)
    he, d = weight.shape
    return weight.reshape(n_heads, he // n_heads, d)

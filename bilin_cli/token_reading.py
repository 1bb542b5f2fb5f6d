"""Reading input-space eigenvectors of a language model as tokens (the direct path).

A token ``t`` alone at a transformer MLP's input (no attention, no earlier layers)
is ``x_t = g * e_t / rms(e_t)``: ``e_t`` row ``t`` of the embedding ``(vocab, d)``,
``g`` the gain of the RMS norm in front of the MLP (1 where the checkpoint stores
none; the norm's epsilon is left out). Through eigenpair ``i`` it adds
``lambda_i (v_i . x_t)^2`` to ``u . y``; in the cross terms, tokens with the same
sign of ``s_t = v_i . x_t`` reinforce each other and opposite signs cancel. So each
eigenvector reads as its tokens of largest positive and most negative ``s_t``.
"""

from __future__ import annotations

import numpy as np

from bilin_cli.errors import BilinError
from bilin_cli.model import BilinearModel
from bilin_cli.vocabulary import token_texts

NOTE = ("tokens: direct path from the embedding (x_t = g * e_t / rms(e_t); attention and "
        "earlier layers left out): v . x_t > 0 left of the bar, < 0 right, largest first")


def direct_path_inputs(model: BilinearModel, layer: int, dtype: type = np.float64) -> np.ndarray:
    """``X : (vocab, d)``, row ``t`` = the MLP input ``x_t`` of token ``t`` alone."""
    if model.kind != "lm" or model.embed_key is None:
        raise BilinError("reading eigenvectors as tokens needs a language model with an "
                         "embedding")
    E = model.embed(dtype)
    rms = np.sqrt(np.mean(E**2, axis=1, keepdims=True))
    X = E / np.where(rms > 0, rms, 1.0)
    g = model.mlp_norm_gain(layer, dtype)
    return X if g is None else X * g


def read_as_tokens(model: BilinearModel, layer: int, vecs: np.ndarray, n: int) -> list[dict]:
    """For each row ``v`` of ``vecs : (k, d)``: the ``n`` tokens of largest ``v . x_t``
    and the ``n`` most negative, as ``{"positive": [...], "negative": [...]}`` with
    entries ``{"token": id, "text": str | None, "value": v . x_t}``."""
    X = direct_path_inputs(model, layer)
    S = X @ np.asarray(vecs, dtype=np.float64).T  # (vocab, k): s_t for every eigenvector
    n = min(n, X.shape[0])
    sides = []
    for s in S.T:
        order = np.argsort(-s, kind="stable")
        sides.append((s, [int(t) for t in order[:n] if s[t] > 0],
                      [int(t) for t in order[::-1][:n] if s[t] < 0]))
    texts = token_texts(model, sorted({t for _, pos, neg in sides for t in pos + neg}))

    def entries(s: np.ndarray, ids: list[int]) -> list[dict]:
        return [{"token": t, "text": texts[t], "value": float(s[t])} for t in ids]

    return [{"positive": entries(s, pos), "negative": entries(s, neg)} for s, pos, neg in sides]

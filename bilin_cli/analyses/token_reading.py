"""Reading input-space eigenvectors of a language model as tokens (the direct path).

A token ``t`` alone at a transformer MLP's input (no attention, no earlier layers)
is ``x_t = g * e_t / rms(e_t)``: ``e_t`` row ``t`` of the embedding ``(vocab, d)``,
``g`` the gain of the RMS norm in front of the MLP (1 where the checkpoint stores
none; the norm's epsilon is left out). A map may name another norm: a LayerNorm,
``g * (e_t - mean) / std + b``, or none, ``x_t = e_t``. Through eigenpair ``i`` it adds
``lambda_i (v_i . x_t)^2`` to ``u . y``; in the cross terms, tokens with the same
sign of ``s_t = v_i . x_t`` reinforce each other and opposite signs cancel. So each
eigenvector reads as its tokens of largest positive and most negative ``s_t``.
"""

from __future__ import annotations

import numpy as np

from bilin_cli.core.errors import BilinError
from bilin_cli.model.bilinear import BilinearModel
from bilin_cli.storage.vocabulary import token_texts

NOTE = ("tokens: direct path from the embedding ({x_t}; attention and earlier layers left "
        "out): v . x_t > 0 left of the bar, < 0 right, largest first")
_INPUTS = {"rms": "x_t = g * e_t / rms(e_t)", "layer": "x_t = g * (e_t - mean) / std + b",
           "none": "x_t = e_t"}


def token_input(model: BilinearModel) -> str:
    """How a token alone reaches the MLP's input in this model (``x_t = ...``)."""
    x_t = _INPUTS.get(model.norm_kind, _INPUTS["rms"])
    if model.meta.get("folded_scales", {}).get("mlp"):
        x_t += ", the MLP's linear pre-scale folded into Q"
    return x_t


def note(model: BilinearModel) -> str:
    """:data:`NOTE` for this model's token input."""
    return NOTE.format(x_t=token_input(model))


def token_scores(model: BilinearModel, layer: int, vecs: np.ndarray,
                 block: int = 4096) -> np.ndarray:
    """``S : (vocab, k)`` with ``S[t, i] = v_i . x_t``, ``x_t`` the MLP input of token ``t``
    alone; ``vecs : (k, d)``. The embedding is read ``block`` rows at a time, so a 128k-token
    vocabulary is never widened to float64 (or bf16 to float32) all at once."""
    if model.kind != "lm" or model.embed_key is None:
        raise BilinError("reading eigenvectors as tokens needs a language model with an "
                         "embedding")
    g = model.mlp_norm_gain(layer, np.float64)
    b = model.mlp_norm_bias(layer, np.float64)
    Vt = np.asarray(vecs, dtype=np.float64).T  # (d, k)
    gVt = Vt if g is None else g[:, None] * Vt  # (g * x) . v = x . (g * v)
    shift = 0.0 if b is None else b @ Vt  # (x + b) . v adds b . v to every token
    n_vocab = model.embed_shape[0]
    S = np.empty((n_vocab, Vt.shape[1]))
    for start in range(0, n_vocab, block):
        X = model.embed(np.float64, slice(start, start + block))
        S[start : start + block] = normalize(X, model.norm_kind) @ gVt + shift
    return S


def normalize(X: np.ndarray, kind: str) -> np.ndarray:
    """Rows of ``X`` through the norm in front of the MLP, before its gain: ``x / rms(x)``
    (``rms``), ``(x - mean) / std`` (``layer``) or ``x`` (``none``); epsilon left out."""
    if kind == "none":
        return X
    if kind == "layer":
        X = X - X.mean(axis=1, keepdims=True)
    scale = np.sqrt(np.mean(X**2, axis=1, keepdims=True))
    return X / np.where(scale > 0, scale, 1.0)


def read_as_tokens(model: BilinearModel, layer: int, vecs: np.ndarray, n: int) -> list[dict]:
    """For each row ``v`` of ``vecs : (k, d)``: the ``n`` tokens of largest ``v . x_t``
    and the ``n`` most negative, as ``{"positive": [...], "negative": [...]}`` with
    entries ``{"token": id, "text": str | None, "value": v . x_t}``."""
    S = token_scores(model, layer, vecs)  # (vocab, k): s_t for every eigenvector
    n = min(n, S.shape[0])
    sides = []
    for s in S.T:
        order = np.argsort(-s, kind="stable")
        sides.append((s, [int(t) for t in order[:n] if s[t] > 0],
                      [int(t) for t in order[::-1][:n] if s[t] < 0]))
    texts = token_texts(model, sorted({t for _, pos, neg in sides for t in pos + neg}))

    def entries(s: np.ndarray, ids: list[int]) -> list[dict]:
        return [{"token": t, "text": texts[t], "value": float(s[t])} for t in ids]

    return [{"positive": entries(s, pos), "negative": entries(s, neg)} for s, pos, neg in sides]

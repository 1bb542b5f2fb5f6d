"""Weight-based readings of bilinear attention heads: the library behind ``bilin attention``
and ``bilin eig --head L.H --query-token T``.

Per head (see :mod:`bilin_cli.model.attention`), all exact functions of the weights:

* the two QK bilinear forms ``A_n = Wq_n^T Wk_n : (d, d)`` and the OV map
  ``Wo Wv : (d, d)``, each with its singular values and vectors (from the thin factors:
  ``A = Qa (Ra Rb^T) Qb^T`` with QR factors of ``Wq^T`` and ``Wk^T``, never a ``(d, d)`` SVD);
* direct-path readings in token space, a token ``t`` alone at the attention's input being
  ``x_t = e_t`` (``e_t / rms(e_t)`` behind an RMS norm, whose gain the loader folds into the
  projections): the score of query token ``q`` on key token ``k``,
  ``scale (x_q^T A_1 x_k)(x_q^T A_2 x_k)``, largest and most negative pairs; and what the
  head writes to the logits when it attends to token ``s`` with score 1,
  ``U Wo Wv x_s`` (the unembedding with any final linear scale folded in);
* for one query token, the score as a quadratic form in the key,
  ``score = x_k^T Q x_k`` with ``Q = scale 1/2 (a_1 a_2^T + a_2 a_1^T)``, ``a_n = A_n^T x_q``:
  rank 2, eigendecomposed like any ``Q(u)``.

Left out, and said so in every output: positional terms (RoPE rotates q and k by the
distance between positions, so these readings are at relative distance 0), the causal mask,
earlier layers and every path but the direct one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bilin_cli.core.errors import BilinError, option
from bilin_cli.model.attention import AttentionLayer
from bilin_cli.model.bilinear import BilinearModel
from bilin_cli.storage.vocabulary import token_texts

LEFT_OUT = ("direct path: a token alone at the attention's input (x_t = e_t{rms}); "
            "positional terms (RoPE: these readings are at relative distance 0), the causal "
            "mask, earlier layers and other paths are left out")
_BLOCK = 512  # query rows scored at once: (512, vocab) float64 blocks


def left_out(model: BilinearModel) -> str:
    return LEFT_OUT.format(rms=" / rms(e_t)" if model.attention_norm == "rms" else "")


def check_head(model: BilinearModel, layer: int, head: int) -> tuple[int, int]:
    """``(layer, head)`` with negative indices resolved, or a one-line error."""
    n = model.n_attention
    if n == 0:
        raise BilinError(f"this {model.layout} has no bilinear attention (two query and two "
                         "key projections per block)")
    if not -n <= layer < n:
        raise BilinError(f"layer {layer} is out of range: this model has {n} attention "
                         f"block{'s' if n != 1 else ''} (0..{n - 1})")
    H = model.attention_settings.n_heads
    if not -H <= head < H:
        raise BilinError(f"head {head} is out of range: layer {layer % n} has {H} "
                         f"head{'s' if H != 1 else ''} (0..{H - 1})")
    return layer % n, head % H


def token_inputs(model: BilinearModel, dtype: type, rows: slice | None = None) -> np.ndarray:
    """``X : (vocab, d)``: each token alone at the attention's input (the direct path)."""
    from bilin_cli.analyses.token_reading import normalize

    if model.embed_key is None:
        raise BilinError("token readings of attention need the model's token embedding")
    X = model.embed(dtype, rows)
    return normalize(X, "rms") if model.attention_norm == "rms" else X


def low_rank_svd(A: np.ndarray, B: np.ndarray, k: int | None = None):
    """SVD of ``A^T B`` for thin ``A : (r, d)``, ``B : (r, d)`` without forming ``(d, d)``:
    ``(sigma (k,), left (k, d), right (k, d))``, rows unit, ``A^T B = sum s l r^T``; each
    left vector's largest-magnitude entry is positive (the right one flips with it)."""
    Qa, Ra = np.linalg.qr(A.T.astype(np.float64))
    Qb, Rb = np.linalg.qr(B.T.astype(np.float64))
    U, s, Vt = np.linalg.svd(Ra @ Rb.T)
    left, right = (Qa @ U).T, (Qb @ Vt.T).T
    k = s.size if k is None else min(k, s.size)
    left, right, s = left[:k], right[:k], s[:k]
    pivot = np.argmax(np.abs(left), axis=1)
    signs = np.sign(left[np.arange(k), pivot])
    signs[signs == 0] = 1.0
    return s, left * signs[:, None], right * signs[:, None]


def _entries(ids, values, texts) -> list[dict]:
    return [{"token": int(t), "text": texts.get(int(t)), "value": float(v)}
            for t, v in zip(ids, values, strict=True)]


def _read(scores: np.ndarray, n: int, texts_of) -> dict:
    """The ``n`` tokens of largest and most negative score."""
    order = np.argsort(-scores, kind="stable")
    pos = [int(t) for t in order[:n] if scores[t] > 0]
    neg = [int(t) for t in order[::-1][:n] if scores[t] < 0]
    texts = texts_of(pos + neg)
    return {"positive": _entries(pos, scores[pos], texts),
            "negative": _entries(neg, scores[neg], texts)}


class _TopN:
    """The ``n`` largest values seen over blocks of a matrix, with their (row, column)."""

    def __init__(self, n: int):
        self.n, self.vals, self.rows, self.cols = n, np.empty(0), np.empty(0, int), np.empty(0, int)

    def add(self, block: np.ndarray, row0: int) -> None:
        flat = block.ravel()
        m = min(self.n, flat.size)
        idx = np.argpartition(-flat, m - 1)[:m]
        r, c = np.divmod(idx, block.shape[1])
        self.vals = np.concatenate([self.vals, flat[idx]])
        self.rows = np.concatenate([self.rows, r + row0])
        self.cols = np.concatenate([self.cols, c])
        keep = np.lexsort((self.cols, self.rows, -self.vals))[: self.n]
        self.vals, self.rows, self.cols = self.vals[keep], self.rows[keep], self.cols[keep]


@dataclass
class HeadReading:
    """Everything ``bilin attention`` reports for one head (plain data, see :meth:`as_dict`)."""

    layer: int
    head: int
    qk: list[dict]
    ov: dict
    top_pairs: list[dict] = field(default_factory=list)
    bottom_pairs: list[dict] = field(default_factory=list)
    top_writes: list[dict] = field(default_factory=list)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"layer": self.layer, "head": self.head, "qk": self.qk, "ov": self.ov,
                "top_pairs": self.top_pairs, "bottom_pairs": self.bottom_pairs,
                "top_writes": self.top_writes}


def _form(s, left, right, k: int, name: str, sides: tuple[str, str], readings) -> dict:
    """One form's document: all its singular values, its top ``k`` components."""
    doc = {"form": name, "singular_values": s.tolist(),
           "frobenius_norm": float(np.sqrt(np.sum(s**2))), "rank": int(np.sum(
               s > s[0] * max(left.shape) * np.finfo(np.float64).eps)) if s.size else 0,
           "components": []}
    for r in range(min(k, s.size)):
        comp = {"rank": r + 1, "sigma": float(s[r]),
                sides[0] + "_vector": left[r].tolist(), sides[1] + "_vector": right[r].tolist()}
        if readings is not None:
            comp[sides[0] + "_tokens"] = readings[0](left[r])
            comp[sides[1] + "_tokens"] = readings[1](right[r])
        doc["components"].append(comp)
    return doc


def read_head(model: BilinearModel, layer: int, head: int, top: int = 5, pairs: int = 10,
              tokens: int = 5, dtype: type = np.float32, advance=None) -> HeadReading:
    """The QK forms, the OV map and their direct-path token readings of one head.

    ``top`` singular components of each form are kept (all of them when fewer), ``pairs``
    query/key token pairs and source/output token writes, ``tokens`` tokens per side of
    every singular vector (0: no token readings, e.g. without an embedding)."""
    layer, head = check_head(model, layer, head)
    att: AttentionLayer = model.attention(layer, np.float64)
    s = att.settings
    has_tokens = model.embed_key is not None and tokens > 0
    X = token_inputs(model, np.float64) if model.embed_key is not None else None
    U = model.head(np.float64) if model.head_key is not None else None

    def texts_of(ids):
        return token_texts(model, sorted(set(ids)))

    def through(M):
        return lambda v: _read(M @ v, tokens, texts_of)

    readings = (through(X), through(X)) if has_tokens else None
    qk = []
    for n, (Wq, Wk) in enumerate(((att.Wq1, att.Wk1), (att.Wq2, att.Wk2)), start=1):
        sv, left, right = low_rank_svd(Wq[head], Wk[head])
        qk.append(_form(sv, left, right, top, f"A_{n} = Wq{n}^T Wk{n}", ("query", "key"),
                        readings))
    # OV = Wo Wv = (Wo^T)^T Wv: output side is Wo's column space.
    sv, left, right = low_rank_svd(att.Wo[head].T, att.Wv[head])
    ov_readings = None
    if has_tokens:
        ov_readings = ((through(U) if U is not None else (lambda v: None)), through(X))
    ov = _form(sv, left, right, top, "OV = Wo Wv", ("output", "input"), ov_readings)
    reading = HeadReading(layer, head, qk, ov)
    if X is not None and pairs > 0:
        texts = {}
        best, worst = _TopN(pairs), _TopN(pairs)
        Q1, K1 = X @ att.Wq1[head].T, X @ att.Wk1[head].T
        Q2, K2 = X @ att.Wq2[head].T, X @ att.Wk2[head].T
        for start in range(0, X.shape[0], _BLOCK):
            S = s.scale * (Q1[start:start + _BLOCK] @ K1.T) * (Q2[start:start + _BLOCK] @ K2.T)
            best.add(S, start)
            worst.add(-S, start)
            if advance:
                advance()
        ids = [*best.rows, *best.cols, *worst.rows, *worst.cols]
        if U is not None:
            writes = _TopN(pairs)
            offers = X @ att.Wv[head].T  # (vocab, d_v): what each source token offers
            reads = U @ att.Wo[head]  # (vocab_out, d_v)
            for start in range(0, X.shape[0], _BLOCK):
                writes.add(offers[start:start + _BLOCK] @ reads.T, start)
            ids += [*writes.rows, *writes.cols]
        texts = texts_of(ids)

        def pair_rows(top: _TopN, sign: float) -> list[dict]:
            out = []
            for v, q, k in zip(top.vals, top.rows, top.cols, strict=True):
                out.append({"query": int(q), "query_text": texts.get(int(q)), "key": int(k),
                            "key_text": texts.get(int(k)), "score": float(sign * v),
                            "qk1": float(Q1[q] @ K1[k]), "qk2": float(Q2[q] @ K2[k])})
            return out

        reading.top_pairs = pair_rows(best, 1.0)
        reading.bottom_pairs = pair_rows(worst, -1.0)
        if U is not None:
            reading.top_writes = [
                {"source": int(a), "source_text": texts.get(int(a)), "token": int(t),
                 "text": texts.get(int(t)), "logit": float(v)}
                for v, a, t in zip(writes.vals, writes.rows, writes.cols, strict=True)]
    return reading


@dataclass
class AttentionReport:
    """``bilin attention``: the heads read, and what the readings leave out."""

    layout: str
    settings: dict
    heads: list[HeadReading]
    notes: list[str]
    dtype: str

    def as_dict(self) -> dict:
        return {"layout": self.layout, "attention": self.settings, "dtype": self.dtype,
                "heads": [h.as_dict() for h in self.heads], "notes": self.notes}


def read_heads(model: BilinearModel, layer: int | None = None, heads: list[int] | None = None,
               top: int = 5, pairs: int = 10, tokens: int = 5, dtype: type = np.float32,
               advance=None) -> AttentionReport:
    """:func:`read_head` for ``heads`` (default all) of ``layer`` (default all blocks)."""
    if model.n_attention == 0:
        check_head(model, 0, 0)
    layers = range(model.n_attention) if layer is None else [check_head(model, layer, 0)[0]]
    H = model.attention_settings.n_heads
    chosen = list(range(H)) if heads is None else heads
    out = [read_head(model, L, h, top, pairs, tokens, dtype, advance)
           for L in layers for h in chosen]
    notes = [left_out(model)]
    if model.embed_key is None:
        notes.append("no token embedding: token readings and pairs are left out")
    if top < model.attention_settings.d_head:
        notes.append(f"the top {top} singular components of each form are shown (rank <= "
                     f"d_head = {model.attention_settings.d_head}); --top sets how many")
    return AttentionReport(model.layout, model.attention_settings.as_dict(), out, notes,
                           np.dtype(dtype).name)


def query_form(model: BilinearModel, layer: int, head: int, query: int,
               dtype: type = np.float32) -> tuple[np.ndarray, dict, list[str]]:
    """``(Q, direction info, notes)``: the score of head ``layer.head`` for query token
    ``query`` as a quadratic form in the key, ``score = x_k^T Q x_k`` (see module doc)."""
    layer, head = check_head(model, layer, head)
    n_vocab = model.embed_shape[0] if model.embed_shape else 0
    if model.embed_key is None:
        raise BilinError(f"{option('--query-token', 'query_token')} needs the model's token "
                         f"embedding")
    if not 0 <= query < n_vocab:
        raise BilinError(f"query token {query} is out of range: the vocabulary has "
                         f"{n_vocab} tokens (0..{n_vocab - 1})")
    x_q = token_inputs(model, np.float64, slice(query, query + 1))[0]
    Q = model.attention(layer, np.float64).query_form(head, x_q)
    info = {"kind": "attention_query", "layer": layer, "head": head, "query_token": query}
    text = token_texts(model, [query])[query]
    if text is not None:
        info["query_string"] = text
    s = model.attention_settings
    notes = [f"attention score of head {layer}.{head} (scale {s.scale_text}) for query token "
             f"{query} as a quadratic form in the key x_k: score = x_k^T Q x_k exactly, "
             "Q = scale * (a1 a2^T + a2 a1^T) / 2 with a_n = A_n^T x_q (rank <= 2)",
             left_out(model)]
    return Q.astype(dtype), info, notes


def key_tokens(model: BilinearModel, vecs: np.ndarray, n: int) -> list[dict]:
    """Each row of ``vecs : (k, d)`` (key-side vectors) read as the tokens whose direct-path
    input ``x_t`` it weighs most, per sign (as ``bilin eig --tokens`` reads MLP inputs)."""
    X = token_inputs(model, np.float64)
    S = X @ np.asarray(vecs, np.float64).T

    def texts_of(ids):
        return token_texts(model, sorted(set(ids)))

    return [_read(S[:, i], n, texts_of) for i in range(S.shape[1])]


def query_decomposition(model: BilinearModel, layer: int, head: int, query: int,
                        top: int | None = 10, dtype: type = np.float32, tokens: int = 5):
    """Eigendecompose :func:`query_form`'s ``Q`` like any ``Q(u)``: a
    :class:`~bilin_cli.analyses.decompose.Decomposition` in the residual stream (the attention's
    input), eigenvectors of the key side read as tokens."""
    from bilin_cli.analyses.decompose import Decomposition
    from bilin_cli.model.spectra import effective_rank, eigh_sorted, kept, share_of_top, top_note

    Q, info, notes = query_form(model, layer, head, query, dtype)
    lam_all, vecs_all = eigh_sorted(Q)
    d = Q.shape[0]
    k = kept(top, d)
    if top_note(top, d):
        notes.append(top_note(top, d))
    dec = Decomposition(
        eigenvalues=lam_all[:k], eigenvectors=vecs_all[:k], basis="hidden",
        layer=info["layer"], direction=info, n_eigenvalues=d,
        sum_abs=float(np.sum(np.abs(lam_all), dtype=np.float64)),
        effective_rank=effective_rank(lam_all), top_share=share_of_top(lam_all, k),
        method="dense", layout=model.layout, dtype=np.dtype(dtype).name, notes=notes)
    if tokens:
        dec.tokens = key_tokens(model, dec.eigenvectors, tokens)
        dec.notes.append("tokens: key tokens t whose direct-path input x_t the eigenvector "
                         "weighs most: v . x_t > 0 left of the bar, < 0 right")
    return dec

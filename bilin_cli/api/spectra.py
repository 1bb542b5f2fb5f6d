"""Eigendecompositions: ``eig``, ``chain``, ``token_reading``, ``spectrum``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bilin_cli.analyses.decompose import Decomposition
from bilin_cli.api._overflow import float64_on_overflow
from bilin_cli.api._types import PathLike
from bilin_cli.api.directions import _one_direction, output_directions
from bilin_cli.api.loading import _model
from bilin_cli.core.errors import BilinError, option
from bilin_cli.model.bilinear import BilinearModel

# --------------------------------------------------------------------------------- eig


def eig(
    model: BilinearModel | PathLike,
    cls: int | None = None,
    token: int | str | None = None,
    direction: np.ndarray | PathLike | None = None,
    layer: int | None = None,
    top: int | None = 10,
    basis: str = "auto",
    dtype: type = np.float32,
    *,
    sae=None,
    feature: int | None = None,
    method: str = "auto",
    tokens: int | None = None,
    head: str | tuple[int, int] | None = None,
    query_token: int | str | None = None,
) -> Decomposition:
    """Eigendecompose ``Q(u)`` for one output direction ``u`` (``bilin eig``).

    Give exactly one of: ``cls`` (a class: its logit), ``token`` (an LM token id, or its
    text), ``direction`` (a vector ``(o,)`` in the layer's output space, a ``.npy`` path or
    a :func:`output_directions` result), or ``sae`` (a path or
    :func:`bilin_cli.storage.sae.load_sae` result) with ``feature`` (its encoder row).
    ``layer`` defaults to the last; ``top=None`` keeps every eigenpair (more than there are
    keeps them all, with a note). ``basis``: ``"input"`` (through the embedding: pixels),
    ``"hidden"`` (the layer's own input space, orthonormal) or ``"auto"`` (input where
    there is one). ``method``: ``"dense"`` (eigh of the ``(d, d)`` Q), ``"arpack"``
    (matrix-free top-k, for huge layers) or ``"auto"``. ``tokens`` (language models): read
    each eigenvector as the N tokens whose embeddings it weighs most, per sign, into
    ``d.tokens`` (``None``: 5 where the model has a token embedding; 0: off). For many
    directions call it once per :func:`output_directions` entry (or use :func:`spectrum`).

    Bilinear attention: ``head="L.H"`` (or ``(L, H)``) with ``query_token`` (an id or its
    text) decomposes that head's score for the query token as a quadratic form in the key,
    ``score = x_k^T Q x_k`` (rank 2; the eigenvectors live in the residual stream and are read
    as key tokens).

    Returns a :class:`~bilin_cli.analyses.decompose.Decomposition`: ``eigenvalues (k,)``,
    ``eigenvectors (k, dim)`` (``dim`` = pixels or ``d``), ``effective_rank``, ``sum_abs``,
    ``top_share``, with biases ``linear (dim,)`` and ``constant``; ``as_dict()`` is the
    ``--json`` document. ``u . y(x) = sum_i lambda_i (v_i . x)^2`` exactly.

    Example::

        >>> d = bilin.eig(m, cls=3, top=5)
        >>> d.eigenvalues.round(4)
        array([-0.1459, -0.1314,  0.1233, -0.1195, -0.1109], dtype=float32)
    """
    from bilin_cli.analyses.decompose import decompose

    model = _model(model)
    if head is not None or query_token is not None:
        return _query_eig(model, head, query_token, top, dtype, tokens,
                          cls=cls, token=token, direction=direction, sae=sae, layer=layer)
    index = model.resolve_layer(layer)
    u = _one_direction(model, index, dtype, cls=cls, token=token, direction=direction, sae=sae,
                       feature=feature)
    tokens = token_reading(model, tokens)
    dec = decompose(model, index, u, top=top, basis=basis, dtype=dtype, method=method)
    _note_top(dec, top)
    if tokens:
        from bilin_cli.analyses.token_reading import note, read_as_tokens

        dec.tokens = read_as_tokens(model, index, dec.eigenvectors, tokens)
        dec.notes.append(note(model))
    return dec


def parse_head(text: str | tuple[int, int] | list) -> tuple[int, int]:
    """``"L.H"`` (block L, head H, both from 0; negative counts from the end) or ``(L, H)``."""
    if isinstance(text, (tuple, list)) and len(text) == 2:
        return int(text[0]), int(text[1])
    parts = str(text).strip().split(".")
    try:
        if len(parts) != 2:
            raise ValueError
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise BilinError(f"{option('--head', 'head')} must be L.H (block L, head H, e.g. 0.3), got "
                         f"{str(text)[:40]!r}") from None


@float64_on_overflow("the attention score's form", "model")
def _query_eig(model, head, query_token, top, dtype, tokens, **others) -> Decomposition:
    from bilin_cli.analyses.attention_circuits import query_decomposition
    from bilin_cli.storage.vocabulary import token_id

    given = [k for k, v in others.items() if v is not None]
    if given:
        raise BilinError(f"head= and query_token= choose the direction by themselves; drop "
                         f"{', '.join(given)}")
    if head is None or query_token is None:
        raise BilinError("head= (L.H) and query_token= go together")
    layer, h = parse_head(head)
    query = token_id(model, query_token) if isinstance(query_token, str) else int(query_token)
    n = 5 if tokens is None else tokens
    return query_decomposition(model, layer, h, query, top, dtype, n)


def token_reading(model: BilinearModel, tokens: int | None, chain: int | None = None) -> int:
    """How many tokens :func:`eig` reads each eigenvector as: ``tokens``, or by default 5
    on a language model with a token embedding (0 with ``chain``); an error where the
    model has no token embedding to read through."""
    if tokens and (model.kind != "lm" or model.embed_key is None):
        raise BilinError(f"{option('--tokens', 'tokens')} reads eigenvectors through a language "
                         f"model's token "
                         f"embedding; this {model.layout} has none")
    if tokens and chain is not None:
        raise BilinError(f"{option('--tokens', 'tokens')} and {option('--chain', 'chain')} do not "
                         f"combine; read one layer at a time")
    if tokens is None:
        return 5 if model.kind == "lm" and model.embed_key and chain is None else 0
    return tokens


def _note_top(dec: Decomposition, k: int | None) -> None:
    """Say so when ``top`` asked for more eigenpairs than the matrix has (never silent)."""
    from bilin_cli.model.spectra import top_note

    note = top_note(k, dec.n_eigenvalues, f" of layer {dec.layer}")
    if note:
        dec.notes.append(note)


def chain(
    model: BilinearModel | PathLike,
    eigenvector: int,
    cls=None,
    token=None,
    direction=None,
    layer: int | None = None,
    top: int | None = 10,
    basis: str = "auto",
    dtype: type = np.float32,
    *,
    sae=None,
    feature: int | None = None,
) -> list[Decomposition]:
    """Follow eigenvector ``eigenvector`` (its rank from 1) down the layers (``bilin eig --chain``).

    The direction (one, as :func:`eig` takes it) is decomposed at ``layer``; eigenvector
    ``eigenvector`` of that layer is the output direction of the layer below, and so on
    down to layer 0, whose eigenvectors are given in ``basis``. Returns one
    :class:`~bilin_cli.analyses.decompose.Decomposition` per layer, from ``layer`` down to 0, each
    with its ``top`` eigenpairs.
    """
    from bilin_cli.analyses.decompose import chain as run

    model = _model(model)
    index = model.resolve_layer(layer)
    u = _one_direction(model, index, dtype, cls=cls, token=token, direction=direction, sae=sae,
                       feature=feature)
    steps = run(model, index, u, eigenvector, top=top, basis=basis, dtype=dtype)
    for step in steps:
        _note_top(step, top)
    return steps


# ---------------------------------------------------------------------------- spectrum


@dataclass
class Spectra:
    """Whole spectra of many directions of one layer (``bilin spectrum``).

    ``eigenvalues : (n, d)``, row ``i`` for ``directions[i]``, each by ``|lambda|``
    descending. ``summaries[i]`` is the row ``bilin spectrum --json`` prints for it
    (extremes, ``effective_rank``, ``k50``/``k90``/``k99``...).
    """

    layer: int
    eigenvalues: np.ndarray
    directions: list[dict]
    summaries: list[dict]
    layout: str

    operands: dict | None = None  # two-input forms: which entries are x_a and x_b

    def as_dict(self) -> dict:
        """The ``--json`` document of ``bilin spectrum``."""
        doc = {"layout": self.layout, "layer": self.layer,
               "n_eigenvalues": int(self.eigenvalues.shape[1]), "directions": self.summaries}
        if self.operands is not None:
            doc["operands"] = self.operands
        return doc


def spectrum(
    model: BilinearModel | PathLike,
    cls: int | Sequence[int] | str | None = None,
    token: int | str | Sequence | None = None,
    direction=None,
    layer: int | None = None,
    dtype: type = np.float32,
    *,
    sae=None,
    feature: int | Sequence[int] | str | None = None,
    advance=None,
) -> Spectra:
    """Full spectra of many output directions (``bilin spectrum``).

    ``cls``, ``token`` and ``feature`` take an index, a list or ``"all"``; ``direction`` a
    vector, a path, a :func:`output_directions` result or a list of them (see
    :func:`output_directions`).
    With no direction a classifier gives every class. ``advance`` (optional) is called once
    per direction done (a progress bar).

    Example::

        >>> s = bilin.spectrum(m)                      # every class of the mnist sample
        >>> s.eigenvalues.shape, round(s.summaries[3]["effective_rank"], 2)
        ((10, 512), 36.03)
    """
    from bilin_cli.analyses.decompose import spectra

    model = _model(model)
    index = model.resolve_layer(layer)
    dirs = output_directions(model, index, cls=cls, token=token, direction=direction, sae=sae,
                      feature=feature, dtype=dtype)
    named = any(v is not None for v in (cls, token, direction, sae, feature))
    if not named:
        if model.kind == "lm" or model.head_key is None:
            raise BilinError("choose directions with token=, sae= and feature=, or direction=")
        dirs = output_directions(model, index, cls="all", dtype=dtype)
    doc, lams = spectra(model, index, dirs, dtype, advance)
    lam = np.stack(lams) if lams else np.zeros((0, doc["n_eigenvalues"]), dtype=dtype)
    operands = model.meta.get("operands") if index == 0 else None
    return Spectra(index, lam, [d.info for d in dirs], doc["directions"], model.layout,
                   operands)

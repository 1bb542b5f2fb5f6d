"""Turning ``--class``, ``--token`` or ``--direction FILE.npy`` into a vector ``u``.

``u`` lives in the chosen layer's output space: the logits for the layer that
feeds a classifier's head, the residual stream for a transformer layer, the
hidden space for an inner layer of a stacked classifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bilin_cli.core.errors import BilinError, option
from bilin_cli.core.printable import with_article
from bilin_cli.model.bilinear import BilinearModel
from bilin_cli.storage.vocabulary import token_id, token_texts


@dataclass
class Direction:
    u: np.ndarray
    info: dict  # JSON-ready: how the direction was chosen
    notes: list[str] = field(default_factory=list)
    info_key: str = ""  # set by :func:`chosen`: see :func:`key`


# How an error message names the direction setting (CLI flag, API parameter).
_DIRECTION = ("--direction FILE.npy", "direction= (a vector or a .npy file)")


def _check_index(value: int, n: int, what: str, plural: str) -> None:
    if not 0 <= value < n:
        raise BilinError(
            f"{what} {value} is out of range: this model has {n} {plural} (0..{n - 1})"
        )


def _n_classes(model: BilinearModel) -> int:
    if model.kind == "lm":
        raise BilinError(f"this is a language model: choose an output with "
                         f"{option('--token', 'token')}, not {option('--class', 'cls')}")
    if model.head_key is None:
        raise BilinError(f"this model has no head: give "
                         f"{option(*_DIRECTION)}")
    return model.shapes[-1].o


def _n_tokens(model: BilinearModel) -> int:
    if model.kind != "lm":
        raise BilinError(f"{option('--token', 'token')} is for language models; this is "
                         f"{with_article(model.layout)}: use {option('--class', 'cls')}")
    if model.head_key is None:
        raise BilinError(f"this checkpoint has no unembedding (lm_head): give "
                         f"{option(*_DIRECTION)}")
    return model.meta["head_rows"]


def _expand(values: Sequence, n_of, what: str, plural: str) -> list[int]:
    """Plain indices, or lists/ranges (anything with ``resolve(n, what, plural)``, such as
    the CLI's ``IndexList``) expanded against the size ``n_of()`` gives."""
    out: list[int] = []
    for v in values:
        if hasattr(v, "resolve"):
            out.extend(v.resolve(n_of(), what, plural))
        else:
            out.append(int(v))
    return out


def from_class(model: BilinearModel, layer: int, c: int, dtype: type) -> Direction:
    """Class ``c`` of a classifier: ``e_c`` in logit space, or the head row (direct path)."""
    n = _n_classes(model)
    _check_index(c, n, "class", "classes")
    info = {"kind": "class", "index": c}
    if model.output_names:
        info["name"] = model.output_names[c]
    if layer == model.n_layers - 1:
        u = np.zeros(n, dtype)
        u[c] = 1.0
        return Direction(u, info)
    if not model.residual:
        raise BilinError(
            f"layer {layer} does not feed the head directly (no residual stream): use the last "
            f"layer, or give "
            f"{option(*_DIRECTION)} with "
            f"{model.shapes[layer].o} entries"
        )
    info["path"] = "direct"
    u = model.head(dtype, slice(c, c + 1))[0].copy()
    return Direction(u, info, ["direct path only: the head row, ignoring later layers"])


def from_token(model: BilinearModel, layer: int, t: int, dtype: type) -> Direction:
    """Token ``t``: row ``t`` of the unembedding (the direct path from the layer to the logits)."""
    _check_index(t, _n_tokens(model), "token", "tokens")
    info: dict = {"kind": "token", "index": t}
    text = token_texts(model, [t])[t]
    if text is not None:
        info["string"] = text
    u = model.head(dtype, slice(t, t + 1))[0].copy()
    if model.meta.get("folded_scales", {}).get("final"):
        why = ("direct path: the unembedding row with the final linear scale folded in "
               "(u = s * U[T]), ignoring later layers")
    else:
        why = "direct path: the unembedding row, ignoring the final norm and later layers"
    return Direction(u, info, [why])


def from_file(model: BilinearModel, layer: int, path: str | Path, dtype: type) -> Direction:
    """Any vector in the layer's output space, from a ``.npy`` file."""
    from bilin_cli.storage.data import read_npy

    p = Path(path)
    # A regular file only (a FIFO would hang), its header checked against its size first.
    u = read_npy(p, "direction file")
    u = np.squeeze(np.asarray(u))
    n = model.shapes[layer].o
    if u.ndim != 1 or u.shape[0] != n or not np.issubdtype(u.dtype, np.number):
        raise BilinError(
            f"{p}: direction has shape {u.shape}, layer {layer}'s output space "
            f"({model.shapes[layer].out_space}) needs a vector of {n} numbers"
        )
    if not np.all(np.isfinite(u)):
        raise BilinError(f"{p}: direction contains NaN or infinity")
    info = {"kind": "file", "path": str(p), "norm": vector_norm(u)}
    # A float64 vector beyond float32's range becomes inf here; the decomposition sees the
    # non-finite Q and redoes the work in float64 (bilin_cli.analyses.decompose), so no warning.
    with np.errstate(over="ignore"):
        return Direction(u.astype(dtype), info)


def vector_norm(u: np.ndarray) -> float:
    """``||u||`` without overflowing where ``u`` is finite (1e300 entries): scaled by the
    largest entry first."""
    u = np.asarray(u, dtype=np.float64)
    top = float(np.max(np.abs(u), initial=0.0))
    if top == 0.0:
        return 0.0
    return float(top * np.linalg.norm(u / top))


def from_sae_feature(model: BilinearModel, layer: int, sae, a: int, dtype: type) -> Direction:
    """Output-SAE feature ``a``: its encoder row, so ``x^T Q x`` predicts its pre-activation."""
    sae.check_feature(a)
    sae.check_reads(model.shapes[layer].o, layer)
    info = {"kind": "sae_feature", "sae": sae.path, "feature": a, "format": sae.format}
    notes = ["x^T Q x is the encoder's dot product with the layer output; the feature's "
             "pre-activation adds the encoder bias and subtracts e_a . b_dec"]
    return Direction(sae.enc[a].astype(dtype), info, notes)


def chosen(
    model: BilinearModel,
    layer: int,
    dtype: type,
    classes: Sequence = (),
    tokens: Sequence = (),
    token_strs: Sequence[str] = (),
    sae: str | Path | None = None,
    features: Sequence = (),
    files: Sequence[str | Path] = (),
) -> list[Direction]:
    """Every direction a command's options name, in that order: classes, tokens (ids, then
    texts), SAE features, files. Classes, tokens and features are indices or lists/ranges
    (see :func:`_expand`: ``all`` means every one the model has). A direction named twice
    is an error (see :func:`key`)."""
    classes = _expand(classes, lambda: _n_classes(model), "class", "classes")
    dirs = [from_class(model, layer, c, dtype) for c in classes]
    ids = [*_expand(tokens, lambda: _n_tokens(model), "token", "tokens"),
           *(token_id(model, text) for text in token_strs)]
    dirs += [from_token(model, layer, t, dtype) for t in ids]
    if sae is not None:
        from bilin_cli.storage.sae import load_sae

        out_sae = load_sae(sae, dtype)
        feats = _expand(features, lambda: out_sae.n_features, "feature", "features")
        dirs += [from_sae_feature(model, layer, out_sae, a, dtype) for a in feats]
    dirs += [from_file(model, layer, p, dtype) for p in files]
    seen: set[str] = set()
    n_files = 0
    for d in dirs:
        if d.info["kind"] == "file":
            d.info_key = f"file{n_files}"
            n_files += 1
        else:
            d.info_key = key(d.info)
        if d.info_key in seen:
            raise BilinError(f"{d.info_key.rstrip('0123456789')} "
                             f"{d.info_key.lstrip('abcdefghijklmnopqrstuvwxyz_')} is named "
                             "twice; give each direction once")
        seen.add(d.info_key)
    return dirs


def key(info: dict) -> str:
    """A direction's short name, unique within one run: ``class3``, ``token101``,
    ``feature395`` (files are ``file0``, ``file1``, ... in the order given). It names the
    direction's arrays in a many-direction ``.npz`` and its rows in CSV."""
    if info["kind"] == "class":
        return f"class{info['index']}"
    if info["kind"] == "token":
        return f"token{info['index']}"
    if info["kind"] == "sae_feature":
        return f"feature{info['feature']}"
    return "file"

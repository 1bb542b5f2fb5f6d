"""Choosing output directions the way the CLI does (classes, tokens, SAE features, vectors)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from bilin_cli.analyses import directions as _dirs
from bilin_cli.api._types import PathLike
from bilin_cli.api.loading import _model
from bilin_cli.core.errors import BilinError
from bilin_cli.model.bilinear import BilinearModel

# -------------------------------------------------------------------------- directions


class _Every:
    """``"all"``: every index there is (resolved by :mod:`bilin_cli.analyses.directions`)."""

    def resolve(self, n: int, what: str = "index", plural: str = "entries") -> list[int]:
        return list(range(n))


def _items(value) -> list:
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        return list(value.reshape(-1)) if value.ndim else [value.item()]
    return list(value) if isinstance(value, (list, tuple, range)) else [value]


def _index_specs(value, token_texts: list | None = None) -> list:
    """``3``, ``[0, 3]``, ``"all"`` (or the CLI's parsed index lists) for
    :func:`bilin_cli.analyses.directions.chosen`; token texts go to ``token_texts``."""
    out = []
    for v in _items(value):
        if isinstance(v, str):
            if v.lower() == "all":
                out.append(_Every())
            elif token_texts is not None:
                token_texts.append(v)
            else:
                raise BilinError(f"give an index, a list of indices or 'all', got {v!r}")
        elif isinstance(v, (int, np.integer)):
            out.append(int(v))
        elif hasattr(v, "resolve"):
            out.append(v)
        else:
            raise BilinError(f"give an index, a list of indices or 'all', got {v!r}")
    return out


def _array_direction(model: BilinearModel, layer: int, u, dtype: type) -> _dirs.Direction:
    u = np.squeeze(np.asarray(u))
    n = model.shapes[layer].o
    if u.ndim != 1 or u.shape[0] != n or not np.issubdtype(u.dtype, np.number):
        raise BilinError(f"direction has shape {u.shape}, layer {layer}'s output space "
                         f"({model.shapes[layer].out_space}) needs a vector of {n} numbers")
    if not np.all(np.isfinite(u)):
        raise BilinError("direction contains NaN or infinity")
    info = {"kind": "array", "norm": _dirs.vector_norm(u)}
    with np.errstate(over="ignore"):  # beyond float32: decompose redoes it in float64
        return _dirs.Direction(u.astype(dtype), info, info_key="array")


def output_directions(
    model: BilinearModel | PathLike,
    layer: int | None = None,
    cls=None,
    token=None,
    direction=None,
    *,
    sae=None,
    feature=None,
    token_text: str | Sequence[str] | None = None,
    dtype: type = np.float32,
) -> list[_dirs.Direction]:
    """The output directions ``u`` that options name, as ``bilin eig``/``spectrum`` choose them.

    ``cls``, ``token`` and ``feature`` take an index, a list of them or ``"all"``; a
    ``token`` may also be a token's text (``token_text`` takes texts only, even ``"all"``).
    ``direction`` is a vector ``(o,)`` in the layer's output space, a ``.npy`` path, a
    :class:`~bilin_cli.analyses.directions.Direction`, or a list of
    them. ``sae`` (a path or a :func:`~bilin_cli.storage.sae.load_sae` result) goes with
    ``feature``. Returns :class:`~bilin_cli.analyses.directions.Direction` objects (``u (o,)``,
    ``info``: how it was chosen, ``info_key``: ``class3``, ``token101``, ``feature395``,
    ``file0``...) in the order classes, tokens (ids, then texts), SAE features, files,
    vectors; a direction named twice is an error. Each can be passed to :func:`eig`,
    :func:`chain` or :func:`spectrum` as ``direction=``.

    Example::

        >>> [u.info_key for u in bilin.output_directions(m, cls=[0, 3])]
        ['class0', 'class3']
    """
    model = _model(model)
    index = model.resolve_layer(layer)
    if (sae is None) != (feature is None):
        raise BilinError("sae and feature go together")
    texts: list[str] = []
    ids = _index_specs(token, texts)
    texts += [str(t) for t in _items(token_text)]
    classes = _index_specs(cls)
    feats = _index_specs(feature)
    vectors = _items(direction) if not isinstance(direction, np.ndarray) else [direction]
    ready = [v for v in vectors if isinstance(v, _dirs.Direction)]
    files = [v for v in vectors if isinstance(v, (str, os.PathLike))]
    arrays = [v for v in vectors if not isinstance(v, (str, os.PathLike, _dirs.Direction))]
    by_path = sae is None or isinstance(sae, (str, os.PathLike))
    dirs = _dirs.chosen(model, index, dtype, classes=classes, tokens=ids, token_strs=texts,
                        sae=sae if by_path else None, features=feats if by_path else (),
                        files=files if by_path else ())
    if not by_path:
        out_sae = _sae(sae, dtype)
        seen = {u.info_key for u in dirs}
        for a in _dirs._expand(feats, lambda: out_sae.n_features, "feature", "features"):
            u = _dirs.from_sae_feature(model, index, out_sae, a, dtype)
            u.info_key = _dirs.key(u.info)
            if u.info_key in seen:
                raise BilinError(f"feature {a} is named twice; give each direction once")
            seen.add(u.info_key)
            dirs.append(u)
        dirs += _dirs.chosen(model, index, dtype, files=files)
    dirs += [_array_direction(model, index, u, dtype) for u in arrays]
    return dirs + ready


def _one_direction(model, layer, dtype, **given) -> _dirs.Direction:
    dirs = output_directions(model, layer, dtype=dtype, **given)
    if len(dirs) != 1:
        raise BilinError(f"eig takes exactly one direction (cls, token, direction or "
                         f"sae+feature), got {len(dirs)}; spectrum() takes many")
    return dirs[0]


def _sae(sae, dtype: type):
    from bilin_cli.storage.sae import SAE, load_sae

    return sae if isinstance(sae, SAE) else load_sae(sae, dtype)

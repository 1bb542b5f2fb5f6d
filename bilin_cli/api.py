"""The Python API: the CLI's commands as functions that return plain data.

``import bilin_cli as bilin`` gives these functions (loaded on first use, so the import
itself stays cheap)::

    >>> import bilin_cli as bilin
    >>> m = bilin.load("sample_checkpoints/mnist")
    >>> d = bilin.eig(m, cls=3, top=5)
    >>> d.eigenvalues.shape, d.eigenvectors.shape      # (k,), (k, 784) pixels
    ((5,), (5, 784))

Each function is a thin layer over the library module the matching ``bilin`` command
calls, and returns the object that command renders: :class:`~bilin_cli.decompose.Decomposition`
for ``eig``, :class:`~bilin_cli.hosvd.HOSVD`, :class:`~bilin_cli.explain.Explanation`, and
the small dataclasses below for ``spectrum``, ``truncate`` and ``rank_features``. Arrays are
NumPy arrays; eigenpairs are ordered by ``|lambda|`` descending (signs kept), and index
``r - 1`` is the eigenvector the CLI numbers ``r``. Wherever a function takes a model it also
takes a checkpoint path (it is then loaded with :func:`load`). Errors a user can cause raise
:class:`bilin_cli.errors.BilinError` with the message the CLI prints.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bilin_cli import _API
from bilin_cli import directions as _dirs
from bilin_cli.decompose import Decomposition
from bilin_cli.errors import BilinError
from bilin_cli.model import BilinearModel

PathLike = str | os.PathLike

# The one list of API names lives in the package, which serves them lazily.
__all__ = list(_API)


# ----------------------------------------------------------------------------- loading


def load(path: PathLike, map: dict | PathLike | None = None) -> BilinearModel:  # noqa: A002
    """Open a checkpoint and recognise its layout, as every ``bilin`` command does.

    ``path`` is a ``.safetensors`` file, a Hugging Face style directory or a PyTorch state
    dict; ``map`` names the tensors of each role where the layout is not recognised: a dict
    (the JSON object ``bilin info --suggest-map`` prints) or the path of such a JSON file.
    Tensors are read lazily (memory-mapped) when a function needs them.

    Example::

        >>> m = bilin.load("sample_checkpoints/mnist")
        >>> m.kind, m.n_layers, (m.shapes[0].d, m.shapes[0].h, m.shapes[0].o)
        ('classifier', 1, (512, 512, 10))
    """
    from bilin_cli.storage.containers import open_checkpoint
    from bilin_cli.storage.layouts import recognise
    from bilin_cli.storage.maps import read_map

    checkpoint = open_checkpoint(path)
    mapping = map if map is None or isinstance(map, dict) else read_map(map)
    model = recognise(checkpoint, mapping)
    # Where it came from: truncate() finds a shipped sample's own test split with these.
    model.meta.setdefault("source_path", str(path))
    model.meta.setdefault("source_config", dict(checkpoint.config))
    return model


def _model(model: BilinearModel | PathLike) -> BilinearModel:
    return model if isinstance(model, BilinearModel) else load(model)


# -------------------------------------------------------------------------- directions


def _indices(value, everything: int | None = None) -> list[int]:
    """``3`` -> [3]; ``[0, 3]`` -> [0, 3]; ``"all"`` -> every index below ``everything``."""
    if value is None:
        return []
    if isinstance(value, str):
        if value.lower() != "all":
            raise BilinError(f"give an index, a list of indices or 'all', got {value!r}")
        if everything is None:
            raise BilinError("'all' needs a model with a head")
        return list(range(everything))
    if isinstance(value, (int, np.integer)):
        return [int(value)]
    return [int(v) for v in value]


def _array_direction(model: BilinearModel, layer: int, u, dtype: type) -> _dirs.Direction:
    u = np.squeeze(np.asarray(u))
    n = model.shapes[layer].o
    if u.ndim != 1 or u.shape[0] != n or not np.issubdtype(u.dtype, np.number):
        raise BilinError(f"direction has shape {u.shape}, layer {layer}'s output space "
                         f"({model.shapes[layer].out_space}) needs a vector of {n} numbers")
    if not np.all(np.isfinite(u)):
        raise BilinError("direction contains NaN or infinity")
    info = {"kind": "array", "norm": float(np.linalg.norm(u))}
    return _dirs.Direction(u.astype(dtype), info, info_key="array")


def _directions(model, layer, dtype, cls=None, token=None, direction=None, sae=None,
                feature=None) -> list[_dirs.Direction]:
    """Every direction named, in the order classes, tokens, SAE features, vectors."""
    if (sae is None) != (feature is None):
        raise BilinError("sae and feature go together")
    tokens = token if isinstance(token, (list, tuple)) else ([] if token is None else [token])
    token_strs = [t for t in tokens if isinstance(t, str) and t.lower() != "all"]
    ids = [t for t in tokens if not isinstance(t, str)]
    if any(isinstance(t, str) and t.lower() == "all" for t in tokens):
        ids = _indices("all", model.n_outputs)
    vectors = [] if direction is None else (
        list(direction) if isinstance(direction, (list, tuple)) else [direction])
    files = [v for v in vectors if isinstance(v, (str, os.PathLike))]
    arrays = [v for v in vectors if not isinstance(v, (str, os.PathLike))]
    out_sae, feats = None, []
    if sae is not None:
        out_sae = _sae(sae, dtype)
        feats = _indices(feature, out_sae.n_features)
    classes = _indices(cls, model.n_outputs if model.kind != "lm" else None)
    dirs = _dirs.chosen(model, layer, dtype, classes=classes, tokens=ids, token_strs=token_strs,
                        files=files)
    dirs += [_dirs.from_sae_feature(model, layer, out_sae, a, dtype) for a in feats]
    dirs += [_array_direction(model, layer, u, dtype) for u in arrays]
    return dirs


def _sae(sae, dtype: type):
    from bilin_cli.storage.sae import SAE, load_sae

    return sae if isinstance(sae, SAE) else load_sae(sae, dtype)


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
) -> Decomposition:
    """Eigendecompose ``Q(u)`` for one output direction ``u`` (``bilin eig``).

    Give exactly one of: ``cls`` (a class: its logit), ``token`` (an LM token id, or its
    text), ``direction`` (a vector ``(o,)`` in the layer's output space, or a ``.npy`` path),
    or ``sae`` (a path or :func:`bilin_cli.storage.sae.load_sae` result) with ``feature`` (its
    encoder row). ``layer`` defaults to the last; ``top=None`` keeps every eigenpair.
    ``basis``: ``"input"`` (through the embedding: pixels), ``"hidden"`` (the layer's own
    input space, orthonormal) or ``"auto"`` (input where there is one).

    Returns a :class:`~bilin_cli.decompose.Decomposition`: ``eigenvalues (k,)``,
    ``eigenvectors (k, dim)`` (``dim`` = pixels or ``d``), ``effective_rank``, ``sum_abs``,
    ``top_share``, with biases ``linear (dim,)`` and ``constant``; ``as_dict()`` is the
    ``--json`` document. ``u . y(x) = sum_i lambda_i (v_i . x)^2`` exactly.

    Example::

        >>> d = bilin.eig(m, cls=3, top=5)
        >>> d.eigenvalues.round(4)
        array([-0.1459, -0.1314,  0.1233, -0.1195, -0.1109], dtype=float32)
    """
    from bilin_cli.decompose import decompose

    model = _model(model)
    index = model.resolve_layer(layer)
    dirs = _directions(model, index, dtype, cls=cls, token=token, direction=direction, sae=sae,
                       feature=feature)
    if len(dirs) != 1:
        raise BilinError(f"eig takes exactly one direction (cls, token, direction or "
                         f"sae+feature), got {len(dirs)}; spectrum() takes many")
    return decompose(model, index, dirs[0], top=top, basis=basis, dtype=dtype, method=method)


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

    def as_dict(self) -> dict:
        """The ``--json`` document of ``bilin spectrum``."""
        return {"layout": self.layout, "layer": self.layer,
                "n_eigenvalues": int(self.eigenvalues.shape[1]), "directions": self.summaries}


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
) -> Spectra:
    """Full spectra of many output directions (``bilin spectrum``).

    ``cls``, ``token`` and ``feature`` take an index, a list or ``"all"``; ``direction`` a
    vector, a path or a list of them. With no direction a classifier gives every class.

    Example::

        >>> s = bilin.spectrum(m)                      # every class of the mnist sample
        >>> s.eigenvalues.shape, round(s.summaries[3]["effective_rank"], 2)
        ((10, 512), 36.03)
    """
    from bilin_cli.decompose import spectra

    model = _model(model)
    index = model.resolve_layer(layer)
    dirs = _directions(model, index, dtype, cls=cls, token=token, direction=direction, sae=sae,
                       feature=feature)
    if not dirs:
        if model.kind == "lm" or model.head_key is None:
            raise BilinError("choose directions with token=, sae= and feature=, or direction=")
        dirs = _directions(model, index, dtype, cls="all")
    doc, lams = spectra(model, index, dirs, dtype)
    return Spectra(index, np.stack(lams), [d.info for d in dirs], doc["directions"],
                   model.layout)


# ---------------------------------------------------------------------------- truncate


@dataclass
class Truncation:
    """A low-rank truncated classifier (``bilin truncate``).

    ``ranks (n_classes,)``: eigenpairs kept per class; ``per_class``: the rows the CLI
    prints (``k``, ``share_kept``, ``max_discarded_abs_eigenvalue``: the exact bound
    ``|logit_c - truncated logit_c| <= max_discarded_c * ||x||^2``); ``tensors``: the
    truncated model's weights in the source's layout (hidden unit ``(c, i)`` has
    ``W = V = v_ci``, head weight ``lambda_ci``). ``accuracy`` and ``full_accuracy`` on
    ``n`` labelled examples when data was given or the checkpoint ships a test split;
    ``output``: the written checkpoint, if any.
    """

    ranks: np.ndarray
    per_class: list[dict]
    tensors: dict[str, np.ndarray]
    augmented: bool
    accuracy: float | None = None
    full_accuracy: float | None = None
    n: int | None = None
    data: str | None = None
    output: str | None = None

    @property
    def hidden_units(self) -> int:
        return int(self.ranks.sum())


def truncate(
    model: BilinearModel | PathLike,
    rank: int | None = None,
    energy: float | None = None,
    *,
    data: PathLike | None = None,
    evaluate: bool = True,
    output: PathLike | None = None,
    force: bool = False,
    dtype: type = np.float32,
) -> Truncation:
    """Keep each class's ``rank`` eigenpairs of largest ``|lambda|`` (``bilin truncate``).

    Give ``rank`` (the same K for every class) or ``energy`` (per class, the smallest K
    holding that share of ``sum |lambda|``). With ``evaluate`` the truncated model's
    accuracy is measured on ``data`` (an ``.npz`` with ``x``, ``y`` or an idx directory;
    default: a shipped sample's own test split, if there is one). ``output`` writes it as
    an ordinary checkpoint (``.safetensors`` file or directory), as ``-o`` does.
    Single-layer, non-residual classifiers only.

    Example::

        >>> t = bilin.truncate(m, rank=10)
        >>> t.hidden_units, round(t.accuracy, 4), round(t.full_accuracy, 4)
        (100, 0.9283, 0.9821)
    """
    from bilin_cli.truncation import (
        choose_ranks,
        class_spectra,
        rank_report,
        sweep_logits,
        truncated_tensors,
    )

    model = _model(model)
    if output is not None:
        from bilin_cli.storage.writing import check_checkpoint_target

        check_checkpoint_target(Path(output), force)
    spectra = class_spectra(model, dtype)
    ranks = choose_ranks(spectra, rank, energy)
    result = Truncation(
        ranks=np.asarray(ranks, dtype=np.int64),
        per_class=rank_report(spectra, ranks, model.output_names),
        tensors=truncated_tensors(model, spectra, ranks),
        augmented=bool(model.shapes[0].bias),
    )
    source = model.meta.get("source_path")
    config = model.meta.get("source_config", {})
    if evaluate:
        from bilin_cli.evaluation import model_logits, scores
        from bilin_cli.storage.data import default_data_path, load_dataset

        path = data if data is not None else (
            default_data_path(source, config) if source is not None else None)
        if path is not None:
            dataset = load_dataset(path, dtype)
            by_k = sweep_logits(model, spectra, dataset.x, set(ranks), dtype)
            logits = np.stack([by_k[k][:, c] for c, k in enumerate(ranks)], axis=1)
            result.accuracy = scores(logits, dataset.y)["accuracy"]
            result.full_accuracy = scores(model_logits(model, dataset, dtype),
                                          dataset.y)["accuracy"]
            result.n, result.data = int(dataset.y.size), dataset.source
        elif data is not None:
            raise BilinError("no data to evaluate on")
    if output is not None:
        from bilin_cli.storage.writing import save_checkpoint
        from bilin_cli.truncation import truncated_config

        cfg = truncated_config(config, source, ranks, rank, energy, result.augmented)
        result.output = str(save_checkpoint(Path(output), result.tensors, cfg, force))
    return result


# ----------------------------------------------------------------------- rank_features


@dataclass
class FeatureRanking:
    """Output-SAE features ranked by how low-rank ``Q(e_a)`` is (``bilin rank-features``).

    Arrays of length ``n`` (features ranked, most low-rank first): ``features`` (SAE
    indices), ``top_k_share`` (share of ``sum |lambda|`` in the top ``k``),
    ``effective_rank`` (``(sum|lambda|)^2 / sum lambda^2``), ``sum_abs_eigenvalues``;
    ``top_eigenvalues : (n, k)``, signed, ``|lambda|`` descending. ``rows`` are the
    records the CLI prints.
    """

    layer: int
    k: int
    sorted_by: str
    features: np.ndarray
    top_k_share: np.ndarray
    effective_rank: np.ndarray
    sum_abs_eigenvalues: np.ndarray
    top_eigenvalues: np.ndarray
    rows: list[dict] = field(default_factory=list)


def rank_features(
    model: BilinearModel | PathLike,
    sae,
    layer: int | None = None,
    k: int = 2,
    *,
    limit: int | None = None,
    top: int | None = None,
    sort: str = "top_k_share",
    workers: int | None = None,
    device: str | None = None,
    dtype: type = np.float32,
) -> FeatureRanking:
    """Rank every feature of an output SAE by the low-rankness of its ``Q`` (the paper's search).

    ``sae``: a path (paper or SAELens format) or a :func:`bilin_cli.storage.sae.load_sae` result;
    its encoder reads layer ``layer``'s output. ``limit``: rank only the first N features;
    ``top``: keep the N most low-rank; ``sort``: ``"top_k_share"`` (largest first) or
    ``"effective_rank"`` (smallest first); ``device``: a torch device for batched eigvalsh.

    Example::

        >>> s = bilin.load("sample_checkpoints/shakespeare")
        >>> r = bilin.rank_features(s, "sample_checkpoints/shakespeare/sae-mlp-out-L1", layer=1)
        >>> int(r.features[0]), round(float(r.top_k_share[0]), 4), r.top_eigenvalues.shape
        (395, 0.1352, (1024, 2))
    """
    from bilin_cli.features import rank_features as run

    if sort not in ("top_k_share", "effective_rank"):
        raise BilinError(f"sort must be top_k_share or effective_rank, got {sort!r}")
    if k < 1:
        raise BilinError(f"k must be a positive integer, got {k}")
    model = _model(model)
    index = model.resolve_layer(layer)
    L = model.layer(index, dtype)
    s_out = _sae(sae, dtype)
    s_out.check_reads(L.o, index)
    n = s_out.n_features if limit is None else min(limit, s_out.n_features)
    rows = run(L, s_out.enc, k, np.arange(n), workers=workers, device=device, sort_by=sort)
    rows = rows[:top]
    kk = min(k, L.d)
    return FeatureRanking(
        layer=index, k=k, sorted_by=sort,
        features=np.array([r["feature"] for r in rows], dtype=np.int64),
        top_k_share=np.array([r["top_k_share"] for r in rows]),
        effective_rank=np.array([r["effective_rank"] for r in rows]),
        sum_abs_eigenvalues=np.array([r["sum_abs_eigenvalues"] for r in rows]),
        top_eigenvalues=np.array([r["top_eigenvalues"] for r in rows]).reshape(len(rows), kk),
        rows=rows,
    )


# ----------------------------------------------------------------------- hosvd, explain


def hosvd(
    model: BilinearModel | PathLike,
    layer: int | None = None,
    components: int | None = 10,
    top: int = 5,
    basis: str = "auto",
    dtype: type = np.float32,
    *,
    method: str = "auto",
    max_memory_gb: float | None = None,
):
    """Higher-order SVD of a layer, ``B = sum_k sigma_k u_k (x) Q_k`` (``bilin hosvd``).

    Returns a :class:`~bilin_cli.hosvd.HOSVD`: ``sigma (K,)``, ``U (o, K)`` (column
    ``k-1`` says how much each output uses component ``k``), ``eigenvalues (K, top)`` and
    ``eigenvectors (K, top, dim)`` of each ``Q_k``, ``effective_ranks (K,)``,
    ``energy_share (K,)``. ``components=None`` keeps every nonzero one.

    Example::

        >>> h = bilin.hosvd(m, components=3, top=2)
        >>> h.sigma.shape, h.U.shape, h.eigenvectors.shape
        ((3,), (10, 3), (3, 2, 784))
    """
    from bilin_cli.hosvd import hosvd as run

    model = _model(model)
    return run(model, model.resolve_layer(layer), components, top, basis, dtype, method,
               max_memory_gb)


def explain(
    model: BilinearModel | PathLike,
    x: np.ndarray | str,
    classes: int = 3,
    dtype: type = np.float32,
):
    """Split the top ``classes`` logits for one input into eigen-contributions (``bilin explain``).

    ``x``: the input as the model reads it, ``(n_in,)`` (784 pixels in [0, 1] for the
    mnist sample), or a CLI input spec such as ``"data.npz:0"``. Returns an
    :class:`~bilin_cli.explain.Explanation`: ``logits (n_classes,)``, ``prediction``, and
    per class a :class:`~bilin_cli.explain.ClassExplanation` with ``eigenvalues (d,)``,
    ``projections (d,)`` and ``contributions (d,)`` = ``lambda_i (v_i . h)^2``, which with
    ``linear``, ``constant`` and ``skip`` sum to ``logit`` (``residual`` is the check).

    Example::

        >>> e = bilin.explain(m, "sample_checkpoints/data/mnist-test.npz:0")
        >>> e.prediction, e.classes[0].contributions.shape
        (7, (512,))
    """
    from bilin_cli.explain import Input, check_classifier, input_size, load_input
    from bilin_cli.explain import explain as run

    model = _model(model)
    check_classifier(model)
    if isinstance(x, str):
        inp = load_input(x, model, dtype)
    else:
        arr = np.asarray(x)
        n_in = input_size(model)
        if arr.ndim != 1 or arr.shape[0] != n_in or not np.issubdtype(arr.dtype, np.number):
            raise BilinError(f"input has shape {arr.shape}; this model reads {n_in} numbers")
        if not np.all(np.isfinite(arr)):
            raise BilinError("input contains NaN or infinity")
        inp = Input(arr.astype(dtype), {"kind": "array"})
    return run(model, inp, classes, dtype)

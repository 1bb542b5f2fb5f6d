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


def info(path: PathLike, map: dict | PathLike | None = None) -> dict:  # noqa: A002
    """What a checkpoint holds, from headers and config.json only (``bilin info``).

    Returns the ``bilin info --json`` document: ``layout``, ``kind``, ``layers`` (each
    with ``d``, ``h``, ``o``), ``dtype``, ``parameters``, ``outputs``... A checkpoint whose
    layout is not recognised is described tensor by tensor (``recognised: false``, with
    the reason) unless ``map`` was given, in which case the map's error is raised.

    Example::

        >>> doc = bilin.info("sample_checkpoints/mnist")
        >>> doc["layout"], [(L["d"], L["h"], L["o"]) for L in doc["layers"]]
        ('image classifier', [(512, 512, 10)])
    """
    from bilin_cli.storage.containers import open_checkpoint
    from bilin_cli.storage.layouts import recognise
    from bilin_cli.storage.maps import read_map
    from bilin_cli.storage.summary import describe, describe_unrecognised

    checkpoint = open_checkpoint(path)
    try:
        mapping = map if map is None or isinstance(map, dict) else read_map(map)
        model = recognise(checkpoint, mapping)
    except BilinError as exc:
        if map is not None:
            raise
        return describe_unrecognised(checkpoint, str(exc))
    return describe(checkpoint, model)


def suggest_map(path: PathLike) -> tuple[dict, list[str]]:
    """A ready-to-edit map for a checkpoint (``bilin info --suggest-map``).

    Returns ``(mapping, ambiguous)``: the roles found (the JSON object the CLI prints,
    which :func:`load` takes as ``map=``) and the ambiguities to settle in it by hand.
    """
    from bilin_cli.storage.containers import open_checkpoint
    from bilin_cli.storage.layouts import suggest_map as suggest

    return suggest(open_checkpoint(path))


def _dataset(model: BilinearModel, data: PathLike | None, dtype: type):
    """Labelled data: ``data``, else a shipped sample's own test split (an error if none)."""
    from bilin_cli.storage.data import default_data_path, load_dataset

    source = model.meta.get("source_path")
    path = data if data is not None else (
        default_data_path(source, model.meta.get("source_config", {}))
        if source is not None else None)
    if path is None:
        raise BilinError("no data: give --data FILE.npz (arrays x, y) or an idx directory")
    return load_dataset(path, dtype)


# -------------------------------------------------------------------------- directions


class _Every:
    """``"all"``: every index there is (resolved by :mod:`bilin_cli.directions`)."""

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
    :func:`bilin_cli.directions.chosen`; token texts go to ``token_texts``."""
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
    info = {"kind": "array", "norm": float(np.linalg.norm(u))}
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
    :class:`~bilin_cli.directions.Direction`, or a list of
    them. ``sae`` (a path or a :func:`~bilin_cli.storage.sae.load_sae` result) goes with
    ``feature``. Returns :class:`~bilin_cli.directions.Direction` objects (``u (o,)``,
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
    u = _one_direction(model, index, dtype, cls=cls, token=token, direction=direction, sae=sae,
                       feature=feature)
    tokens = token_reading(model, tokens)
    dec = decompose(model, index, u, top=top, basis=basis, dtype=dtype, method=method)
    _note_top(dec, top)
    if tokens:
        from bilin_cli.token_reading import NOTE, read_as_tokens

        dec.tokens = read_as_tokens(model, index, dec.eigenvectors, tokens)
        dec.notes.append(NOTE)
    return dec


def token_reading(model: BilinearModel, tokens: int | None, chain: int | None = None) -> int:
    """How many tokens :func:`eig` reads each eigenvector as: ``tokens``, or by default 5
    on a language model with a token embedding (0 with ``chain``); an error where the
    model has no token embedding to read through."""
    if tokens and (model.kind != "lm" or model.embed_key is None):
        raise BilinError(f"--tokens reads eigenvectors through a language model's token "
                         f"embedding; this {model.layout} has none")
    if tokens and chain is not None:
        raise BilinError("--tokens and --chain do not combine; read one layer at a time")
    if tokens is None:
        return 5 if model.kind == "lm" and model.embed_key and chain is None else 0
    return tokens


def _note_top(dec: Decomposition, k: int | None) -> None:
    """Say so when ``top`` asked for more eigenpairs than the matrix has (never silent)."""
    if k is not None and k > dec.n_eigenvalues:
        dec.notes.append(f"--top {k} asked for more eigenpairs than the {dec.n_eigenvalues} "
                         f"of layer {dec.layer}; all {dec.n_eigenvalues} are kept")


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
    :class:`~bilin_cli.decompose.Decomposition` per layer, from ``layer`` down to 0, each
    with its ``top`` eigenpairs.
    """
    from bilin_cli.decompose import chain as run

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
    from bilin_cli.decompose import spectra

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
    return Spectra(index, lam, [d.info for d in dirs], doc["directions"], model.layout)


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

    def as_dict(self) -> dict:
        """The ``--json`` document of ``bilin truncate`` (with the accuracies, if measured)."""
        doc = {"output": self.output, "hidden_units": self.hidden_units,
               "per_class": self.per_class, "augmented": self.augmented,
               "bound": "|logit_c - truncated logit_c| <= max_discarded_abs_eigenvalue_c * "
                        "||x||^2"}
        if self.accuracy is not None:
            doc.update({"accuracy": self.accuracy, "full_accuracy": self.full_accuracy,
                        "n": self.n, "data": self.data})
        return doc


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
    advance=None,
) -> Truncation:
    """Keep each class's ``rank`` eigenpairs of largest ``|lambda|`` (``bilin truncate``).

    Give ``rank`` (the same K for every class) or ``energy`` (per class, the smallest K
    holding that share of ``sum |lambda|``). With ``evaluate`` the truncated model's
    accuracy is measured on ``data`` (an ``.npz`` with ``x``, ``y`` or an idx directory;
    default: a shipped sample's own test split, if there is one). ``output`` writes it as
    an ordinary checkpoint (``.safetensors`` file or directory), as ``-o`` does.
    Single-layer, non-residual classifiers only. ``advance`` (optional) is called once per
    class eigendecomposed. :func:`truncation_sweep` measures many ranks at once.

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
    spectra = class_spectra(model, dtype, advance)
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


@dataclass
class Sweep:
    """Accuracy of the rank-K truncated classifier for many K (``bilin truncate --sweep``).

    ``ks (n,)`` ascending, ``accuracy (n,)`` and ``drop (n,)`` (``full_accuracy - accuracy``)
    on ``n_examples`` labelled examples from ``data``.
    """

    ks: np.ndarray
    accuracy: np.ndarray
    drop: np.ndarray
    full_accuracy: float
    n_examples: int
    data: str
    augmented: bool
    rows: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        """The ``--json`` document of ``bilin truncate --sweep``."""
        return {"full_accuracy": self.full_accuracy, "n": self.n_examples, "data": self.data,
                "sweep": self.rows, "augmented": self.augmented}


def truncation_sweep(
    model: BilinearModel | PathLike,
    ks: Sequence[int],
    *,
    data: PathLike | None = None,
    dtype: type = np.float32,
    progress=None,
) -> Sweep:
    """Accuracy versus eigenpairs kept per class, one eigendecomposition per class.

    ``ks``: the ranks to measure (each >= 0); ``data`` as for :func:`truncate` (an error if
    there is none). ``progress`` (optional): ``progress(label, total)`` returns a context
    manager that yields a function called once per step (the CLI's progress bars).

    Example::

        >>> s = bilin.truncation_sweep(m, [0, 5, 10])
        >>> s.ks.tolist(), s.accuracy.round(4).tolist(), s.full_accuracy
        ([0, 5, 10], [0.098, 0.7064, 0.9283], 0.9821)
    """
    from bilin_cli.truncation import accuracy_sweep, class_spectra

    model = _model(model)
    n_cls = model.shapes[-1].o
    with _stage(progress, "eigendecomposing classes", n_cls) as advance:
        spectra = class_spectra(model, dtype, advance)
    dataset = _dataset(model, data, dtype)
    with _stage(progress, "sweeping ranks", n_cls) as advance:
        doc = accuracy_sweep(model, spectra, dataset, ks, dtype, advance)
    rows = doc["sweep"]
    return Sweep(
        ks=np.array([r["k"] for r in rows]),  # no fixed dtype: a K may exceed int64
        accuracy=np.array([r["accuracy"] for r in rows], dtype=np.float64),
        drop=np.array([r["drop"] for r in rows], dtype=np.float64),
        full_accuracy=doc["full_accuracy"], n_examples=doc["n"], data=doc["data"],
        augmented=doc["augmented"], rows=rows,
    )


def _stage(progress, label: str, total: int):
    """``progress(label, total)`` if given, else a context yielding ``None`` (no bar)."""
    from contextlib import nullcontext

    return nullcontext() if progress is None else progress(label, total)


# ---------------------------------------------------------------------------- evaluate


@dataclass
class Evaluation:
    """Accuracy of a classifier on labelled data (``bilin eval``).

    ``accuracy`` over ``n`` examples, ``per_class`` rows (``class``, ``name``, ``n``,
    ``accuracy``), ``confusion (C, C)``: row = true class, column = prediction.
    """

    accuracy: float | None
    n: int
    per_class: list[dict]
    confusion: np.ndarray
    data: str

    def as_dict(self, confusion: bool = True) -> dict:
        """The ``--json`` document of ``bilin eval`` (``--confusion`` adds the matrix)."""
        doc = {"accuracy": self.accuracy, "n": self.n, "per_class": self.per_class}
        if confusion:
            doc["confusion"] = self.confusion.tolist()
        doc["data"] = self.data
        return doc


def evaluate(
    model: BilinearModel | PathLike,
    data: PathLike | None = None,
    dtype: type = np.float32,
) -> Evaluation:
    """Accuracy, per class and overall, of a classifier on labelled data (``bilin eval``).

    ``data``: an ``.npz`` with ``x``, ``y`` (uint8 images scaled by 1/255) or an idx
    directory; default: a shipped sample's own test split.

    Example::

        >>> e = bilin.evaluate(m)
        >>> e.accuracy, e.n, e.confusion.shape
        (0.9821, 10000, (10, 10))
    """
    from bilin_cli.evaluation import model_logits, scores

    model = _model(model)
    dataset = _dataset(model, data, dtype)
    doc = scores(model_logits(model, dataset, dtype), dataset.y, model.output_names)
    return Evaluation(doc["accuracy"], doc["n"], doc["per_class"],
                      np.asarray(doc["confusion"], dtype=np.int64), dataset.source)


# ----------------------------------------------------------------------- rank_features


@dataclass
class FeatureRanking:
    """Output-SAE features ranked by how low-rank ``Q(e_a)`` is (``bilin rank-features``).

    Arrays of length ``n`` (features ranked, most low-rank first): ``features`` (SAE
    indices), ``top_eigenvalues : (n, k)``, signed, ``|lambda|`` descending, and the
    measure's own arrays. ``measure`` ``"top_k_share"`` / ``"effective_rank"`` (the paper's,
    every ``Q`` built): ``top_k_share`` (share of ``sum |lambda|`` in the top ``k``),
    ``effective_rank`` (``(sum|lambda|)^2 / sum lambda^2``), ``sum_abs_eigenvalues``.
    ``measure`` ``"sq_top_k_share"`` (the route at scale, ``top`` features only):
    ``sq_top_k_share`` (share of ``sum lambda^2`` in the top ``k``), ``sum_sq_eigenvalues``,
    and ``certificate`` (how the other features were ruled out, with the failure
    probability). ``rows`` are the records the CLI prints.
    """

    layer: int
    k: int
    sorted_by: str
    features: np.ndarray
    top_k_share: np.ndarray | None
    effective_rank: np.ndarray | None
    sum_abs_eigenvalues: np.ndarray | None
    top_eigenvalues: np.ndarray
    rows: list[dict] = field(default_factory=list)
    measure: str = "top_k_share"
    sq_top_k_share: np.ndarray | None = None
    sum_sq_eigenvalues: np.ndarray | None = None
    certificate: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    features_ranked: int = 0


def rank_features(
    model: BilinearModel | PathLike,
    sae,
    layer: int | None = None,
    k: int = 2,
    *,
    limit: int | None = None,
    features: Sequence[int] | np.ndarray | None = None,
    top: int | None = None,
    sort: str = "top_k_share",
    measure: str = "auto",
    workers: int | None = None,
    device: str | None = None,
    dtype: type = np.float32,
    sharded: bool = False,
    advance=None,
) -> FeatureRanking:
    """Rank every feature of an output SAE by the low-rankness of its ``Q`` (the paper's search).

    ``sae``: a path (paper or SAELens format) or a :func:`bilin_cli.storage.sae.load_sae` result;
    its encoder reads layer ``layer``'s output. ``limit``: rank only the first N features
    (``features``: exactly these SAE indices instead); ``top``: keep the N most low-rank;
    ``sort``: ``"top_k_share"`` (largest first) or ``"effective_rank"`` (smallest first);
    ``measure``: ``"auto"`` (``"sq_top_k_share"`` with ``top`` on a large layer, else the
    paper's), ``"top_k_share"``, ``"effective_rank"`` (the paper's, sorted by it) or
    ``"sq_top_k_share"`` (needs ``top`` to be fast); ``device``: a torch device for batched
    eigvalsh or the Lanczos products; ``sharded``: this call is one shard of a larger job
    (``auto`` then keeps the paper's measure); ``advance(n)``: progress callback.

    Example::

        >>> s = bilin.load("sample_checkpoints/shakespeare")
        >>> r = bilin.rank_features(s, "sample_checkpoints/shakespeare/sae-mlp-out-L1", layer=1)
        >>> int(r.features[0]), round(float(r.top_k_share[0]), 4), r.top_eigenvalues.shape
        (395, 0.1352, (1024, 2))
    """
    from bilin_cli.features import rank_features as run
    from bilin_cli.lowrank_search import auto_measure, rank_sq_share

    if sort not in ("top_k_share", "effective_rank"):
        raise BilinError(f"sort must be top_k_share or effective_rank, got {sort!r}")
    if measure not in ("auto", "top_k_share", "effective_rank", "sq_top_k_share"):
        raise BilinError("measure must be auto, top_k_share, effective_rank or "
                         f"sq_top_k_share, got {measure!r}")
    if k < 1:
        raise BilinError(f"k must be a positive integer, got {k}")
    model = _model(model)
    index = model.resolve_layer(layer)
    L = model.layer(index, dtype)
    s_out = _sae(sae, dtype)
    s_out.check_reads(L.o, index)
    if features is None:
        n = s_out.n_features if limit is None else min(limit, s_out.n_features)
        features = np.arange(n)
    features = np.asarray(features, dtype=np.int64)
    kk = min(k, L.d)
    notes: list[str] = []
    if measure == "auto":
        measure = auto_measure(L, len(features), top, sharded)
        if measure == "sq_top_k_share":
            notes.append("measure: sq_top_k_share, chosen for a layer this large with --top "
                         "(pass --measure top_k_share for the paper's exact sum|lambda| share; "
                         "it builds every Q)")
    if measure == "sq_top_k_share":
        if sharded:
            raise BilinError("sq_top_k_share screens every feature at once; shard "
                             "top_k_share or effective_rank")
        res = rank_sq_share(L, s_out.enc, k, features, top=top, device=device,
                            advance=advance)
        rows = res.rows
        return FeatureRanking(
            layer=index, k=k, sorted_by=measure, measure=measure,
            features=np.array([r["feature"] for r in rows], dtype=np.int64),
            top_k_share=None, effective_rank=None, sum_abs_eigenvalues=None,
            top_eigenvalues=np.array([r["top_eigenvalues"] for r in rows]).reshape(len(rows), kk),
            sq_top_k_share=np.array([r["sq_top_k_share"] for r in rows]),
            sum_sq_eigenvalues=np.array([r["sum_sq_eigenvalues"] for r in rows]),
            rows=rows, certificate=res.certificate, notes=notes,
            features_ranked=len(features),
        )
    if measure == "effective_rank":
        sort = "effective_rank"
    rows = run(L, s_out.enc, k, features, workers=workers, device=device, sort_by=sort,
               advance=advance)
    ranked = len(rows)
    rows = rows[:top]
    return FeatureRanking(
        layer=index, k=k, sorted_by=sort, measure=measure,
        features=np.array([r["feature"] for r in rows], dtype=np.int64),
        top_k_share=np.array([r["top_k_share"] for r in rows]),
        effective_rank=np.array([r["effective_rank"] for r in rows]),
        sum_abs_eigenvalues=np.array([r["sum_abs_eigenvalues"] for r in rows]),
        top_eigenvalues=np.array([r["top_eigenvalues"] for r in rows]).reshape(len(rows), kk),
        rows=rows, notes=notes, features_ranked=ranked,
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


# ----------------------------------------------------------------------------- compare


@dataclass
class Comparison:
    """How alike two classifiers' features are, per class (``bilin compare``).

    Arrays over the ``n`` classes compared: ``classes``, ``rank_matched_mean`` (mean
    ``|cos|`` of the i-th eigenvectors), ``hungarian_mean`` (after Hungarian matching of
    the top ``top_k``) and ``qfs`` (Quadratic Form Similarity of the top-k forms; NaN where
    undefined). ``rows`` are the per-class records (with ``rank_matched`` and the
    ``hungarian`` pairs ``[i, j, |cos|]``, ranks from 1), ``mean`` their means; ``space``
    is ``"input"`` (pixels) or ``"hidden"``.
    """

    space: str
    top_k: int
    classes: np.ndarray
    rank_matched_mean: np.ndarray
    hungarian_mean: np.ndarray
    qfs: np.ndarray
    rows: list[dict]
    mean: dict
    doc: dict = field(repr=False, default_factory=dict)

    def as_dict(self) -> dict:
        """The ``--json`` document of ``bilin compare``."""
        return self.doc


def compare(
    a: BilinearModel | PathLike,
    b: BilinearModel | PathLike,
    cls: int | Sequence[int] | None = None,
    top: int = 10,
    basis: str = "auto",
    dtype: type = np.float32,
    *,
    advance=None,
) -> Comparison:
    """Compare two classifiers class by class (e.g. two training seeds; ``bilin compare``).

    ``cls``: the classes (default: all); ``top``: the eigenpairs of largest ``|lambda|``
    compared (all, with a note, when there are fewer); ``basis``: ``"input"`` (pixels, where
    both embed inputs of one size), ``"hidden"`` (needs equal ``d``) or ``"auto"``.
    ``advance`` (optional) is called once per class.

    Example::

        >>> c = bilin.compare(m, m, cls=3, top=5)
        >>> c.space, c.qfs.round(4).tolist(), c.hungarian_mean.round(4).tolist()
        ('input', [1.0], [1.0])
    """
    from bilin_cli.similarity import compare as run

    ma, mb = _model(a), _model(b)
    classes = None if cls is None else [int(c) for c in _items(cls)]
    doc = run(ma, mb, classes or None, top, basis, dtype, advance)
    doc = {"a": str(ma.meta.get("source_path", a)), "b": str(mb.meta.get("source_path", b)),
           **doc}
    if top > doc["top_k"]:
        doc["notes"].append(f"--top {top} asked for more eigenpairs than there are; all "
                            f"{doc['top_k']} are compared")
    rows = doc["classes"]

    def column(key):
        return np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=np.float64)

    return Comparison(
        space=doc["space"], top_k=doc["top_k"],
        classes=np.array([r["class"] for r in rows], dtype=np.int64),
        rank_matched_mean=column("rank_matched_mean"), hungarian_mean=column("hungarian_mean"),
        qfs=column("qfs"), rows=rows, mean=doc["mean"], doc=doc,
    )


# ---------------------------------------------------------------------------- interact


@dataclass
class Interaction:
    """Input-SAE feature interactions of one output-SAE feature, ``D^T Q D`` (``bilin interact``).

    ``eigenvalues (d,)``: ``Q``'s spectrum, ``|lambda|`` descending; ``pairs``: the top
    ``self`` (``z_i^2``) and ``cross`` (``z_i z_j``) interactions; ``eigen``: the top
    eigenvectors as their largest input-feature loadings ``D^T v`` (rank from 1).
    """

    layer: int
    feature: int
    sae_in: str
    sae_out: str
    n_input_features: int
    eigenvalues: np.ndarray
    effective_rank: float
    pairs: dict
    eigen: list[dict]
    notes: list[str]

    def as_dict(self) -> dict:
        """The ``--json`` document of ``bilin interact``."""
        return {"layer": self.layer, "feature": self.feature, "sae_in": self.sae_in,
                "sae_out": self.sae_out, "n_input_features": self.n_input_features,
                "n_eigenvalues": int(self.eigenvalues.size),
                "effective_rank": self.effective_rank, "pairs": self.pairs,
                "eigen": self.eigen, "notes": self.notes}


def interact(
    model: BilinearModel | PathLike,
    sae_in,
    sae_out,
    feature: int,
    layer: int | None = None,
    top: int = 10,
    eig: int = 3,
    features_per_eig: int = 5,
    dtype: type = np.float32,
) -> Interaction:
    """How the input SAE's features interact to drive output-SAE feature ``feature``.

    ``Q`` is the interaction matrix of ``sae_out``'s encoder row ``feature``; ``D`` holds
    ``sae_in``'s decoder columns (each a path or a :func:`~bilin_cli.storage.sae.load_sae`
    result). ``top``: pairs of each kind; ``eig``: eigenvectors expressed in features,
    ``features_per_eig`` input features each. ``D^T Q D`` is streamed in blocks.

    Example::

        >>> s = bilin.load("sample_checkpoints/shakespeare")
        >>> sae = "sample_checkpoints/shakespeare/sae-mlp-"
        >>> i = bilin.interact(s, sae + "in-L1", sae + "out-L1", feature=395, layer=1, top=2)
        >>> i.eigenvalues.shape, len(i.pairs["self"]), len(i.eigen)
        ((128,), 2, 3)
    """
    from bilin_cli.features import eigen_in_features, top_pairs
    from bilin_cli.interaction import interaction
    from bilin_cli.spectra import effective_rank, eigenvalues

    model = _model(model)
    index = model.resolve_layer(layer)
    L = model.layer(index, dtype)
    s_in, s_out = _sae(sae_in, dtype), _sae(sae_out, dtype)
    name_in = str(sae_in) if isinstance(sae_in, (str, os.PathLike)) else s_in.path
    name_out = str(sae_out) if isinstance(sae_out, (str, os.PathLike)) else s_out.path
    if s_in.d != L.d:
        raise BilinError(f"{name_in}: the input SAE reads {s_in.d} dimensions, layer {index} "
                         f"takes {L.d}")
    u = _dirs.from_sae_feature(model, index, s_out, feature, dtype)
    Q = interaction(L, u.u).Q
    lam = eigenvalues(Q)
    return Interaction(
        layer=index, feature=feature, sae_in=name_in, sae_out=name_out,
        n_input_features=s_in.n_features, eigenvalues=lam, effective_rank=effective_rank(lam),
        pairs=top_pairs(Q, s_in.dec, top), eigen=eigen_in_features(Q, s_in.dec, eig,
                                                                    features_per_eig),
        notes=u.notes,
    )


# ------------------------------------------------------------------------- adversarial


@dataclass
class Adversarial:
    """Adversarial masks built from eigenvectors alone (``bilin adversarial``).

    ``masks``: one :class:`~bilin_cli.adversarial.Mask` per target (``pixel (n_in,)``, unit
    std, add ``strength * pixel`` to an input; ``baseline``: its pixels permuted;
    ``excitation``, ``leak``, ``eig_rank``...). ``doc`` (``as_dict()``) is the ``--json``
    document: per strength (or pixel count) the accuracy and the rate at which other-class
    inputs go to the target, for the mask and its baseline (``rows``; their mean over
    targets with ``target="all"``), or with ``input`` the old and new logits of that one
    input. ``stack`` holds the stacked eigenvectors ``S (n_stacked, d)``, ``directions``
    the masks' directions before sign and scale ``(n_stacked, n_in)``, ``region`` the
    pixels a mask may use ``(n_in,)``.
    """

    targets: list[int]
    masks: list
    strengths: list[float]
    n_pixels: list[int] | None
    doc: dict
    stack: object
    directions: np.ndarray
    region: np.ndarray
    image_shape: tuple[int, ...] | None
    dataset: object
    input: object | None = None

    def as_dict(self) -> dict:
        """The ``--json`` document of ``bilin adversarial``."""
        return self.doc


def _adv_target(text, n_cls: int, names: list[str] | None) -> list[int] | None:
    """``None`` for ``all``, else ``[c]`` from an index or a class name."""
    if isinstance(text, (int, np.integer)):
        text = str(int(text))
    if text.strip().lower() == "all":
        return None
    try:
        c = int(text)
    except ValueError:
        if names and text in names:
            return [names.index(text)]
        known = f" or one of {', '.join(names)}" if names else ""
        raise BilinError(f"--target {text!r}: give a class index 0..{n_cls - 1}{known}, "
                         "or all") from None
    if not 0 <= c < n_cls:
        raise BilinError(f"class {c} is out of range: this model has {n_cls} classes "
                         f"(0..{n_cls - 1})")
    return [c]


def _mask_fields(m, stack) -> dict:
    """What one mask reports about itself (JSON keys; eigenvectors ranked from 1)."""
    return {"eigenvalue": float(stack.eigenvalues[m.index]), "sign": m.sign,
            "excitation": m.excitation, "efficiency": m.efficiency, "leak": m.leak,
            "leak_class": m.leak_class, "leak_eig": m.leak_eig, "eig_rank": m.eig_rank,
            "leak_eig_rank": m.leak_eig_rank}


def adversarial_masks(
    model: BilinearModel | PathLike,
    target: int | str = "all",
    eig: int = 1,
    per_class: int | None = None,
    variant: str = "dense",
    inverse: str = "hidden",
    strength: float | Sequence[float] | None = None,
    n_pixels: int | Sequence[int] | None = None,
    *,
    input: str | None = None,  # noqa: A002
    data: PathLike | None = None,
    seed: int = 0,
    dtype: type = np.float32,
    check=None,
    progress=None,
) -> Adversarial:
    """Masks from eigenvectors that push inputs of other classes to ``target`` (paper §4.4).

    The top ``per_class`` (default ``eig``) positive eigenvectors of every class are stacked
    as the rows of ``S``; the mask for ``target`` excites its eigenvector ``eig`` (1 = top):
    ``p = E^T pinv(S) e_j`` (``inverse="hidden"``, the paper's) or ``pinv(S E) e_j``
    (``"pixel"``). ``variant``: ``"dense"``, ``"edge"`` (pixels lit in under 1% of the
    images) or ``"top-pixels"`` (the ``n_pixels`` largest mask pixels at one ``strength``,
    inputs clamped to [0, 1]). ``strength`` / ``n_pixels``: one value or a sweep (default
    the CLI's sweep; with ``input``, its last value). ``target``: a class index, a class
    name or ``"all"``. ``data`` (default: a shipped sample's test split) fixes the sign, the
    edge pixels and the metrics; ``input`` (``"DATA.npz:INDEX"`` or a PNG) perturbs one
    input instead. ``check(targets, image_shape)`` (optional) runs before any
    eigendecomposition; ``progress`` as in :func:`truncation_sweep`.

    Example::

        >>> a = bilin.adversarial_masks(m, target="all", strength=0.3)
        >>> mean = a.doc["rows"][0]
        >>> round(mean["accuracy"], 4), round(mean["target_rate"], 4)
        (0.1622, 0.9066)
    """
    from bilin_cli import adversarial as adv
    from bilin_cli.render.printable import printable
    from bilin_cli.storage.data import check_fits, default_data_path

    per_class = eig if per_class is None else per_class
    if per_class < eig:
        raise BilinError(f"--eig {eig} needs --per-class >= {eig} (got {per_class}): the "
                         "eigenvector must be in the stack")
    strengths = [float(s) for s in _items(strength)] or None
    pixels = [int(n) for n in _items(n_pixels)] or None
    if variant != "top-pixels":
        if pixels is not None:
            raise BilinError("n_pixels goes with variant='top-pixels'")
        default = adv.EDGE_SWEEP if variant == "edge" else adv.DENSE_SWEEP
        if strengths is None:
            strengths = [default[-1]] if input is not None else list(default)
    else:
        strengths = strengths[:1] if strengths else [adv.TOP_PIXELS_STRENGTH]
        if pixels is None:
            sweep = adv.TOP_PIXELS_SWEEP
            pixels = [sweep[-1]] if input is not None else list(sweep)
    model = _model(model)
    adv.check_supported(model)
    n_cls = model.shapes[-1].o
    names = model.output_names or [str(c) for c in range(n_cls)]
    chosen = _adv_target(target, n_cls, model.output_names)
    targets = list(range(n_cls)) if chosen is None else chosen
    n_in = model.embed_shape[1] if model.embed_key else model.shapes[0].d
    if pixels is not None and max(pixels) > n_in:
        raise BilinError(f"--pixels {max(pixels)} exceeds the {n_in} input pixels")
    one = None
    if input is not None:
        one = adv.load_input(input, dtype, n_in)
        if one.x.size != n_in:
            raise BilinError(f"--input {printable(input, 80)}: {one.x.size} pixels, the model "
                             f"takes {n_in}")
        # Data for the sign and the metrics: data, else the checkpoint's own split, else
        # the file the input came from.
        source = model.meta.get("source_path")
        if data is None and one.data and (source is None or default_data_path(
                source, model.meta.get("source_config", {})) is None):
            data = Path(one.data)
    dataset = _dataset(model, data, dtype)
    check_fits(dataset, n_in, n_cls)
    shape = None
    for candidate in (dataset.image_shape, model.input_shape, one.shape if one else None):
        if candidate and int(np.prod(candidate)) == n_in:
            shape = tuple(int(s) for s in candidate)
            break
    if check is not None:
        check(targets, shape)

    with _stage(progress, "eigendecomposing classes", n_cls) as advance:
        stack = adv.eigen_stack(model, per_class, advance)
    E = adv.embedding(model)
    region = (adv.edge_region(dataset.x) if variant == "edge" else np.ones(n_in, dtype=bool))
    if not region.any():
        raise BilinError(f"no edge pixels: every pixel is lit in at least "
                         f"{adv.EDGE_SHARE:.0%} of the images")
    directions, cond = adv.mask_directions(stack, E, inverse, region)
    masks = [adv.build_mask(stack, E, directions, dataset.x, dataset.y, t, eig, variant, region,
                            seed) for t in targets]
    where = "" if variant != "edge" else "[:, edge]"
    common = {
        "eig": eig, "per_class": per_class, "variant": variant, "inverse": inverse,
        "stacked": int(stack.S.shape[0]), "region_pixels": int(region.sum()),
        "edge_share": adv.EDGE_SHARE,
        "projection": (f"p = E{where}^T pinv(S) e_j" if inverse == "hidden"
                       else f"p = pinv(S E{where}) e_j (S E p = e_j)")
        + "; sign by overlap with other classes' images; unit std over all pixels x strength",
        "conditioning": cond,
        "baseline": f"mask pixels permuted within the variant's pixels (seed {seed})",
    }
    result = Adversarial(targets, masks, strengths, pixels, {}, stack, directions, region,
                         shape, dataset, one)
    if one is not None:
        s, n = strengths[0], pixels[0] if pixels else None
        results = []
        for m in masks:
            logits = adv.input_logits(model, one.x, m, s, n, dtype)
            results.append({"target": m.target, "target_name": names[m.target],
                            **_mask_fields(m, stack),
                            **{k: {"prediction": int(np.argmax(v)), "logits": v.tolist()}
                               for k, v in logits.items()}})
        doc = {"input": input, "label": one.label,
               "target": "all" if chosen is None else masks[0].target, **common,
               "strength": s, "n_pixels": n, "class_names": names, "old": results[0]["old"]}
        if chosen is None:
            doc["targets"] = [{k: v for k, v in r.items() if k != "old"} for r in results]
        else:
            doc.update({k: v for k, v in results[0].items() if k not in ("target", "old")})
        result.doc = doc
        return result

    cache = adv.layer_cache(model, dataset.x, dtype)
    clean = adv.clean_rates(model, cache, dataset.y, targets)
    per_target = []
    with _stage(progress, "evaluating masks", len(masks) * len(pixels or strengths)) as advance:
        for m in masks:
            rows = adv.sweep(model, cache, dataset.x, dataset.y, m, strengths, pixels, advance)
            per_target.append({
                "target": m.target, "target_name": names[m.target], **_mask_fields(m, stack),
                "clean_target_rate": clean[m.target][1], "rows": rows,
            })
    doc = {"target": "all" if chosen is None else targets[0], **common,
           "data": dataset.source, "n": int(dataset.y.size),
           "clean_accuracy": clean[targets[0]][0],
           "swept": "n_pixels" if pixels is not None else "strength"}
    if pixels is not None:
        doc["strength"] = strengths[0]
    if chosen is None:
        doc["rows"] = adv.mean_rows([t["rows"] for t in per_target])
        doc["per_target"] = per_target
    else:
        doc.update({k: v for k, v in per_target[0].items() if k != "target"})
    result.doc = doc
    return result

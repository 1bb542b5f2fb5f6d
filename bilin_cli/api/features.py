"""Features: ``rank_features``, ``hosvd``, ``explain``, ``compare``, ``interact``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bilin_cli.analyses import directions as _dirs
from bilin_cli.api._overflow import float64_on_overflow
from bilin_cli.api._types import PathLike
from bilin_cli.api.directions import _items, _sae
from bilin_cli.api.loading import _model
from bilin_cli.core.errors import BilinError, option
from bilin_cli.model.bilinear import BilinearModel
from bilin_cli.model.spectra import top_note

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
    route: str = "dense"  # how: every Q built ("dense"), or "certified" by Lanczos bounds


@float64_on_overflow("the features' interaction matrices", "model")
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
    measure: str = "top_k_share",
    workers: int | None = None,
    device: str | None = None,
    dtype: type = np.float32,
    sharded: bool = False,
    advance=None,
    route: str = "auto",
) -> FeatureRanking:
    """Rank every feature of an output SAE by the low-rankness of its ``Q`` (the paper's search).

    ``sae``: a path (paper or SAELens format) or a :func:`bilin_cli.storage.sae.load_sae` result;
    its encoder reads layer ``layer``'s output. ``limit``: rank only the first N features
    (``features``: exactly these SAE indices instead); ``top``: keep the N most low-rank;
    ``sort``: ``"top_k_share"`` (largest first) or ``"effective_rank"`` (smallest first).
    ``measure`` says *what* is ranked: ``"top_k_share"`` (the paper's: the share of
    ``sum |lambda|`` in the top ``k``; the default at every layer size), ``"effective_rank"``
    (the paper's, sorted by it) or ``"sq_top_k_share"`` (the share of ``sum lambda^2``, only
    when asked). ``route`` says *how*, and bilin chooses by itself with ``"auto"``:
    ``"dense"`` (every ``Q`` built, eigenvalues batched) or ``"certified"`` (with ``top`` on a
    large layer: Lanczos bounds rule out the features below the ``top``-th exact value,
    which the ``certificate`` states; every reported number is still the dense one).
    ``device``: a torch device for batched eigvalsh or the Lanczos products; ``sharded``:
    this call is one shard of a larger job (dense only); ``advance(n)``: progress callback.

    Example::

        >>> s = bilin.load("sample_checkpoints/shakespeare")
        >>> r = bilin.rank_features(s, "sample_checkpoints/shakespeare/sae-mlp-out-L1", layer=1)
        >>> int(r.features[0]), round(float(r.top_k_share[0]), 4), r.top_eigenvalues.shape
        (395, 0.1352, (1024, 2))
    """
    from bilin_cli.analyses.features import rank_features as run
    from bilin_cli.analyses.lowrank_search import auto_route, rank_abs_share, rank_sq_share

    if sort not in ("top_k_share", "effective_rank"):
        raise BilinError(f"sort must be top_k_share or effective_rank, got {sort!r}")
    notes: list[str] = []
    if measure == "auto":
        measure = "top_k_share"
        notes.append("measure 'auto' is deprecated and means top_k_share (the paper's measure) "
                     "at every layer size; the route (dense or certified) is chosen by itself")
    if measure not in ("top_k_share", "effective_rank", "sq_top_k_share"):
        raise BilinError("measure must be top_k_share, effective_rank or sq_top_k_share, got "
                         f"{measure!r}")
    if route not in ("auto", "dense", "certified"):
        raise BilinError(f"route must be auto, dense or certified, got {route!r}")
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
    if measure == "effective_rank":
        sort = "effective_rank"
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
            features_ranked=len(features), route="certified" if top else "dense",
        )
    if route == "auto":
        route = auto_route(L, len(features), top, sharded)
    if route == "certified":
        if sharded or top is None:
            raise BilinError(f"the certified route needs {option('--top N', 'top=N')} and no "
                             f"{option('--shard', 'shard')}")
        res = rank_abs_share(L, s_out.enc, k, features, top=top, sort_by=sort, device=device,
                             advance=advance)
        rows, certificate, ranked = res.rows, res.certificate, len(features)
    else:
        rows = run(L, s_out.enc, k, features, workers=workers, device=device, sort_by=sort,
                   advance=advance)
        ranked, certificate = len(rows), {}
        rows = rows[:top]
    return FeatureRanking(
        layer=index, k=k, sorted_by=sort, measure=measure,
        features=np.array([r["feature"] for r in rows], dtype=np.int64),
        top_k_share=np.array([r["top_k_share"] for r in rows]),
        effective_rank=np.array([r["effective_rank"] for r in rows]),
        sum_abs_eigenvalues=np.array([r["sum_abs_eigenvalues"] for r in rows]),
        top_eigenvalues=np.array([r["top_eigenvalues"] for r in rows]).reshape(len(rows), kk),
        rows=rows, notes=notes, features_ranked=ranked, certificate=certificate, route=route,
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

    Returns a :class:`~bilin_cli.analyses.hosvd.HOSVD`: ``sigma (K,)``, ``U (o, K)`` (column
    ``k-1`` says how much each output uses component ``k``), ``eigenvalues (K, top)`` and
    ``eigenvectors (K, top, dim)`` of each ``Q_k``, ``effective_ranks (K,)``,
    ``energy_share (K,)``. ``components=None`` keeps every nonzero one.

    Example::

        >>> h = bilin.hosvd(m, components=3, top=2)
        >>> h.sigma.shape, h.U.shape, h.eigenvectors.shape
        ((3,), (10, 3), (3, 2, 784))
    """
    from bilin_cli.analyses.hosvd import hosvd as run

    model = _model(model)
    return run(model, model.resolve_layer(layer), components, top, basis, dtype, method,
               max_memory_gb)


@float64_on_overflow("the explanation's interaction matrices", "model")
def explain(
    model: BilinearModel | PathLike,
    x: np.ndarray | str,
    classes: int = 3,
    dtype: type = np.float32,
):
    """Split the top ``classes`` logits for one input into eigen-contributions (``bilin explain``).

    ``x``: the input as the model reads it, ``(n_in,)`` (784 pixels in [0, 1] for the
    mnist sample), or a CLI input spec such as ``"data.npz:0"``. Returns an
    :class:`~bilin_cli.analyses.explain.Explanation`: ``logits (n_classes,)``, ``prediction``, and
    per class a :class:`~bilin_cli.analyses.explain.ClassExplanation` with ``eigenvalues (d,)``,
    ``projections (d,)`` and ``contributions (d,)`` = ``lambda_i (v_i . h)^2``, which with
    ``linear``, ``constant`` and ``skip`` sum to ``logit`` (``residual`` is the check).

    Example::

        >>> e = bilin.explain(m, "sample_checkpoints/data/mnist-test.npz:0")
        >>> e.prediction, e.classes[0].contributions.shape
        (7, (512,))
    """
    from bilin_cli.analyses.explain import Input, check_classifier, input_size, load_input
    from bilin_cli.analyses.explain import explain as run

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


@float64_on_overflow("the compared interaction matrices", "a", "b")
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
    from bilin_cli.analyses.similarity import compare as run

    ma, mb = _model(a), _model(b)
    classes = None if cls is None else [int(c) for c in _items(cls)]
    doc = run(ma, mb, classes or None, top, basis, dtype, advance)
    doc = {"a": str(ma.meta.get("source_path", a)), "b": str(mb.meta.get("source_path", b)),
           **doc}
    note = top_note(top, doc["top_k"], verb="compared")
    if note:
        doc["notes"].append(note)
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


@float64_on_overflow("the feature's interaction matrix", "model")
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
    from bilin_cli.analyses.features import eigen_in_features, top_pairs
    from bilin_cli.model.interaction import interaction
    from bilin_cli.model.spectra import effective_rank, eigenvalues

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

"""The data of a browsable report: ``report`` (``bilin report``)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np

from bilin_cli.analyses import directions as _dirs
from bilin_cli.analyses import report as _report
from bilin_cli.analyses.report import Report
from bilin_cli.api._types import PathLike
from bilin_cli.api.directions import _index_specs, output_directions
from bilin_cli.api.loading import _opened
from bilin_cli.core.errors import BilinError, option
from bilin_cli.core.printable import with_article
from bilin_cli.model.bilinear import BilinearModel
from bilin_cli.model.spectra import check_top


def _indices(value, n: int, what: str, plural: str) -> list[int]:
    """``3``, ``[0, 3]``, ``"all"`` or the CLI's index lists, checked against ``0..n-1``,
    each index once, in the order given."""
    out = _dirs._expand(_index_specs(value), lambda: n, what, plural)
    for i in out:
        _dirs._check_index(i, n, what, plural)
    return list(dict.fromkeys(out))


def report(
    model: BilinearModel | PathLike,
    *,
    map: dict | PathLike | None = None,  # noqa: A002
    layer: int | None = None,
    classes=None,
    tokens=None,
    sae: PathLike | None = None,
    features=None,
    sae_in: PathLike | None = None,
    top: int = 4,
    data: PathLike | None = None,
    dtype: type = np.float32,
    progress=None,
) -> Report:
    """Everything ``bilin report`` shows: an overview and one page per output direction.

    Directions: a classifier's ``classes`` (default all); a language model's ``tokens``
    (default all), or with ``sae`` (an output SAE of ``layer``) its ``features`` (default
    the 64 most low-rank by the share of ``sum |lambda|`` in the top 2, as
    :func:`rank_features` sorts them). Each takes an index, a list or ``"all"``.
    ``sae_in``: an input SAE whose decoder reads each eigenvector as features. ``data``
    (default a shipped sample's own test split) gives single-layer classifiers their
    accuracy-versus-K curve and adversarial masks. ``top``: eigenvectors shown per sign.
    ``progress``: a ``(description, total)`` context manager yielding ``advance()``.
    The HTML is written by :func:`bilin_cli.render.report_html.write_report`.

    Example::

        >>> r = bilin.report("sample_checkpoints/mnist", classes=[3], top=2)
        >>> [p.key for p in r.pages], r.pages[0].eigenvalues.shape
        (['class-3'], (512,))
    """
    from bilin_cli.storage.data import check_fits, default_data_path, load_dataset
    from bilin_cli.storage.sae import load_sae
    from bilin_cli.storage.summary import describe

    check_top(top, "top")
    if features is not None and sae is None:
        raise BilinError("features need an output SAE (sae=)")
    progress = progress or (lambda text, total: nullcontext(lambda n=1: None))
    with progress("reading the checkpoint", 1) as advance:
        path = model if not isinstance(model, BilinearModel) else model.meta.get("source_path")
        if path is None:
            raise BilinError("report needs the checkpoint's path (the model has no "
                             "source_path): pass the path")
        checkpoint, model = _opened(path, map)
        advance()
    n = model.n_outputs or 0
    if classes is not None and model.kind == "lm":
        raise BilinError(f"this is a language model: choose outputs with "
                         f"{option('--tokens', 'tokens')}, not {option('--classes', 'classes')}")
    if tokens is not None and model.kind != "lm":
        raise BilinError(f"{option('--tokens', 'tokens')} is for language models; this is "
                         f"{with_article(model.layout)}: use {option('--classes', 'classes')}")
    classes = None if classes is None else _indices(classes, n, "class", "classes")
    tokens = None if tokens is None else _indices(tokens, n, "token", "tokens")
    s_out = None
    if features is not None:
        s_out = load_sae(sae, dtype)
        features = _indices(features, s_out.n_features, "feature", "features")
    index = model.resolve_layer(layer)
    notes: list[str] = list(model.warnings)
    s_in = None
    if sae_in is not None:
        s_in = load_sae(sae_in, dtype)
        if s_in.d != model.shapes[index].d:
            raise BilinError(f"{sae_in}: the input SAE reads {s_in.d} dimensions, layer "
                             f"{index} takes {model.shapes[index].d}")
    chosen: list[_dirs.Direction]
    if sae is not None:
        s_out = s_out if s_out is not None else load_sae(sae, dtype)
        s_out.check_reads(model.shapes[index].o, index)
        if features is None:
            features = _report.ranked_features(model, index, s_out, _report.DEFAULT_FEATURES,
                                               dtype)
            notes.append(f"pages for the {len(features)} most low-rank of the SAE's "
                         f"{s_out.n_features} features (largest share of sum |lambda| in the "
                         f"top {_report.RANK_K}, as bilin rank-features sorts them); "
                         f"{option('--features', 'features')} chooses others")
        chosen = output_directions(model, index, sae=s_out, feature=features, dtype=dtype)
        if tokens:
            chosen += output_directions(model, index, token=tokens, dtype=dtype)
    elif model.kind == "lm":
        chosen = output_directions(model, index, token="all" if tokens is None else tokens,
                                   dtype=dtype)
    else:
        chosen = output_directions(model, index, cls="all" if classes is None else classes,
                                   dtype=dtype)
    if not chosen:
        raise BilinError("no directions to report")

    dataset = None
    if data is not None and not _report.is_classifier(model):
        raise BilinError(f"{option('--data', 'data')} is for single-layer classifiers (accuracy "
                         f"against K and "
                         f"adversarial masks); this is {with_article(model.layout)}")
    if _report.is_classifier(model):
        where = data if data is not None else default_data_path(path, checkpoint.config)
        if where is not None:
            dataset = load_dataset(where, dtype)
            n_in = model.embed_shape[1] if model.embed_key else model.shapes[0].d
            check_fits(dataset, n_in, model.shapes[-1].o)
        else:
            notes.append("no labelled data (give --data): no accuracy curve and no "
                         "adversarial masks")
    title = f"{Path(path).name or path} — layer {index}"
    return _report.build_report(model, describe(checkpoint, model), chosen, layer=index,
                                title=title, top=top, sae_in=s_in, dataset=dataset,
                                notes=notes, dtype=dtype, progress=progress)

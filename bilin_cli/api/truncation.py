"""Truncation and accuracy: ``truncate``, ``truncation_sweep``, ``evaluate``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bilin_cli.api._types import PathLike
from bilin_cli.api.loading import _dataset, _model
from bilin_cli.core.errors import BilinError
from bilin_cli.model.bilinear import BilinearModel

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
    operands: dict | None = None  # two-input forms: the truncated model reads z = [x_a; x_b]

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
        if self.operands is not None:
            doc["operands"] = self.operands
            doc["note"] = ("two-input form: the truncated model is a one-input layer on "
                           "z = [x_a; x_b] (its factors read both operands)")
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
    from bilin_cli.analyses.truncation import (
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
        operands=model.meta.get("operands"),
    )
    source = model.meta.get("source_path")
    config = model.meta.get("source_config", {})
    if evaluate:
        from bilin_cli.analyses.evaluation import model_logits, scores
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
        from bilin_cli.analyses.truncation import truncated_config
        from bilin_cli.storage.writing import save_checkpoint

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
    from bilin_cli.analyses.truncation import accuracy_sweep, class_spectra

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
    from bilin_cli.analyses.evaluation import model_logits, scores

    model = _model(model)
    dataset = _dataset(model, data, dtype)
    doc = scores(model_logits(model, dataset, dtype), dataset.y, model.output_names)
    return Evaluation(doc["accuracy"], doc["n"], doc["per_class"],
                      np.asarray(doc["confusion"], dtype=np.int64), dataset.source)

"""Accuracy, per-class accuracy and confusion matrices: the library behind ``bilin eval``."""

from __future__ import annotations

import numpy as np

from bilin_cli.core.errors import BilinError
from bilin_cli.model.bilinear import BilinearModel
from bilin_cli.storage.data import Dataset, check_fits


def confusion(pred: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """``M[true, predicted]`` counts, ``(n_classes, n_classes)``."""
    M = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(M, (y, pred), 1)
    return M


def scores(logits: np.ndarray, y: np.ndarray, names: list[str] | None = None) -> dict:
    """``{"accuracy", "n", "per_class": [...], "confusion"}`` for ``logits : (N, C)``."""
    n_classes = logits.shape[1]
    pred = np.argmax(logits, axis=1)
    M = confusion(pred, y, n_classes)
    per_class = []
    for c in range(n_classes):
        n_c = int(M[c].sum())
        per_class.append({
            "class": c,
            "name": names[c] if names else str(c),
            "n": n_c,
            "accuracy": float(M[c, c] / n_c) if n_c else None,
        })
    return {
        "accuracy": float(np.mean(pred == y)) if y.size else None,
        "n": int(y.size),
        "per_class": per_class,
        "confusion": M.tolist(),
    }


def model_logits(model: BilinearModel, data: Dataset, dtype: type = np.float32,
                 batch: int = 8192) -> np.ndarray:
    """The model's logits on ``data`` (NumPy forward pass, in batches)."""
    if model.kind == "lm":
        raise BilinError("bilin eval works on classifiers; this is a language model")
    n_in = model.embed_shape[1] if model.embed_key else model.shapes[0].d
    check_fits(data, n_in, model.shapes[-1].o)
    return np.concatenate(
        [model.forward(data.x[i : i + batch], dtype) for i in range(0, len(data.x), batch)]
        or [np.zeros((0, model.shapes[-1].o), dtype)]
    )

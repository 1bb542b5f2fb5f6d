"""Evaluation data: ``.npz`` files (``x``, ``y``) or a directory of MNIST-style idx files.

Scaling: ``uint8`` images are divided by 255 (pixels in [0, 1], as the sample
checkpoints were trained); float data is used as stored. Images are flattened
row-major to ``(N, n_in)``.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bilin_cli.errors import BilinError


@dataclass
class Dataset:
    x: np.ndarray  # (N, n_in) float
    y: np.ndarray  # (N,) int
    source: str
    image_shape: tuple[int, ...] | None = None


def _scale(x: np.ndarray, dtype: type) -> np.ndarray:
    if x.dtype == np.uint8:
        return x.astype(dtype) / dtype(255)
    if not np.issubdtype(x.dtype, np.number):
        raise BilinError(f"input array has non-numeric dtype {x.dtype}")
    return x.astype(dtype)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise BilinError(f"{path}: cannot read idx file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise BilinError(f"{path}: not an unsigned-byte idx file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    start = 4 + 4 * ndim
    if len(raw) - start != int(np.prod(dims)):
        raise BilinError(f"{path}: idx file is truncated")
    return np.frombuffer(raw, np.uint8, offset=start).reshape(dims)


def _idx_pair(folder: Path) -> tuple[Path, Path]:
    files = sorted(p for p in folder.iterdir() if "idx" in p.name)
    images = [p for p in files if "idx3" in p.name]
    labels = [p for p in files if "idx1" in p.name]
    # Prefer the test split (t10k-*) when a folder holds both.
    pick = [
        next((p for p in group if p.name.startswith(("t10k", "test"))), group[0] if group else None)
        for group in (images, labels)
    ]
    if pick[0] is None or pick[1] is None:
        raise BilinError(f"{folder}: no idx3 images / idx1 labels files found")
    return pick[0], pick[1]


def load_dataset(path: str | Path, dtype: type = np.float32) -> Dataset:
    """Read ``.npz`` (arrays ``x`` and ``y``) or an idx(.gz) directory."""
    p = Path(path)
    if not p.exists():
        raise BilinError(f"{p}: no such data file or directory")
    if p.is_dir():
        img_path, lab_path = _idx_pair(p)
        x_raw, y = _read_idx(img_path), _read_idx(lab_path)
        source = f"{img_path.name} + {lab_path.name}"
    else:
        try:
            with np.load(p, allow_pickle=False) as z:
                if "x" not in z or "y" not in z:
                    raise BilinError(f"{p}: needs arrays 'x' and 'y', found {sorted(z.files)}")
                x_raw, y = z["x"], z["y"]
        except (OSError, ValueError) as exc:
            raise BilinError(f"{p}: not a readable .npz file ({exc})") from None
        source = str(p)
    if x_raw.shape[0] != y.shape[0] or y.ndim != 1:
        raise BilinError(f"{p}: {x_raw.shape[0]} inputs but labels of shape {y.shape}")
    shape = tuple(x_raw.shape[1:]) if x_raw.ndim > 2 else None
    x = _scale(x_raw.reshape(x_raw.shape[0], -1), dtype)
    return Dataset(x, y.astype(np.int64), source, shape)


def check_fits(data: Dataset, n_in: int, n_classes: int) -> None:
    if data.x.shape[1] != n_in:
        raise BilinError(
            f"{data.source}: inputs have {data.x.shape[1]} features, the model takes {n_in}"
        )
    if data.y.size and (data.y.min() < 0 or data.y.max() >= n_classes):
        raise BilinError(
            f"{data.source}: labels range {data.y.min()}..{data.y.max()}, the model has "
            f"{n_classes} classes"
        )


def default_data_path(ckpt_path: str | Path, config: dict) -> Path | None:
    """A shipped sample's own test split (``test_split`` in config.json), if there is one."""
    rel = config.get("test_split")
    if not isinstance(rel, str):
        return None
    base = Path(ckpt_path)
    base = base if base.is_dir() else base.parent
    candidate = (base / rel).resolve()
    return candidate if candidate.is_file() else None

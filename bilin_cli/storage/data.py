"""Evaluation data: ``.npz`` files (``x``, ``y``) or a directory of MNIST-style idx files.

Scaling: ``uint8`` images are divided by 255 (pixels in [0, 1], as the sample
checkpoints were trained); float data is used as stored. Images are flattened
row-major to ``(N, n_in)``.

Every file is read defensively (regular files only; a header's shape is checked
against the bytes that are really there before anything is allocated; truncated or
corrupt archives, NaN or infinite inputs and non-integer labels are one error line).
:func:`read_npy` does the same for the single ``.npy`` arrays other commands read.
"""

from __future__ import annotations

import gzip
import lzma
import math
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from bilin_cli.core.errors import BilinError, option
from bilin_cli.core.printable import printable
from bilin_cli.storage.files import regular_file
from bilin_cli.storage.inputs import register_input

# Deflate cannot expand data by more than about 1032:1; a zip member claiming more than
# this many bytes per stored byte is lying about its size.
MAX_DEFLATE_RATIO = 1100
READ_CHUNK = 16 * 1024 * 1024
# Errors the zip, gzip and decompression modules raise for damaged files.
ARCHIVE_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error,
                  lzma.LZMAError, NotImplementedError, RuntimeError, KeyError)
# A .npy header is a Python literal that numpy tokenizes and evaluates: a damaged one can
# fail in the tokenizer or the parser too.
HEADER_ERRORS = (*ARCHIVE_ERRORS, SyntaxError, tokenize.TokenError, TypeError, RecursionError,
                 MemoryError)


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
    with np.errstate(over="ignore"):  # values beyond float32 become inf; load_dataset says so
        return x.astype(dtype)


# --------------------------------------------------------------------------- .npy arrays


def _npy_header(fh: BinaryIO, where: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, n_bytes)`` from a .npy header, nothing allocated.

    Object (pickled) arrays and non-numeric dtypes are refused here.
    """
    fmt = np.lib.format  # public API only (numpy 2 moved the private helpers)
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            # 3.0 is 2.0's layout (a 4-byte header length) with a UTF-8 header instead of
            # latin-1, which only structured dtypes' field names need: the numeric arrays
            # bilin reads have ASCII headers, read alike either way (others are refused).
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise BilinError(f"{where}: .npy format version {version[0]}.{version[1]}, which "
                             "bilin does not read (1.0, 2.0 and 3.0 it does)")
    except HEADER_ERRORS as exc:
        raise BilinError(f"{where}: not a readable .npy array, truncated or corrupt "
                         f"({printable(exc, 120)})") from None
    if dtype.hasobject:
        raise BilinError(f"{where}: holds Python objects (pickled data); bilin reads only "
                         "numeric arrays")
    if dtype.kind not in "biuf" or dtype.itemsize == 0:
        raise BilinError(f"{where}: non-numeric dtype {printable(dtype)}; bilin reads numbers")
    if any(int(s) < 0 for s in shape):
        raise BilinError(f"{where}: header has a negative dimension {shape}")
    n_bytes = math.prod(int(s) for s in shape) * dtype.itemsize  # Python ints: no overflow
    return tuple(int(s) for s in shape), bool(fortran), dtype, n_bytes


def _read_exactly(fh: BinaryIO, n_bytes: int, where: str) -> bytes:
    """``n_bytes`` from ``fh`` in chunks (so a lying size never allocates), no more, no less."""
    chunks, have = [], 0
    while have < n_bytes:
        chunk = fh.read(min(READ_CHUNK, n_bytes - have))
        if not chunk:
            break
        chunks.append(chunk)
        have += len(chunk)
    if have < n_bytes:
        raise BilinError(f"{where}: truncated: the header promises {n_bytes} bytes of data, "
                         f"the file holds {have}")
    if fh.read(1):
        raise BilinError(f"{where}: more data than its header's shape says (corrupt file)")
    return b"".join(chunks)


def _npy_body(fh: BinaryIO, header: tuple, where: str) -> np.ndarray:
    shape, fortran, dtype, n_bytes = header
    raw = _read_exactly(fh, n_bytes, where)
    arr = np.frombuffer(raw, dtype=dtype)
    return arr.reshape(shape, order="F" if fortran else "C")


def read_npy(path: str | Path, what: str = ".npy file") -> np.ndarray:
    """A numeric array from a regular ``.npy`` file; the header's shape is checked against
    the file's size before the data is read."""
    p = regular_file(path, what)
    register_input(p)
    where = printable(p)
    try:
        with open(p, "rb") as fh:
            header = _npy_header(fh, where)
            available = p.stat().st_size - fh.tell()
            if header[3] != available:
                raise BilinError(f"{where}: header says shape {header[0]} ({header[3]} bytes), "
                                 f"the file holds {available} bytes of data (truncated or "
                                 "corrupt)")
            return _npy_body(fh, header, where)
    except OSError as exc:
        raise BilinError(f"{where}: cannot read ({exc.strerror or exc})") from None


# --------------------------------------------------------------------------- .npz archives


def _npz_member(zf: zipfile.ZipFile, key: str, where: str) -> np.ndarray:
    names = zf.namelist()
    name = f"{key}.npy" if f"{key}.npy" in names else key
    info = zf.getinfo(name)
    label = f"{where}: array '{key}'"
    if info.compress_type == zipfile.ZIP_STORED:
        limit = info.compress_size
    else:
        limit = info.compress_size * MAX_DEFLATE_RATIO + 1024
    if info.file_size > limit:
        raise BilinError(f"{label}: the archive claims {info.file_size} bytes from "
                         f"{info.compress_size} stored (corrupt file)")
    with zf.open(info) as fh:
        header = _npy_header(fh, label)
        available = info.file_size - fh.tell()
        if header[3] != available:
            raise BilinError(f"{label}: header says shape {header[0]} ({header[3]} bytes), the "
                             f"archive holds {available} bytes of data (truncated or corrupt)")
        return _npy_body(fh, header, label)


def _read_npz(p: Path) -> tuple[np.ndarray, np.ndarray]:
    where = printable(p)
    if not zipfile.is_zipfile(p):
        raise BilinError(f"{where}: not a readable .npz file (a zip of .npy arrays x and y): "
                         "truncated, or not a zip at all")
    try:
        with zipfile.ZipFile(p) as zf:
            keys = {n[:-4] if n.endswith(".npy") else n for n in zf.namelist()}
            if "x" not in keys or "y" not in keys:
                shown = ", ".join(printable(k, 40) for k in sorted(keys)[:8])
                raise BilinError(f"{where}: needs arrays 'x' and 'y', found [{shown}]")
            return _npz_member(zf, "x", where), _npz_member(zf, "y", where)
    except ARCHIVE_ERRORS as exc:
        raise BilinError(f"{where}: not a readable .npz file: truncated or corrupt "
                         f"({type(exc).__name__}: {printable(exc, 120)})") from None


# --------------------------------------------------------------------------- idx files


def _read_idx(path: Path) -> np.ndarray:
    where = printable(path)
    regular_file(path, "data file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
                raise BilinError(f"{where}: not an unsigned-byte idx file")
            ndim = head[3]
            if ndim == 0:
                raise BilinError(f"{where}: idx file with no dimensions")
            raw_dims = fh.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise BilinError(f"{where}: idx file is truncated (in its header)")
            dims = [int.from_bytes(raw_dims[4 * i : 4 * i + 4], "big") for i in range(ndim)]
            n_bytes = math.prod(dims)  # Python ints: four uint32 dims overflow int64
            if opener is open:
                available = path.stat().st_size - 4 - 4 * ndim
                if available != n_bytes:
                    raise BilinError(f"{where}: idx file is truncated or corrupt: its header "
                                     f"says {'x'.join(map(str, dims))} = {n_bytes} bytes, it "
                                     f"holds {available}")
            raw = _read_exactly(fh, n_bytes, f"{where}: idx file")
    except ARCHIVE_ERRORS as exc:
        raise BilinError(f"{where}: cannot read idx file: truncated or corrupt "
                         f"({type(exc).__name__}: {printable(exc, 120)})") from None
    return np.frombuffer(raw, np.uint8).reshape(dims)


def _idx_pair(folder: Path) -> tuple[Path, Path]:
    try:
        files = sorted(p for p in folder.iterdir() if "idx" in p.name)
    except OSError as exc:
        raise BilinError(f"{printable(folder)}: cannot list ({exc.strerror})") from None
    images = [p for p in files if "idx3" in p.name]
    labels = [p for p in files if "idx1" in p.name]
    # Prefer the test split (t10k-*) when a folder holds both.
    pick = [
        next((p for p in group if p.name.startswith(("t10k", "test"))), group[0] if group else None)
        for group in (images, labels)
    ]
    if pick[0] is None or pick[1] is None:
        raise BilinError(f"{printable(folder)}: no idx3 images / idx1 labels files found")
    return pick[0], pick[1]


# --------------------------------------------------------------------------- checks


def _check_inputs(x: np.ndarray, where: str) -> None:
    if x.ndim < 1 or x.shape[0] == 0:
        raise BilinError(f"{where}: array 'x' holds no examples (shape {x.shape})")
    if x.dtype.kind == "f":
        bad = int(x.size - np.count_nonzero(np.isfinite(x)))
        if bad:
            raise BilinError(f"{where}: array 'x' has {bad} NaN or infinite "
                             f"entr{'y' if bad == 1 else 'ies'}; clean the data first")


def _labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    if y.ndim != 1 or y.shape[0] != n:
        raise BilinError(f"{where}: {n} inputs but labels of shape {y.shape}")
    if y.dtype.kind == "f":
        finite = np.isfinite(y)
        if not finite.all():
            bad = int(y.size - np.count_nonzero(finite))
            raise BilinError(f"{where}: array 'y' has {bad} NaN or infinite labels; labels "
                             "are class indices")
        whole = y == np.round(y)
        if not whole.all():
            first = float(y[np.argmin(whole)])
            raise BilinError(f"{where}: labels must be integers (class indices), found {first}")
        if y.size and np.abs(y).max() > 2**53:
            raise BilinError(f"{where}: labels up to {np.abs(y).max():.3g} are not class indices")
    elif y.dtype.kind == "u" and y.dtype.itemsize == 8 and y.size and y.max() > 2**62:
        raise BilinError(f"{where}: labels up to {y.max()} are not class indices")
    return y.astype(np.int64)


def load_dataset(path: str | Path, dtype: type = np.float32) -> Dataset:
    """Read ``.npz`` (arrays ``x`` and ``y``) or an idx(.gz) directory."""
    p = Path(path)
    where = printable(p)
    try:
        exists, is_dir = p.exists(), p.is_dir()
    except OSError as exc:
        raise BilinError(f"{where}: cannot read ({exc.strerror})") from None
    if not exists:
        raise BilinError(f"{where}: no such data file or directory")
    register_input(p)  # no output of this command may replace it
    if is_dir:
        img_path, lab_path = _idx_pair(p)
        register_input(img_path)
        register_input(lab_path)
        x_raw, y = _read_idx(img_path), _read_idx(lab_path)
        source = f"{img_path.name} + {lab_path.name}"
    else:
        regular_file(p, "data file")
        x_raw, y = _read_npz(p)
        source = str(p)
    _check_inputs(x_raw, where)
    y = _labels(y, x_raw.shape[0], where)
    shape = tuple(x_raw.shape[1:]) if x_raw.ndim > 2 else None
    if math.prod(x_raw.shape[1:]) == 0:
        raise BilinError(f"{where}: inputs have no features (shape {x_raw.shape})")
    x = _scale(x_raw.reshape(x_raw.shape[0], -1), dtype)
    if not np.isfinite(x).all():  # finite float64 data can overflow float32
        bad = int(x.size - np.count_nonzero(np.isfinite(x)))
        raise BilinError(f"{where}: array 'x' has {bad} value{'s' if bad > 1 else ''} too "
                         f"large for {np.dtype(dtype).name}; use "
                         f"{option('--float64', 'dtype=np.float64')} or rescale the data")
    return Dataset(x, y, source, shape)


def check_fits(data: Dataset, n_in: int, n_classes: int) -> None:
    if data.x.shape[1] != n_in:
        raise BilinError(
            f"{printable(data.source)}: inputs have {data.x.shape[1]} features, the model "
            f"takes {n_in}"
        )
    if data.y.size and (data.y.min() < 0 or data.y.max() >= n_classes):
        raise BilinError(
            f"{printable(data.source)}: labels range {data.y.min()}..{data.y.max()}, the model "
            f"has {n_classes} classes"
        )


def default_data_path(ckpt_path: str | Path, config: dict) -> Path | None:
    """A shipped sample's own test split (``test_split`` in config.json), if there is one."""
    rel = config.get("test_split")
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        return None
    base = Path(ckpt_path)
    try:
        base = base if base.is_dir() else base.parent
        candidate = (base / rel).resolve()
        return candidate if candidate.is_file() else None
    except (OSError, RuntimeError, ValueError):
        return None

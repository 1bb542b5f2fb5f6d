"""Reading tensors from checkpoint containers, lazily and without torch where possible.

Containers: a ``.safetensors`` file (parsed and memory-mapped by the ``safetensors``
package itself; ``ml_dtypes`` gives numpy a bfloat16, so bf16 needs no torch), a
Hugging Face style directory (``model.safetensors``, a sharded
``model.safetensors.index.json`` or ``pytorch_model.bin.index.json``, plus
``config.json``), and PyTorch ``.pt``/``.pth``/``.bin``/``.ckpt`` files, read with
``torch.load(weights_only=True)`` only. A training checkpoint that wraps the state
dict (``{"epoch": 9, "model_state_dict": {...}}``, DataParallel's ``module.``
prefix) is unwrapped; its other entries are kept as :attr:`Checkpoint.extras`.

Every tensor a command reads is checked for NaN and infinity on the way in
(:meth:`Checkpoint.get`), so no bad weight ever reaches the math.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bilin_cli.core.errors import BilinError, option
from bilin_cli.core.printable import printable
from bilin_cli.storage.files import MAX_JSON_DEPTH, parse_json, read_json, regular_file
from bilin_cli.storage.inputs import register_input

# The safetensors dtypes bilin computes with (integers and bools are widened like floats).
READABLE_DTYPES = frozenset(
    {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL"}
)
# The safetensors dtypes numpy has natively (the others need ml_dtypes).
NUMPY_DTYPES = frozenset({"F64", "F32", "F16", "I64", "I32", "I16", "I8", "U64", "U32", "U16",
                          "U8", "BOOL"})
_TORCH_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt"}
_WEIGHT_SUFFIXES = {".safetensors", *_TORCH_SUFFIXES}
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors package's own limit
# Bytes per element of the dtypes bilin reads (what a read allocates before converting).
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
             "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}
# The tensor data one weights file may declare. No bilinear network bilin can decompose
# comes near it; a header that declares more (a sparse file of terabytes) is refused
# before anything is mapped or read.
MAX_FILE_TENSOR_BYTES = 2**40
# Nesting of dicts in what torch.load returns (a state dict is flat or a few levels deep).
MAX_DICT_DEPTH = 32
# A torch.save zip's pickle and other small records, inflated (its tensors are separate).
_MAX_PICKLE_BYTES = 512 * 1024**2

# Keys under which training scripts store the model's state dict, most specific first.
_WRAPPER_KEYS = ("model_state_dict", "state_dict", "model", "module", "net", "network",
                 "model_state", "weights", "params", "ema_state_dict", "ema")
# Prefixes that wrappers add to every key (DataParallel / DDP, torch.compile).
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


@dataclass(frozen=True)
class TensorInfo:
    """What the header says about one tensor, before any data is read."""

    shape: tuple[int, ...]
    dtype: str  # safetensors spelling: F32, BF16, ...

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass
class Checkpoint:
    """A lazy view of a checkpoint: tensor names and shapes now, data on demand."""

    path: Path
    tensors: dict[str, TensorInfo]
    config: dict
    files: list[Path]
    _read: Callable[[str, slice | None], np.ndarray] = field(repr=False)
    container: str = "safetensors"
    # Non-tensor entries of a training checkpoint (epoch, accuracy, ...), as short text.
    extras: dict[str, str] = field(default_factory=dict)
    # How the state dict was found inside a wrapper ("model_state_dict", "module. prefix").
    unwrapped: list[str] = field(default_factory=list)

    def get(self, key: str, dtype: np.dtype | type = np.float32,
            rows: slice | None = None) -> np.ndarray:
        """Tensor ``key`` (only ``rows`` of it, if given) as a float array of ``dtype``.

        Rows are cut before any conversion, so one row of a bf16 unembedding costs one
        row, not the whole matrix widened to float. NaN or infinity in what is read is
        an error that names the tensor and counts the entries."""
        info = self.tensors.get(key)
        if info is None:
            raise BilinError(f"{printable(self.path)}: no tensor named {printable(key)!r}")
        if info.dtype not in READABLE_DTYPES:
            raise BilinError(
                f"{printable(self.path)}: tensor {printable(key)!r} has dtype {info.dtype}, "
                "which bilin does not compute with; convert it to float32, float16 or bfloat16"
            )
        if rows is not None:
            start, stop, _ = rows.indices(info.shape[0] if info.shape else 0)
            rows = slice(start, max(start, stop))
        self._check_size(key, info, rows, dtype)
        try:
            raw = self._read(key, rows)
            with np.errstate(over="ignore", invalid="ignore"):
                arr = np.asarray(raw).astype(dtype, copy=False)
        except BilinError:
            raise
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - the readers raise many types on bad data
            raise BilinError(
                f"{printable(self.path)}: cannot read tensor {printable(key)!r} "
                f"({printable(_first_line(exc))})"
            ) from None
        what = f"{printable(self.path)}: tensor {printable(key)!r}"
        raw = np.asarray(raw)
        if raw.dtype == np.float64 and arr.dtype != np.float64 and not _all_finite(arr) \
                and _all_finite(raw):
            raise BilinError(f"{what} holds values beyond the range of {np.dtype(dtype).name}; "
                             f"compute with {option('--float64', 'dtype=np.float64')}")
        check_finite(arr, what)
        return arr

    def _check_size(self, key: str, info: TensorInfo, rows: slice | None,
                    dtype: np.dtype | type) -> None:
        """Refuse a read that cannot fit in memory before anything is allocated."""
        n = info.numel
        if rows is not None and info.shape:
            n = (rows.stop - rows.start) * math.prod(info.shape[1:])
        need = n * max(_ITEMSIZE.get(info.dtype, 8), np.dtype(dtype).itemsize)
        limit, source = memory_limit()
        if need > limit:
            shape = "x".join(map(str, info.shape)) or "scalar"
            raise BilinError(
                f"{printable(self.path)}: tensor {printable(key)!r} ({shape} {info.dtype}) "
                f"needs {_size_text(need)} of memory, more than the {_size_text(limit)} "
                f"{source}; bilin reads whole tensors into memory"
            )

    @property
    def file_size(self) -> int:
        return sum(f.stat().st_size for f in self.files)


def memory_limit() -> tuple[int, str]:
    """(bytes, what they are) that one tensor read may take: MemAvailable, else the
    machine's physical memory, else 1 TiB."""
    try:
        with open("/proc/meminfo", "rb") as fh:
            for line in fh.read(65536).decode("ascii", "replace").splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "of memory available (MemAvailable)"
    except (OSError, ValueError, IndexError):
        pass
    try:
        return (os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"),
                "of the machine's memory")
    except (AttributeError, OSError, ValueError):
        return 2**40, "bilin allows when it cannot see the machine's memory"


def _size_text(n: int) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def _all_finite(arr: np.ndarray) -> bool:
    if arr.size == 0 or not np.issubdtype(arr.dtype, np.floating):
        return True
    return bool(np.isfinite(arr.max()) and np.isfinite(arr.min()))


def check_finite(arr: np.ndarray, what: str) -> None:
    """Raise a BilinError naming ``what`` if ``arr`` holds NaN or infinity."""
    # max and min propagate NaN and expose inf without allocating a mask the array's size.
    if _all_finite(arr):
        return
    n_nan = int(np.count_nonzero(np.isnan(arr)))
    n_inf = int(np.count_nonzero(np.isinf(arr)))
    parts = [f"{n} {name}" for n, name in ((n_nan, "NaN"), (n_inf, "infinite")) if n]
    raise BilinError(
        f"{what} has {' and '.join(parts)} entries (of {arr.size}); bilin refuses to "
        "decompose non-finite weights: retrain or repair the checkpoint"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_header(path: Path) -> tuple[dict, set[str]]:
    """Pre-read a safetensors header: length, bounded JSON, duplicate keys, ``__metadata__``;
    returns the metadata and the dtypes the header names.

    The ``safetensors`` package validates offsets, dtypes and byte counts; it keeps the
    last of two entries with the same name, which would silently pick one of them."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise BilinError(f"{printable(path)}: not a safetensors file (too short)")
        n = int.from_bytes(head, "little")
        if n == 0 or n > _MAX_HEADER or 8 + n > size:
            raise BilinError(
                f"{printable(path)}: not a valid safetensors file (header length {n} does not "
                f"fit a {size}-byte file); is it truncated or another format?"
            )
        raw = fh.read(n)
    dupes: list[str] = []

    def pairs(items: list[tuple[str, object]]) -> dict:
        seen: dict = {}
        for k, v in items:
            if k in seen:
                dupes.append(k)
            seen[k] = v
        return seen

    try:
        header = json.loads(raw, object_pairs_hook=pairs)
    except RecursionError:
        raise BilinError(f"{printable(path)}: not a valid safetensors file (header JSON nested "
                         f"more than {MAX_JSON_DEPTH} levels)") from None
    except (UnicodeDecodeError, ValueError):
        raise BilinError(f"{printable(path)}: not a valid safetensors file (unreadable header)"
                         ) from None
    if not isinstance(header, dict):
        raise BilinError(f"{printable(path)}: not a valid safetensors file (the header is "
                         "not a JSON object)")
    if dupes:
        raise BilinError(f"{printable(path)}: corrupted safetensors header: tensor "
                         f"{printable(dupes[0])!r} is listed twice")
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict)
                                 and all(isinstance(v, str) for v in meta.values())):
        raise BilinError(f"{printable(path)}: corrupted safetensors header: __metadata__ must "
                         "map names to strings")
    dtypes = {v.get("dtype") for k, v in header.items()
              if k != "__metadata__" and isinstance(v, dict) and isinstance(v.get("dtype"), str)}
    # Offsets against the file (the package checks them too, after mapping the file) and
    # the total a header may declare: Python ints, so no product or sum overflows.
    data_size, declared = size - 8 - n, 0
    for k, v in header.items():
        offsets = v.get("data_offsets") if k != "__metadata__" and isinstance(v, dict) else None
        if isinstance(offsets, list) and len(offsets) == 2 \
                and all(type(o) is int for o in offsets):
            if not 0 <= offsets[0] <= offsets[1] <= data_size:
                raise BilinError(
                    f"{printable(path)}: not a valid safetensors file, corrupted or truncated "
                    f"(tensor {printable(k)!r} lies at bytes {offsets[0]}..{offsets[1]} of a "
                    f"{data_size}-byte data section)"
                )
            declared += offsets[1] - offsets[0]
    if declared > MAX_FILE_TENSOR_BYTES:
        raise BilinError(
            f"{printable(path)}: declares {_size_text(declared)} of tensor data, more than "
            f"bilin's limit of {_size_text(MAX_FILE_TENSOR_BYTES)} per weights file"
        )
    return meta or {}, dtypes


def embedded_config(metadata: dict) -> dict:
    """A config that bilin stored in a safetensors file's metadata (``bilin_config``)."""
    raw = metadata.get("bilin_config")
    if not raw:
        return {}
    data = parse_json(raw, "the bilin_config in the file's metadata")
    if not isinstance(data, dict):
        raise BilinError("the bilin_config in the file's metadata must be a JSON object")
    return data


def _safetensors_reader(path: Path) -> tuple[dict[str, TensorInfo], Callable, dict]:
    regular_file(path, "checkpoint file")
    metadata, dtypes = _check_header(path)
    if not dtypes <= NUMPY_DTYPES:
        # ml_dtypes gives numpy a bfloat16 (and float8s) for safetensors' numpy mode; it costs
        # ~0.6 s of start-up, so only files that hold such tensors pay for it.
        import ml_dtypes  # noqa: F401
    from safetensors import safe_open

    try:
        handle = safe_open(str(path), framework="numpy")
        infos = {}
        for key in handle.keys():
            view = handle.get_slice(key)
            infos[key] = TensorInfo(tuple(int(s) for s in view.get_shape()), view.get_dtype())
    except Exception as exc:  # noqa: BLE001 - SafetensorError and OSError
        raise BilinError(
            f"{printable(path)}: not a valid safetensors file, corrupted or truncated "
            f"({printable(_first_line(exc).removeprefix('Error while deserializing header: '))})"
        ) from None

    def read(key: str, rows: slice | None = None) -> np.ndarray:
        if rows is None:
            return handle.get_tensor(key)
        if rows.stop <= rows.start:
            return np.zeros((0, *infos[key].shape[1:]), np.float32)
        return handle.get_slice(key)[rows]

    return infos, read, metadata


def _short(value: object) -> str:
    """A one-line description of a non-tensor entry of a training checkpoint."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return printable(repr(value), 80)
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of {len(value)}"
    if isinstance(value, dict):
        return f"dict of {len(value)}"
    if "_fields" in getattr(value, "__dict__", {}):  # an inert stand-in: its recorded fields
        return printable(repr(value), 120)
    return type(value).__name__


def _too_deep() -> BilinError:
    return BilinError(f"holds dicts nested more than {MAX_DICT_DEPTH} levels deep, not a state "
                      "dict; save the model's state_dict() with torch.save")


def _check_nesting(obj) -> None:
    """Dicts in ``obj`` nested at most :data:`MAX_DICT_DEPTH` deep (iteratively: a pickle
    can nest 100 000 dicts, far past Python's recursion limit)."""
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DICT_DEPTH:
            raise _too_deep()
        stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict))


def _tensor_dict(obj, torch, prefix: str = "") -> tuple[dict, dict]:
    """(tensors, other entries) of nested dicts, flattened with dotted names, in the order
    a depth-first walk meets them; iterative, at most :data:`MAX_DICT_DEPTH` deep."""
    tensors, other = {}, {}
    stack = [(iter(obj.items()), prefix)]
    while stack:
        entries, pre = stack[-1]
        for key, value in entries:
            name = f"{pre}{key}"
            if isinstance(value, dict):
                if len(stack) >= MAX_DICT_DEPTH:
                    raise _too_deep()
                stack.append((iter(value.items()), name + "."))
                break
            if isinstance(value, torch.Tensor):
                tensors[name] = value
            else:
                other[name] = _short(value)
        else:
            stack.pop()
    return tensors, other


def _is_state_dict(obj, torch) -> bool:
    """A non-empty dict whose leaves are all tensors under string names (nested dicts of
    them count); iterative."""
    stack = [obj]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict) or not node:
            return False
        for k, v in node.items():
            if not isinstance(k, str):
                return False
            if isinstance(v, dict):
                stack.append(v)
            elif not isinstance(v, torch.Tensor):
                return False
    return True


def unwrap_state_dict(obj, torch) -> tuple[dict, dict, list[str]]:
    """The model's state dict inside what ``torch.load`` returned.

    Returns (tensors by name, the other entries as short text, how it was unwrapped).
    A plain state dict is returned as it is; a training dict is searched for its one
    tensor dict (``model_state_dict``, ``state_dict``, ``model``, ...), and a prefix
    that every key shares (``module.``, ``_orig_mod.``) is stripped."""
    if not isinstance(obj, dict):
        raise BilinError(f"expected a state dict (a dict of tensors), found "
                         f"{type(obj).__name__}; save the model's state_dict() with torch.save")
    _check_nesting(obj)
    how: list[str] = []
    if _is_state_dict(obj, torch):
        tensors, other = _tensor_dict(obj, torch)
    else:
        candidates = [k for k, v in obj.items() if isinstance(k, str) and _is_state_dict(v, torch)
                      and "optim" not in k.lower() and "sched" not in k.lower()]
        named = [k for k in _WRAPPER_KEYS if k in candidates]
        if named:
            pick = named[0]
        elif len(candidates) == 1:
            pick = candidates[0]
        elif candidates:
            raise BilinError(
                "holds several tensor dicts (" + ", ".join(printable(c) for c in candidates[:6])
                + "); save the model's state_dict() alone with torch.save"
            )
        else:
            tensors, other = _tensor_dict(obj, torch)
            if not tensors:
                raise BilinError("holds no tensors; save the model's state_dict() with "
                                 "torch.save")
            pick = None
        if pick is not None:
            tensors, _ = _tensor_dict(obj[pick], torch)
            other = {}
            for key, value in obj.items():
                if key == pick:
                    continue
                if isinstance(value, torch.Tensor) and value.numel() == 1 \
                        and value.device.type != "meta":
                    other[str(key)] = printable(repr(value.item()), 80)
                else:
                    other[str(key)] = _short(value)
            how.append(f"state dict found under {printable(pick)!r}")
    for prefix in _WRAPPER_PREFIXES:
        if tensors and all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix):]: v for k, v in tensors.items()}
            how.append(f"{prefix!r} prefix removed")
    return tensors, other, how


_TORCH_DTYPES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
}


def _zip_records(path: Path) -> tuple[bool, int]:
    """Check a torch.save zip's directory before torch reads anything: (whether a tensor
    record is compressed, the bytes its tensor records hold once inflated).

    torch.save stores records uncompressed. A stored record must lie inside the file; a
    compressed one (a zip rewritten by another tool, or a bomb: 4 MB of deflate inflate to
    4 GiB) must keep to deflate's ratio, and a compressed pickle to a pickle's size."""
    from bilin_cli.storage.data import MAX_DEFLATE_RATIO

    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as zf:
            records = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise BilinError(f"{printable(path)}: cannot be read as a PyTorch state dict (not a "
                         f"readable zip: {printable(_first_line(exc))})") from None
    compressed, data_bytes = False, 0
    for r in records:
        parts = r.filename.split("/")
        tensor = len(parts) >= 2 and parts[-2] == "data"
        if r.compress_type == zipfile.ZIP_STORED:
            if r.file_size != r.compress_size or r.header_offset + r.compress_size > size:
                raise BilinError(f"{printable(path)}: corrupted PyTorch zip: record "
                                 f"{printable(r.filename)!r} claims {r.file_size} bytes at "
                                 f"offset {r.header_offset} of a {size}-byte file")
        else:
            compressed = compressed or tensor
            if r.file_size > r.compress_size * MAX_DEFLATE_RATIO + 1024 \
                    or (not tensor and r.file_size > _MAX_PICKLE_BYTES):
                raise BilinError(f"{printable(path)}: corrupted PyTorch zip: record "
                                 f"{printable(r.filename)!r} claims {r.file_size} bytes from "
                                 f"{r.compress_size} compressed")
        if tensor:
            data_bytes += r.file_size
    return compressed, data_bytes


def _torch_load(torch, path: Path, how: str):
    """``torch.load(weights_only=True)`` of ``path``, quietly (torch warns on some pickles).

    ``how``: ``"mmap"`` maps a zip's tensor records (nothing is read until a tensor is
    used), ``"meta"`` reads none of them (shapes and dtypes only), ``"read"`` reads all."""
    with open(path, "rb") as fh, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if how == "meta":
            return torch.load(fh, map_location="meta", weights_only=True)
        if how == "read":
            return torch.load(fh, map_location="cpu", weights_only=True)
        # mmap needs a path; torch.load reads one ending in .safetensors as safetensors,
        # so such a name goes through the open descriptor.
        name = os.fspath(path)
        if name.endswith(".safetensors"):
            name = f"/proc/self/fd/{fh.fileno()}"
            if not os.path.exists(name):
                return torch.load(fh, map_location="cpu", weights_only=True)
        return torch.load(name, map_location="cpu", weights_only=True, mmap=True)


MAX_STAND_INS = 32  # unknown classes a pickle may name before it is refused
_UNSUPPORTED = re.compile(r"Unsupported global: GLOBAL (.+?) was not an allowed global", re.S)


def _unsupported_global(exc: BaseException) -> str | None:
    """The ``module.Class`` torch's weights-only unpickler refused, if that was the error."""
    m = _UNSUPPORTED.search(str(exc))
    return m.group(1) if m else None


def _stand_in(full_name: str) -> type:
    """An inert class named ``full_name``: unpickling it records its state and arguments
    and runs no code of the file's."""
    module, _, name = full_name.rpartition(".")

    def __init__(self, *args, **kwargs):
        self.__dict__["_args"] = (args, kwargs)

    def __setstate__(self, state):
        self.__dict__["_fields"] = state

    def __repr__(self):
        fields = self.__dict__.get("_fields")
        if isinstance(fields, dict):
            inner = ", ".join(f"{k}={v!r}" for k, v in list(fields.items())[:8])
            return f"{name}({inner}{', ...' if len(fields) > 8 else ''})"
        return f"{name}(...)"

    cls = type(name, (), {"__init__": __init__, "__setstate__": __setstate__,
                          "__repr__": __repr__, "__module__": module or "__main__"})
    cls.__qualname__ = name
    return cls


def _full_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _unsafe_pickle_text(path: Path, exc: BaseException, blocked: str | None,
                        n_stand_ins: int = MAX_STAND_INS) -> str:
    """Why a pickle cannot be read safely, without torch's advice to run its code."""
    text = str(exc)
    if blocked is not None and n_stand_ins < MAX_STAND_INS:
        return (f"{printable(path)}: cannot be read safely as a PyTorch state dict (it needs "
                f"{printable(blocked)}, which is not a class bilin can stand in for); bilin "
                "runs no code from a file: save the model's state_dict() with torch.save, "
                "or as .safetensors")
    if blocked is not None:
        return (f"{printable(path)}: the pickle names more than {MAX_STAND_INS} classes of its "
                f"own ({printable(blocked)} among them); bilin runs no code from a file: in "
                "the code that trained it, save model.state_dict() with torch.save (or as "
                ".safetensors) and read that")
    reason = next((line.split("error:", 1)[1].strip() for line in text.splitlines()
                   if "WeightsUnpickler error:" in line), None)
    if reason is None:
        m = re.search(r"unsupported GLOBAL ([\w.]+)", text)
        if m:
            reason = (f"it calls {printable(m.group(1))}, which a state dict never needs: "
                      "the file would run code when unpickled")
        elif "Weights only load failed" in text:
            reason = "it holds objects bilin does not unpickle"
        else:
            reason = _first_line(exc)
    return (f"{printable(path)}: cannot be read safely as a PyTorch state dict "
            f"({printable(reason, 160)}); bilin runs no code from a file: save the model's "
            "state_dict() with torch.save, or as .safetensors")


def _torch_reader(path: Path) -> tuple[dict[str, TensorInfo], Callable, dict, list[str]]:
    """A PyTorch file, read without reading its tensors where the format allows: a
    torch.save zip is memory-mapped (a compressed one is opened on the meta device and
    inflated when a tensor is first read, if it fits in memory); a legacy pickle is read."""
    regular_file(path, "checkpoint file")
    try:
        import torch
    except ImportError:
        raise BilinError(
            f"{printable(path)}: reading PyTorch state dicts needs torch; install it with "
            "pip install 'bilin[torch]' or convert the file to .safetensors"
        ) from None
    with open(path, "rb") as fh:
        is_zip = fh.read(4) == b"PK\x03\x04"
    compressed, data_bytes = _zip_records(path) if is_zip else (False, 0)
    how = ("meta" if compressed else "mmap") if is_zip else "read"

    def load(how: str):
        stand_ins: list = []
        while True:
            try:
                with torch.serialization.safe_globals(stand_ins):
                    obj = _torch_load(torch, path, how)
                break
            except MemoryError:
                # A pickle's declared lengths are allocated up front: a small file that
                # asks for gigabytes is damaged, not too large.
                size = path.stat().st_size
                raise BilinError(f"{printable(path)}: cannot be read: unpickling it asks for "
                                 f"more memory than there is, from a file of {size:,} bytes "
                                 "(a damaged pickle, or one too large for this machine)"
                                 ) from None
            except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
                blocked = _unsupported_global(exc)
                if (blocked is None or len(stand_ins) >= MAX_STAND_INS
                        or any(_full_name(c) == blocked for c in stand_ins)):
                    # (A stand-in that did not take: the name is not a class torch can
                    # resolve, and asking again would only repeat the refusal.)
                    raise BilinError(_unsafe_pickle_text(path, exc, blocked, len(stand_ins))
                                     ) from None
                # A training script's own class (a Config dataclass beside the state dict):
                # an inert stand-in that only records its fields, none of its code runs.
                try:
                    stand_ins.append(_stand_in(blocked))
                except (TypeError, ValueError):  # not a name a class can have (a NUL in it)
                    raise BilinError(_unsafe_pickle_text(path, exc, blocked, 0)) from None
        try:
            with warnings.catch_warnings():  # torch's objects warn when shown (TypedStorage)
                warnings.simplefilter("ignore")
                return unwrap_state_dict(obj, torch)
        except BilinError as exc:
            raise BilinError(f"{printable(path)}: {exc}") from None

    sd, extras, how_found = load(how)
    infos = {}
    for k, v in sd.items():
        if v.layout != torch.strided or v.is_quantized:
            raise BilinError(f"{printable(path)}: tensor {printable(k)!r} is sparse or "
                             "quantized; bilin reads dense tensors")
        spelled = _TORCH_DTYPES.get(str(v.dtype).removeprefix("torch."), str(v.dtype))
        infos[k] = TensorInfo(tuple(int(s) for s in v.shape), spelled)
    state = {"sd": sd if how != "meta" else None}

    def tensors() -> dict:
        if state["sd"] is None:  # compressed records: inflate them all, once
            limit, source = memory_limit()
            if data_bytes > limit:
                raise BilinError(f"{printable(path)}: its compressed tensors inflate to "
                                 f"{_size_text(data_bytes)}, more than the "
                                 f"{_size_text(limit)} {source}")
            real, _, _ = load("read")
            if {k: (tuple(v.shape), v.dtype) for k, v in real.items()} != \
                    {k: (tuple(v.shape), v.dtype) for k, v in sd.items()}:
                raise BilinError(f"{printable(path)}: reads differently twice; the file "
                                 "changed while bilin read it")
            state["sd"] = real
        return state["sd"]

    def read(key: str, rows: slice | None = None) -> np.ndarray:
        t = tensors()[key].detach()
        if rows is not None:
            t = t[rows]
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()
        return t.numpy()

    return infos, read, extras, how_found


def _open_file(path: Path):
    """(infos, read, container, metadata, extras, how) of one weights file.

    The format is told by the file's first bytes, not its name: researchers save
    safetensors as ``.bin`` and torch zips as ``.safetensors`` often enough."""
    regular_file(path, "checkpoint file")
    with open(path, "rb") as fh:
        magic = fh.read(9)
    # A safetensors header (8-byte length, then "{") is checked first: its length bytes can
    # be anything, "PK" or 0x80 included. Else torch.save's zip, or its legacy pickle.
    safetensors_like = len(magic) == 9 and magic[8:9] == b"{"
    torch_like = not safetensors_like and (magic[:2] == b"PK" or magic[:1] == b"\x80")
    if torch_like or (path.suffix.lower() in _TORCH_SUFFIXES and not safetensors_like):
        infos, read, extras, how = _torch_reader(path)
        return infos, read, "pytorch", {}, extras, how
    if not safetensors_like and path.suffix.lower() != ".safetensors":
        raise BilinError(
            f"{printable(path)}: not a checkpoint (expected a .safetensors file, a PyTorch "
            ".pt/.bin state dict, or a directory with config.json)"
        )
    infos, read, metadata = _safetensors_reader(path)
    return infos, read, "safetensors", metadata, {}, []


def _confined(folder: Path, name: object, index_path: Path) -> Path:
    """Shard ``name`` of an index, which must be a plain file name inside ``folder``."""
    if not isinstance(name, str) or not name:
        raise BilinError(f"{printable(index_path)}: weight_map values must be file names")
    candidate = folder / name
    base = folder.resolve()
    if os.path.isabs(name) or not candidate.resolve().is_relative_to(base):
        raise BilinError(
            f"{printable(index_path)}: shard {printable(name)!r} is outside the model folder; "
            "refusing to follow it"
        )
    return candidate


def _open_sharded(index_path: Path):
    index = read_json(index_path, "shard index")
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise BilinError(f"{printable(index_path)}: no 'weight_map' object in the shard index")
    folder = index_path.parent
    shards: dict[str, tuple] = {}
    for name in weight_map.values():
        shard = _confined(folder, name, index_path)
        if name in shards:
            continue
        if not shard.exists():
            raise BilinError(f"{printable(index_path)}: shard {printable(name)} is missing")
        infos, read, _, _, _, _ = _open_file(shard)
        shards[name] = (infos, read)
    infos: dict[str, TensorInfo] = {}
    owner: dict[str, str] = {}
    for key, name in weight_map.items():
        shard_infos = shards[name][0]
        if key not in shard_infos:
            raise BilinError(f"{printable(index_path)}: index says {printable(key)!r} is in "
                             f"{printable(name)}, but it is not")
        infos[key] = shard_infos[key]
        owner[key] = name

    def read(key: str, rows: slice | None = None) -> np.ndarray:
        return shards[owner[key]][1](key, rows)

    files = [index_path] + [folder / n for n in shards]
    return infos, read, files


_DIR_CANDIDATES = ("model.safetensors", "pytorch_model.bin", "model.pt", "model.pth",
                   "checkpoint.pt", "model.ckpt")
_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def _weights_in(folder: Path) -> Path:
    # exists(), not is_file(): a FIFO under a weights name is refused by name, not skipped.
    found = [folder / c for c in _DIR_CANDIDATES if (folder / c).exists()]
    if found:
        return found[0]
    singles = sorted(p for p in folder.iterdir()
                     if p.suffix.lower() in _WEIGHT_SUFFIXES and p.is_file())
    if len(singles) == 1:
        return singles[0]
    if len(singles) > 1:
        names = ", ".join(printable(p.name) for p in singles[:6])
        raise BilinError(f"{printable(folder)}: several weight files ({names}); name one of "
                         "them, or add a model.safetensors.index.json")
    raise BilinError(
        f"{printable(folder)}: no weights found (looked for model.safetensors, "
        "model.safetensors.index.json, pytorch_model.bin, *.pt, *.safetensors)"
    )


def open_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Open a checkpoint file or directory; reads headers and config, no tensor data.

    The path and every file read are registered as inputs of the running command
    (:func:`bilin_cli.storage.inputs.register_input`)."""
    p = Path(path)
    if not os.path.lexists(p):
        raise BilinError(f"{printable(p)}: no such file or directory")
    if not p.exists():
        raise BilinError(f"{printable(p)}: a broken symbolic link")
    metadata: dict = {}
    extras: dict = {}
    how: list[str] = []
    if p.is_dir():
        config_path = p / "config.json"
        index = next((p / n for n in _INDEXES if (p / n).exists()), None)
        if index is not None:
            infos, read, files = _open_sharded(index)
            container = "safetensors (sharded)" if index.name.startswith("model.") else \
                "pytorch (sharded)"
        else:
            weights = _weights_in(p)
            infos, read, container, metadata, extras, how = _open_file(weights)
            files = [weights]
    else:
        config_path = p.parent / "config.json"
        infos, read, container, metadata, extras, how = _open_file(p)
        files = [p]
    config = read_json(config_path, "config.json") if config_path.exists() else {}
    if config_path.exists():
        files = [*files, config_path]
    if container == "safetensors" and not p.is_dir():
        # A config stored inside the file (bilin truncate -o X.safetensors) is the most
        # specific description of it, so it wins over a config.json beside it.
        config = {**config, **embedded_config(metadata)}
    if not infos:
        raise BilinError(f"{printable(p)}: the checkpoint holds no tensors")
    for f in (p, *files):  # no output of this command may replace them
        register_input(f)
    return Checkpoint(p, infos, config, files, read, container, extras, how)

"""Reading tensors from checkpoint containers, lazily and without torch where possible.

Containers: a ``.safetensors`` file (memory-mapped, parsed here so that bf16/f16
need no torch), a Hugging Face style directory (``model.safetensors`` or a sharded
``model.safetensors.index.json``, plus ``config.json``), and PyTorch ``.pt``/``.bin``
state dicts, read with ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bilin_cli.errors import BilinError

# safetensors dtype -> (numpy storage dtype, bytes per element)
_ST_DTYPES: dict[str, str] = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",  # stored as raw 16-bit words, widened to float32 on read
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}
_TORCH_SUFFIXES = {".pt", ".pth", ".bin"}
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorInfo:
    """What the header says about one tensor, before any data is read."""

    shape: tuple[int, ...]
    dtype: str  # safetensors spelling: F32, BF16, ...

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class Checkpoint:
    """A lazy view of a checkpoint: tensor names and shapes now, data on demand."""

    path: Path
    tensors: dict[str, TensorInfo]
    config: dict
    files: list[Path]
    _read: Callable[[str, slice | None], np.ndarray] = field(repr=False)
    container: str = "safetensors"

    def get(self, key: str, dtype: np.dtype | type = np.float32,
            rows: slice | None = None) -> np.ndarray:
        """Tensor ``key`` (only ``rows`` of it, if given) as a float array of ``dtype``.

        Rows are cut before any conversion, so one row of a bf16 unembedding costs one
        row, not the whole matrix widened to float."""
        if key not in self.tensors:
            raise BilinError(f"{self.path}: no tensor named {key!r}")
        return np.asarray(self._read(key, rows)).astype(dtype, copy=False)

    @property
    def file_size(self) -> int:
        return sum(f.stat().st_size for f in self.files)


def _bf16_to_f32(words: np.ndarray) -> np.ndarray:
    # bf16 is the top half of an IEEE float32, so widening is a 16-bit shift.
    return (words.astype(np.uint32) << 16).view(np.float32)


def _parse_safetensors_header(path: Path) -> tuple[dict[str, TensorInfo], dict, int]:
    """Return (tensor infos, raw header entries, byte offset of the data region)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise BilinError(f"{path}: not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", head)
        if n == 0 or n > _MAX_HEADER or 8 + n > size:
            raise BilinError(
                f"{path}: not a valid safetensors file (header length {n} does not fit "
                f"a {size}-byte file); is it truncated or another format?"
            )
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError
    except (UnicodeDecodeError, ValueError):
        raise BilinError(f"{path}: not a valid safetensors file (unreadable header)") from None
    data_start = 8 + n
    data_size = size - data_start
    infos: dict[str, TensorInfo] = {}
    entries: dict = {"__metadata__": header.get("__metadata__") or {}}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype, shape = entry["dtype"], tuple(int(s) for s in entry["shape"])
            begin, end = (int(o) for o in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise BilinError(f"{path}: corrupted safetensors header at tensor {key!r}") from None
        if dtype not in _ST_DTYPES:
            raise BilinError(f"{path}: tensor {key!r} has unsupported dtype {dtype}")
        numel = int(np.prod(shape, dtype=np.int64))
        if not (0 <= begin <= end <= data_size) or end - begin != numel * np.dtype(
            _ST_DTYPES[dtype]
        ).itemsize:
            raise BilinError(
                f"{path}: corrupted or truncated safetensors file (tensor {key!r} needs bytes "
                f"{begin}..{end} of a {data_size}-byte data section)"
            )
        infos[key] = TensorInfo(shape, dtype)
        entries[key] = (dtype, shape, begin, end)
    return infos, entries, data_start


def embedded_config(path: Path) -> dict:
    """A config that bilin stored in a safetensors file's metadata (``bilin_config``)."""
    _, entries, _ = _parse_safetensors_header(path)
    raw = entries["__metadata__"].get("bilin_config") if isinstance(
        entries["__metadata__"], dict) else None
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _safetensors_reader(path: Path) -> tuple[dict[str, TensorInfo], Callable[[str], np.ndarray]]:
    infos, entries, data_start = _parse_safetensors_header(path)
    mm: list[np.memmap] = []

    def read(key: str, rows: slice | None = None) -> np.ndarray:
        if not mm:
            if os.path.getsize(path) == data_start:
                mm.append(np.zeros(0, np.uint8))
            else:
                mm.append(np.memmap(path, dtype=np.uint8, mode="r", offset=data_start))
        dtype, shape, begin, end = entries[key]
        arr = mm[0][begin:end].view(_ST_DTYPES[dtype]).reshape(shape)
        if rows is not None:
            arr = arr[rows]
        if dtype == "BF16":
            return _bf16_to_f32(arr)
        if dtype == "F16":
            return arr.astype(np.float32)
        return arr

    return infos, read


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BilinError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BilinError(f"{path}: expected a JSON object")
    return data


def _flatten_state_dict(obj, torch, prefix: str = "") -> dict:
    """Flatten nested dicts of tensors; anything that is not a tensor is an error."""
    out: dict = {}
    if not isinstance(obj, dict):
        raise BilinError(
            f"expected a state dict (a dict of tensors), found {type(obj).__name__}"
        )
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten_state_dict(value, torch, name + "."))
        elif isinstance(value, torch.Tensor):
            out[name] = value
        else:
            raise BilinError(
                f"holds a non-tensor entry {name!r} ({type(value).__name__}); save only "
                "the model's state_dict() with torch.save"
            )
    return out


def _torch_reader(path: Path) -> tuple[dict[str, TensorInfo], Callable[[str], np.ndarray]]:
    try:
        import torch
    except ImportError:
        raise BilinError(
            f"{path}: reading PyTorch state dicts needs torch; install it with "
            "pip install 'bilin[torch]' or convert the file to .safetensors"
        ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BilinError(
            f"{path}: cannot be read as a PyTorch state dict with weights_only=True ({first})"
        ) from None
    try:
        sd = _flatten_state_dict(obj, torch)
    except BilinError as exc:
        raise BilinError(f"{path}: {exc}") from None
    spelled = {
        torch.float64: "F64", torch.float32: "F32", torch.float16: "F16",
        torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32",
        torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
    }
    infos = {
        k: TensorInfo(tuple(v.shape), spelled.get(v.dtype, str(v.dtype))) for k, v in sd.items()
    }

    def read(key: str, rows: slice | None = None) -> np.ndarray:
        t = sd[key].detach()
        if rows is not None:
            t = t[rows]
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()
        return t.numpy()

    return infos, read


def _open_file(path: Path) -> tuple[dict[str, TensorInfo], Callable[[str], np.ndarray], str]:
    if path.suffix.lower() in _TORCH_SUFFIXES:
        infos, read = _torch_reader(path)
        return infos, read, "pytorch"
    if path.suffix.lower() != ".safetensors":
        with open(path, "rb") as fh:
            magic = fh.read(9)
        if magic[:2] == b"PK":  # torch.save's zip container under an unusual name
            infos, read = _torch_reader(path)
            return infos, read, "pytorch"
        if len(magic) < 9 or magic[8:9] != b"{":
            raise BilinError(
                f"{path}: not a checkpoint (expected a .safetensors file, a PyTorch "
                ".pt/.bin state dict, or a directory with config.json)"
            )
    infos, read = _safetensors_reader(path)
    return infos, read, "safetensors"


def _open_sharded(index_path: Path) -> tuple[dict, Callable[[str], np.ndarray], list[Path]]:
    index = _read_json(index_path)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise BilinError(f"{index_path}: no 'weight_map' in the shard index")
    shards: dict[str, tuple[dict, Callable]] = {}
    infos: dict[str, TensorInfo] = {}
    owner: dict[str, str] = {}
    for name in sorted(set(weight_map.values())):
        shard = index_path.parent / name
        if not shard.is_file():
            raise BilinError(f"{index_path}: shard {name} is missing")
        shard_infos, shard_read = _safetensors_reader(shard)
        shards[name] = (shard_infos, shard_read)
    for key, name in weight_map.items():
        shard_infos = shards[name][0]
        if key not in shard_infos:
            raise BilinError(f"{index_path}: index says {key!r} is in {name}, but it is not")
        infos[key] = shard_infos[key]
        owner[key] = name

    def read(key: str, rows: slice | None = None) -> np.ndarray:
        return shards[owner[key]][1](key, rows)

    files = [index_path] + [index_path.parent / n for n in shards]
    return infos, read, files


_DIR_CANDIDATES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.pt",
    "model.pth",
)


def open_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Open a checkpoint file or directory; reads headers and config, no tensor data."""
    p = Path(path)
    if not p.exists():
        raise BilinError(f"{p}: no such file or directory")
    if p.is_dir():
        config_path = p / "config.json"
        index = p / "model.safetensors.index.json"
        if index.is_file():
            infos, read, files = _open_sharded(index)
            container = "safetensors (sharded)"
        else:
            found = [p / c for c in _DIR_CANDIDATES if (p / c).is_file()]
            if not found:
                singles = sorted(p.glob("*.safetensors"))
                if len(singles) == 1:
                    found = singles
            if not found:
                raise BilinError(
                    f"{p}: no weights found (looked for model.safetensors, "
                    "model.safetensors.index.json, pytorch_model.bin, model.pt)"
                )
            infos, read, container = _open_file(found[0])
            files = [found[0]]
    else:
        config_path = p.parent / "config.json"
        infos, read, container = _open_file(p)
        files = [p]
    config = _read_json(config_path) if config_path.is_file() else {}
    if config_path.is_file():
        files = [*files, config_path]
    if container == "safetensors" and not p.is_dir():
        # A config stored inside the file (bilin truncate -o X.safetensors) is the most
        # specific description of it, so it wins over a config.json beside it.
        config = {**config, **embedded_config(p)}
    if not infos:
        raise BilinError(f"{p}: the checkpoint holds no tensors")
    return Checkpoint(p, infos, config, files, read, container)

"""Fuzzing the checkpoint loader: mutated safetensors files, forged headers, random configs.

The only acceptable outcomes of opening a checkpoint, recognising its layout and reading
its tensors are success or :class:`bilin_cli.core.errors.BilinError` (which the CLI turns into
one ``error:`` line); any other exception is a bug. Hypothesis runs derandomized with no
example database, so CI sees the same examples every time, and each test is bounded by
``max_examples`` so the whole file takes a few seconds.
"""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bilin_cli.core.errors import BilinError
from bilin_cli.storage.containers import open_checkpoint
from bilin_cli.storage.layouts import recognise

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _tensors() -> dict[str, np.ndarray]:
    r = np.random.default_rng(0)
    return {"embed.weight": r.standard_normal((4, 6)).astype(np.float32),
            "blocks.0.weight": r.standard_normal((8, 4)).astype(np.float32),
            "blocks.0.bias": r.standard_normal(8).astype(np.float32),
            "head.weight": r.standard_normal((3, 4)).astype(np.float32)}


def _pack(header: object, data: bytes) -> bytes:
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack("<Q", len(text)) + text + data


def _valid() -> tuple[bytes, int]:
    """A valid safetensors file written by hand, and where its header ends."""
    header, chunks, off = {}, [], 0
    for name, arr in _tensors().items():
        raw = arr.tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    text = json.dumps(header).encode()
    return _pack(text, b"".join(chunks)), 8 + len(text)


VALID, HEADER_END = _valid()


def exercise(path: Path) -> None:
    """Open, recognise, read every tensor (whole and one row): BilinError or success only."""
    try:
        ckpt = open_checkpoint(path)
    except BilinError:
        return
    try:
        model = recognise(ckpt)
        for i in range(model.n_layers):
            model.layer(i)
        model.embed()
        model.head()
    except BilinError:
        pass
    for key, info in ckpt.tensors.items():
        try:
            ckpt.get(key)
        except BilinError:
            pass
        if info.shape:
            try:
                ckpt.get(key, rows=slice(0, 1))
            except BilinError:
                pass


def run_file(raw: bytes, config: str | None = None, name: str = "model.safetensors") -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "m"
        folder.mkdir()
        (folder / name).write_bytes(raw)
        if config is not None:
            (folder / "config.json").write_text(config)
        exercise(folder)
        exercise(folder / name)


def test_the_unmutated_file_loads():
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "model.safetensors"
        p.write_bytes(VALID)
        ckpt = open_checkpoint(p)
        assert recognise(ckpt).n_layers == 1
        assert np.array_equal(ckpt.get("head.weight"), _tensors()["head.weight"])


# Positions biased toward the header, where a flipped byte changes the structure.
positions = st.one_of(st.integers(0, HEADER_END - 1), st.integers(0, len(VALID) - 1))


@FUZZ
@given(flips=st.lists(st.tuples(positions, st.integers(0, 255)), min_size=1, max_size=6))
def test_flipped_bytes(flips):
    raw = bytearray(VALID)
    for pos, value in flips:
        raw[pos] = value
    run_file(bytes(raw))


@FUZZ
@given(cut=st.integers(0, len(VALID) - 1), tail=st.binary(max_size=16))
def test_truncated_or_extended(cut, tail):
    run_file(VALID[:cut] + tail)


JSONISH = st.text(alphabet='{}[]",:0123456789-.eE+ ntrufalsNIFBU_x\\\x00\x1b', max_size=24)


@FUZZ
@given(start=st.integers(8, HEADER_END), length=st.integers(0, 30), insert=JSONISH,
       fix_length=st.booleans())
def test_spliced_header_text(start, length, insert, fix_length):
    header = VALID[8:HEADER_END]
    end = min(HEADER_END - 8, start - 8 + length)
    new = header[: start - 8] + insert.encode("utf-8", "surrogatepass") + header[end:]
    n = len(new) if fix_length else len(header)
    run_file(struct.pack("<Q", n) + new + VALID[HEADER_END:])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12,
)
NAMES = ["embed.weight", "blocks.0.weight", "blocks.0.bias", "blocks.1.weight", "head.weight",
         "left.weight", "right.weight", "transformer.wte.weight", "lm_head.weight",
         "transformer.h.0.mlp.w.weight", "transformer.h.0.mlp.p.weight",
         "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight",
         "model.layers.0.mlp.down_proj.weight", "model.embed_tokens.weight", "__metadata__"]
DTYPES = ["F32", "F16", "BF16", "F64", "I64", "I32", "U8", "BOOL", "F8_E4M3", "F128", "", "f32"]
entries = st.fixed_dictionaries(
    {"dtype": st.sampled_from(DTYPES) | json_values,
     "shape": st.lists(st.integers(-2, 2**66), max_size=4) | st.lists(st.integers(0, 12),
                                                                       max_size=3) | json_values,
     "data_offsets": st.lists(st.integers(-4, 600), min_size=2, max_size=2) | json_values},
)


@FUZZ
@given(header=st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=10),
                              entries | json_values, max_size=5),
       data=st.binary(max_size=600))
def test_random_header_dicts(header, data):
    run_file(_pack(header, data))


@st.composite
def plausible(draw):
    """Well-formed files of a known layout whose shapes are nearly, not always, consistent."""
    d, h, o, n_in = (draw(st.integers(1, 5)) for _ in range(4))
    kind = draw(st.sampled_from(["image", "toy", "transformer", "llama"]))
    shapes = {
        "image": {"embed.weight": (d, n_in), "blocks.0.weight": (2 * h, d),
                  "blocks.0.bias": (2 * h,), "head.weight": (o, h)},
        "toy": {"left.weight": (h, d), "right.weight": (h, d), "head.weight": (o, h)},
        "transformer": {"transformer.wte.weight": (o, d), "lm_head.weight": (o, d),
                        "transformer.h.0.mlp.w.weight": (2 * h, d),
                        "transformer.h.0.mlp.p.weight": (d, h)},
        "llama": {"model.embed_tokens.weight": (o, d), "lm_head.weight": (o, d),
                  "model.layers.0.mlp.gate_proj.weight": (h, d),
                  "model.layers.0.mlp.up_proj.weight": (h, d),
                  "model.layers.0.mlp.down_proj.weight": (d, h)},
    }[kind]
    header, chunks, off = {}, [], 0
    for name, shape in shapes.items():
        if draw(st.integers(0, 9)) == 0:
            continue  # drop a tensor
        if draw(st.integers(0, 4)) == 0:  # perturb its shape
            shape = tuple(draw(st.lists(st.integers(0, 6), min_size=0, max_size=3)))
        dtype = draw(st.sampled_from(["F32", "F32", "F16", "BF16", "F64", "I32", "U8"]))
        itemsize = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I32": 4, "U8": 1}[dtype]
        n = int(np.prod(shape, dtype=np.int64)) * itemsize
        chunks.append(draw(st.binary(min_size=n, max_size=n)))
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(
            st.sampled_from(["bilin_config", "format", "x"]),
            st.text(max_size=10) | json_values.map(json.dumps), max_size=2))
    return _pack(header, b"".join(chunks))


CONFIG_KEYS = ["residual", "classes", "outputs", "input_shape", "bilin_map", "vocab",
               "hidden_act", "hidden_activation", "bias", "test_split", "layout", "n_layer"]
configs = (st.none()
           | st.fixed_dictionaries({}, optional={k: json_values for k in CONFIG_KEYS}).map(
               json.dumps)
           | json_values.map(json.dumps) | JSONISH)


@FUZZ
@given(raw=plausible(), config=configs)
def test_plausible_layouts_with_random_configs(raw, config):
    run_file(raw, config)


@FUZZ
@given(weight_map=json_values | st.dictionaries(
    st.sampled_from(NAMES) | st.text(max_size=6),
    st.sampled_from(["model-1.safetensors", "../m-out.safetensors", "/etc/passwd", ".", "",
                     "config.json", "model.safetensors.index.json"]) | json_values,
    max_size=4))
def test_random_shard_indexes(weight_map):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "m"
        folder.mkdir()
        (folder / "model-1.safetensors").write_bytes(VALID)
        (Path(tmp) / "m-out.safetensors").write_bytes(VALID)
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"weight_map": weight_map}))
        exercise(folder)

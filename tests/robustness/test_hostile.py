"""A hostile corpus: every malformed input a user (or an attacker) can hand bilin.

Issue 12 item 8: every hostile input gets one ``error:`` line and exit 1 (or 2 for a
usage error), never a traceback, never a raw escape sequence on the terminal, nothing
on stdout and no file left behind. Every input is generated at run time in a temporary
folder (no binary fixtures). The corpus is data: ``CASES`` is a list of
``Case(id, build, argv)``; ``build(root)`` writes the inputs under ``root`` and ``argv``
refers to them as ``{r}``. Cases that could hang (FIFOs, sockets, devices) run through a
subprocess with a timeout so a hang fails the case instead of freezing the suite.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import write_transformer
from safetensors.numpy import save_file

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# Sizes of the small models every case starts from.
D, N_IN, N_CLS = 6, 9, 4  # image classifier: embed (D, N_IN), blocks.0 (2D, D), head (N_CLS, D)
LM_D, LM_H, LM_VOCAB = 8, 10, 11  # transformer / llama
N_BAD = 7  # how many NaN / Inf entries a poisoned tensor holds (a number no shape here uses)
DEEP = 100_000  # nesting depth of the "deeply nested JSON" documents


# --------------------------------------------------------------------------- writers


def _rng(seed=0):
    return np.random.default_rng(seed)


def image_tensors(bias=True, seed=0, d=D, n_in=N_IN, n_cls=N_CLS) -> dict[str, np.ndarray]:
    r = _rng(seed)
    t = {"embed.weight": r.standard_normal((d, n_in)) / 3,
         "blocks.0.weight": r.standard_normal((2 * d, d)) / 2,
         "head.weight": r.standard_normal((n_cls, d)) / 2}
    if bias:
        t["blocks.0.bias"] = r.standard_normal(2 * d) / 2
    return {k: np.ascontiguousarray(v, np.float32) for k, v in t.items()}


def transformer_tensors(seed=2, d=LM_D, h=LM_H, vocab=LM_VOCAB) -> dict[str, np.ndarray]:
    r = _rng(seed)
    t = {"transformer.wte.weight": r.standard_normal((vocab, d)),
         "lm_head.weight": r.standard_normal((vocab, d)),
         "transformer.h.0.mlp.w.weight": r.standard_normal((2 * h, d)) / 3,
         "transformer.h.0.mlp.p.weight": r.standard_normal((d, h)) / 3,
         "transformer.h.0.attn.qkv.weight": r.standard_normal((3 * d, d))}
    return {k: np.ascontiguousarray(v, np.float32) for k, v in t.items()}


def llama_tensors(seed=3, d=LM_D, h=LM_H, vocab=LM_VOCAB) -> dict[str, np.ndarray]:
    r = _rng(seed)
    pre = "model.layers.0.mlp."
    t = {"model.embed_tokens.weight": r.standard_normal((vocab, d)),
         "lm_head.weight": r.standard_normal((vocab, d)),
         pre + "gate_proj.weight": r.standard_normal((h, d)) / 3,
         pre + "up_proj.weight": r.standard_normal((h, d)) / 3,
         pre + "down_proj.weight": r.standard_normal((d, h)) / 3}
    return {k: np.ascontiguousarray(v, np.float32) for k, v in t.items()}


def toy_tensors(seed=1) -> dict[str, np.ndarray]:
    r = _rng(seed)
    t = {"left.weight": r.standard_normal((5, 4)), "right.weight": r.standard_normal((5, 4)),
         "head.weight": r.standard_normal((3, 5))}
    return {k: np.ascontiguousarray(v, np.float32) for k, v in t.items()}


def custom_tensors(seed=4) -> dict[str, np.ndarray]:
    """Tensors with names no layout knows, for --map cases (h=5, d=6, n_in=9, o=4)."""
    r = _rng(seed)
    shapes = {"enc.weight": (6, N_IN), "mix.a": (5, 6), "mix.b": (5, 6), "mix.wv": (10, 6),
              "mix.odd": (9, 6), "mix.c": (5, 7), "mix.p": (4, 5), "mix.p_bad": (4, 6),
              "out.weight": (4, 5), "out.bad": (4, 3), "enc.bad": (7, N_IN),
              "bias.5": (5,), "bias.10": (10,), "bias.3": (3,), "bias.4": (4,),
              "vec.1d": (30,), "cube.3d": (5, 6, 1),
              "tpl.0.wv": (10, 6), "tpl.0.p": (4, 5)}
    return {k: np.ascontiguousarray(r.standard_normal(s), np.float32) for k, s in shapes.items()}


def st_layout(tensors: dict[str, np.ndarray]) -> tuple[dict, bytes]:
    """The safetensors header dict and data section of ``tensors`` (F32), hand-made."""
    header, chunks, off = {}, [], 0
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr, "<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    return header, b"".join(chunks)


def st_pack(header: dict | None, data: bytes, *, raw_header: bytes | None = None,
            length: int | None = None) -> bytes:
    """8-byte little-endian header length + header JSON + data, with any of them forged."""
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    n = len(text) if length is None else length
    return struct.pack("<Q", n) + text + data


def save(path: Path, tensors: dict[str, np.ndarray], config: dict | None = None) -> Path:
    """A checkpoint folder ``path`` (model.safetensors + optional config.json)."""
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()},
              str(path / "model.safetensors"))
    if config is not None:
        (path / "config.json").write_text(json.dumps(config))
    return path


def lm_config(vocab=LM_VOCAB) -> dict:
    return {"n_layer": 1, "d_model": LM_D, "vocab": [chr(97 + i) for i in range(vocab)]}


def write_data(path: Path, n=20, n_in=N_IN, n_cls=N_CLS, **override) -> Path:
    r = _rng(5)
    arrays = {"x": r.random((n, n_in)).astype(np.float32), "y": r.integers(0, n_cls, n)}
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def write_sae(path: Path, d=LM_D, f=12, seed=6, enc=None, cfg_text=None, saelens=False) -> Path:
    r = _rng(seed)
    e = r.standard_normal((f, d)).astype(np.float32) if enc is None else enc
    dec = r.standard_normal((d, f)).astype(np.float32)
    path.mkdir(parents=True, exist_ok=True)
    if saelens:
        save_file({"W_enc": np.ascontiguousarray(e.T), "W_dec": np.ascontiguousarray(dec.T),
                   "b_enc": np.zeros(f, np.float32), "b_dec": np.zeros(d, np.float32)},
                  str(path / "sae_weights.safetensors"))
        (path / "cfg.json").write_text(cfg_text if cfg_text is not None
                                       else json.dumps({"d_in": d, "d_sae": f}))
    else:
        save_file({"w_enc.weight": e, "w_dec.weight": dec, "b_dec": np.zeros(d, np.float32)},
                  str(path / "model.safetensors"))
        (path / "config.json").write_text(cfg_text if cfg_text is not None
                                          else json.dumps({"d_model": d, "n_features": f}))
    return path


def base(root: Path) -> None:
    """The valid inputs most option cases start from: an image model and its data."""
    save(root / "m", image_tensors(), {"classes": [f"c{i}" for i in range(N_CLS)]})
    write_data(root / "data.npz")


def base_lm(root: Path) -> None:
    save(root / "lm", transformer_tensors(), lm_config())
    write_sae(root / "sae_in")
    write_sae(root / "sae_out")


def deep_json(depth=DEEP, inner="1") -> str:
    return "[" * depth + inner + "]" * depth


def deep_dict(depth=DEEP) -> str:
    return '{"a":' * depth + "1" + "}" * depth


# --------------------------------------------------------------------------- the corpus


@dataclass
class Case:
    id: str
    build: Callable[[Path], None]
    argv: list[str]
    codes: frozenset = frozenset({1})  # acceptable exit codes
    must: list[str] = field(default_factory=list)  # regexes the error line must match
    subprocess: bool = False  # could hang: run it in a child process with a timeout


CASES: list[Case] = []


def case(id, build, argv, codes=(1,), must=(), subprocess=False):
    CASES.append(Case(id, build, list(argv), frozenset(codes), list(must), subprocess))


USAGE = (1, 2)  # an option value: a usage error (2) or a one-line error (1)


# ---- safetensors containers: forged header length, header text and header fields

def st_file(make: Callable[[dict, bytes], bytes], tensors=image_tensors, name="m.safetensors"):
    def build(root: Path) -> None:
        header, data = st_layout(tensors())
        (root / name).write_bytes(make(header, data))
    return build


def forge(fn: Callable[[dict, bytes], bytes | None]):
    """A header forgery: ``fn`` edits the header dict in place (and may return new data)."""
    def make(header, data):
        new = fn(header, data)
        return st_pack(header, data if new is None else new)
    return make


def entry(key: str, **changes):
    """A header forgery: change fields of tensor ``key``'s entry."""
    def make(header, data):
        header[key].update(changes)
        return st_pack(header, data)
    return make


ST = ["info", "{r}/m.safetensors"]
ST_EIG = ["eig", "{r}/m.safetensors", "--class", "0"]
M_EIG = ["eig", "{r}/m", "--class", "0"]

case("st_header_length_beyond_file", st_file(lambda h, d: st_pack(h, d, length=10**6)), ST)
case("st_header_length_zero", st_file(lambda h, d: st_pack(h, d, length=0)), ST)
case("st_header_length_huge", st_file(lambda h, d: st_pack(h, d, length=2**63)), ST)
case("st_header_length_max_u64", st_file(lambda h, d: st_pack(h, d, length=2**64 - 1)), ST)
case("st_header_length_short_by_one",
     st_file(lambda h, d: st_pack(h, d, length=len(json.dumps(h)) - 1)), ST)
case("st_file_empty", st_file(lambda h, d: b""), ST)
case("st_file_five_bytes", st_file(lambda h, d: b"\x05\x00\x00\x00\x00"), ST)
case("st_header_not_utf8", st_file(lambda h, d: st_pack(None, d, raw_header=b'{"\xff\xfe": 1}')),
     ST)
case("st_header_is_list", st_file(lambda h, d: st_pack([1, 2], d)), ST)
case("st_header_is_number", st_file(lambda h, d: st_pack(42, d)), ST)
case("st_header_is_string", st_file(lambda h, d: st_pack("weights", d)), ST)
case("st_header_is_null", st_file(lambda h, d: st_pack(None, d, raw_header=b"null")), ST)
case("st_header_nan_constant",
     st_file(lambda h, d: st_pack(None, d, raw_header=json.dumps(h).replace("[0,", "[NaN,", 1)
                                  .encode())), ST)
case("st_header_deep_list",
     st_file(lambda h, d: st_pack(None, d, raw_header=f'{{"x": {deep_json()}}}'.encode())), ST)
case("st_header_deep_metadata",
     st_file(lambda h, d: st_pack(None, d, raw_header=(
         json.dumps(h)[:-1] + f', "__metadata__": {deep_dict()}}}').encode())), ST)
case("st_dtype_number", st_file(entry("head.weight", dtype=5)), ST)
case("st_dtype_null", st_file(entry("head.weight", dtype=None)), ST)
case("st_dtype_list", st_file(entry("head.weight", dtype=["F32"])), ST)
case("st_dtype_unknown", st_file(entry("head.weight", dtype="F128")), ST)
case("st_dtype_lowercase", st_file(entry("head.weight", dtype="f32")), ST)
case("st_shape_string", st_file(entry("head.weight", shape="46")), ST)
case("st_shape_floats", st_file(entry("head.weight", shape=[4.0, 6.0])), ST)
case("st_shape_null", st_file(entry("head.weight", shape=None)), ST)
case("st_shape_nested", st_file(entry("head.weight", shape=[[4], [6]])), ST)
case("st_shape_negative", st_file(entry("head.weight", shape=[-4, -6])), ST)
case("st_shape_beyond_u64", st_file(entry("head.weight", shape=[2**70, 1])), ST)
case("st_shape_bool", st_file(entry("head.weight", shape=[True, 24])), ST)
case("st_shape_product_wraps_int64",
     st_file(lambda h, d: st_pack({**h, "extra.weight": {"dtype": "F32", "shape": [2**32, 2**32],
                                                         "data_offsets": [len(d), len(d)]}}, d)),
     ST)
case("st_shape_product_wraps_eig",
     st_file(lambda h, d: st_pack({**h, "head.weight": {"dtype": "F32", "shape": [2**32, 2**32],
                                                        "data_offsets": [len(d), len(d)]}}, d),
             lambda: {k: v for k, v in image_tensors().items() if k != "head.weight"}),
     ST_EIG)
case("st_offsets_strings", st_file(forge(lambda h, d: h["head.weight"].update(
    data_offsets=[str(o) for o in h["head.weight"]["data_offsets"]]))), ST)
case("st_offsets_floats", st_file(forge(lambda h, d: h["head.weight"].update(
    data_offsets=[float(o) for o in h["head.weight"]["data_offsets"]]))), ST)
case("st_offsets_null", st_file(entry("head.weight", data_offsets=None)), ST)
case("st_offsets_one_number", st_file(entry("head.weight", data_offsets=96)), ST)
case("st_offsets_three", st_file(entry("head.weight", data_offsets=[0, 96, 192])), ST)
case("st_offsets_negative", st_file(entry("embed.weight", data_offsets=[-8, 208])), ST)
case("st_offsets_beyond_u64", st_file(entry("head.weight", data_offsets=[0, 2**65])), ST)
case("st_offsets_reversed", st_file(forge(lambda h, d: h["head.weight"].update(
    data_offsets=h["head.weight"]["data_offsets"][::-1]))), ST)
case("st_offsets_past_end", st_file(forge(lambda h, d: h["head.weight"].update(
    data_offsets=[len(d), len(d) + 96]))), ST)
case("st_offsets_overlap", st_file(forge(lambda h, d: h["head.weight"].update(
    data_offsets=[0, 96]))), ST)
case("st_offsets_gap", st_file(lambda h, d: st_pack(
    {k: {**v, "data_offsets": [v["data_offsets"][0] + 8, v["data_offsets"][1] + 8]}
     for k, v in h.items()}, b"\0" * 8 + d)), ST)
case("st_duplicate_keys",
     st_file(lambda h, d: st_pack(None, d + d[:96], raw_header=(
         json.dumps(h)[:-1] + ', "head.weight": {"dtype": "F32", "shape": [4, 6], '
         f'"data_offsets": [{len(d)}, {len(d) + 96}]}}}}').encode())), ST)
case("st_byte_count_mismatch", st_file(entry("head.weight", shape=[4, 5])), ST)
case("st_byte_count_mismatch_dtype", st_file(entry("head.weight", dtype="F64")), ST)
case("st_data_truncated", st_file(lambda h, d: st_pack(h, d[:-50])), ST_EIG)
case("st_data_trailing_bytes", st_file(lambda h, d: st_pack(h, d + b"\0" * 64)), ST)
case("st_entry_is_number",
     st_file(lambda h, d: st_pack({**h, "junk": 5}, d)), ST)
case("st_entry_missing_dtype", st_file(forge(lambda h, d: h["head.weight"].pop("dtype") and None)),
     ST)
case("st_metadata_list", st_file(lambda h, d: st_pack({**h, "__metadata__": [1, 2]}, d)), ST)
case("st_metadata_nested",
     st_file(lambda h, d: st_pack({**h, "__metadata__": {"a": {"b": 1}}}, d)), ST)
case("st_metadata_number_value",
     st_file(lambda h, d: st_pack({**h, "__metadata__": {"bilin_config": 5}}, d)), ST)
case("st_metadata_config_deep",
     st_file(lambda h, d: st_pack({**h, "__metadata__": {"bilin_config": deep_dict(5000)}}, d)),
     ST)
case("st_metadata_config_wrong_types",
     st_file(lambda h, d: st_pack({**h, "__metadata__": {
         "bilin_config": json.dumps({"residual": "yes", "classes": 5})}}, d)), ST_EIG)
case("st_f64_beyond_float32", lambda root: save(root / "m", {
    **image_tensors(), "head.weight": np.full((N_CLS, D), 1e300)}), M_EIG,
     must=["head.weight"])
case("st_f16_inf", lambda root: save(root / "m", {
    **image_tensors(), "head.weight": np.full((N_CLS, D), np.inf, np.float16)}), M_EIG,
     must=["head.weight", rf"\b{N_CLS * D}\b"])
case("st_no_tensors", st_file(lambda h, d: st_pack({"__metadata__": {}}, b"")), ST)


# ---- names from files reach the terminal escaped

def evil_names(name):
    def tensors():
        return {name: np.zeros((3, 3), np.float32), name + ".b": np.ones(2, np.float32)}
    return st_file(lambda h, d: st_pack(h, d), tensors)


for label, evil in (("esc", "\x1b[31mevil\x1b[0m"), ("newline", "evil\nerror: forged"),
                    ("bidi", "evil\u202etxt.exe"), ("osc_title", "\x1b]0;pwned\x07w"),
                    ("c1_csi", "\x9b31mevil")):
    case(f"name_{label}_unknown_layout", evil_names(evil), ST_EIG)


def evil_missing_key(root: Path) -> None:
    save(root / "m", image_tensors())
    (root / "map.json").write_text(json.dumps(
        {"layers": [{"wv": "\x1b[2J\x1b[31mgone"}], "head": "head.weight"}))


case("name_esc_in_map_key", evil_missing_key, ["info", "{r}/m", "--map", "{r}/map.json"])


def evil_shard_name(root: Path) -> None:
    save(root / "m", transformer_tensors(), lm_config())
    (root / "m" / "model.safetensors").rename(root / "m" / "real.safetensors")
    keys = list(transformer_tensors())
    wm = {k: "real.safetensors" for k in keys}
    wm[keys[0]] = "\x1b[31mshard\x1b[0m.safetensors"
    (root / "m" / "model.safetensors.index.json").write_text(json.dumps({"weight_map": wm}))


case("name_esc_in_shard_file", evil_shard_name, ["info", "{r}/m"])


def evil_path(root: Path) -> None:
    (root / "\x1b[31mdir").mkdir()


case("name_esc_in_path", evil_path, ["info", "{r}/\x1b[31mdir"])


# ---- config.json

def with_config(text: str | bytes, tensors=image_tensors):
    def build(root: Path) -> None:
        save(root / "m", tensors())
        raw = text if isinstance(text, bytes) else text.encode()
        (root / "m" / "config.json").write_bytes(raw)
    return build


M_INFO = ["info", "{r}/m"]
M_PLOT = ["plot", "{r}/m", "--class", "0", "-o", "p.png"]

case("cfg_invalid_json", with_config("{residual: true"), M_INFO)
case("cfg_is_list", with_config("[1, 2, 3]"), M_INFO)
case("cfg_is_string", with_config('"config"'), M_INFO)
case("cfg_deep", with_config(deep_json()), M_INFO)
case("cfg_deep_object", with_config(deep_dict()), M_INFO)
case("cfg_nan", with_config('{"residual": NaN}'), M_INFO)
case("cfg_not_utf8", with_config(b'{"\xff": 1}'), M_INFO)
case("cfg_residual_string", with_config('{"residual": "yes"}'), M_EIG)
case("cfg_residual_number", with_config('{"residual": 2}'), M_EIG)
case("cfg_classes_number", with_config('{"classes": 5}'), M_EIG)
case("cfg_classes_nested", with_config('{"classes": [["a"], ["b"], ["c"], ["d"]]}'), M_EIG)
case("cfg_classes_objects", with_config('{"classes": [{}, {}, {}, {}]}'), M_EIG)
case("cfg_input_shape_negative", with_config('{"input_shape": [-1]}'), M_PLOT)
case("cfg_input_shape_wrong_product", with_config('{"input_shape": [2, 2]}'), M_PLOT)
case("cfg_input_shape_string", with_config('{"input_shape": "3x3"}'), M_PLOT)
case("cfg_bilin_map_list", with_config('{"bilin_map": [1]}'), M_EIG)
case("cfg_bilin_map_string", with_config('{"bilin_map": "blocks.0.weight"}'), M_EIG)
case("cfg_bilin_map_bad_layers", with_config('{"bilin_map": {"layers": 5}}'), M_EIG)
case("cfg_test_split_missing", with_config('{"test_split": "../../../../nowhere.npz"}'),
     ["eval", "{r}/m"])
case("cfg_test_split_number", with_config('{"test_split": 5}'), ["eval", "{r}/m"])
case("cfg_vocab_object", with_config(json.dumps({**lm_config(), "vocab": {}}),
                                      transformer_tensors),
     ["eig", "{r}/m", "--token-str", "a"])
case("cfg_vocab_nested", with_config(json.dumps({**lm_config(), "vocab": [[c] for c in "abcdefghijk"]}),
                                      transformer_tensors),
     ["eig", "{r}/m", "--token-str", "a"])
case("cfg_hidden_act_list", with_config('{"hidden_act": [1]}', llama_tensors),
     ["eig", "{r}/m", "--token", "0"])
case("cfg_hidden_act_object", with_config('{"hidden_act": {"a": 1}}', llama_tensors),
     ["eig", "{r}/m", "--token", "0"])


def cfg_is_dir(root: Path) -> None:
    save(root / "m", image_tensors())
    (root / "m" / "config.json").mkdir()


case("cfg_is_directory", cfg_is_dir, M_INFO)


# ---- sharded checkpoints: model.safetensors.index.json

def sharded(index: object | str | None = None, after: Callable[[Path], None] | None = None):
    def build(root: Path) -> None:
        write_transformer(root / "m", d=LM_D, h=LM_H, vocab=LM_VOCAB, n_layer=1, sharded=True)
        idx = root / "m" / "model.safetensors.index.json"
        if index is not None:
            idx.write_text(index if isinstance(index, str) else json.dumps(index))
        if after is not None:
            after(root)
    return build


def _edit_index(fn):
    def after(root):
        idx = root / "m" / "model.safetensors.index.json"
        data = json.loads(idx.read_text())
        fn(root, data)
        idx.write_text(json.dumps(data))
    return after


def _first_key(data):
    return sorted(data["weight_map"])[0]


def _point_outside(root, data):
    outside = root / "outside"
    outside.mkdir()
    shard = data["weight_map"][_first_key(data)]
    shutil.copy(root / "m" / shard, outside / "x.safetensors")
    for k, v in data["weight_map"].items():
        if v == shard:
            data["weight_map"][k] = "../outside/x.safetensors"


def _point_absolute(root, data):
    _point_outside(root, data)
    for k, v in data["weight_map"].items():
        if v == "../outside/x.safetensors":
            data["weight_map"][k] = str(root / "outside" / "x.safetensors")


def _missing_shard(root, data):
    data["weight_map"][_first_key(data)] = "model-00009-of-00009.safetensors"


def _wrong_owner(root, data):
    k = _first_key(data)
    owner = data["weight_map"][k]
    data["weight_map"][k] = next(v for v in data["weight_map"].values() if v != owner)


def _shard_dir(root, data):
    (root / "m" / "sub.safetensors").mkdir()
    data["weight_map"][_first_key(data)] = "sub.safetensors"


def _shard_garbage(root, data):
    (root / "m" / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00garbage!")
    data["weight_map"][_first_key(data)] = "junk.safetensors"


def _shard_self(root, data):
    data["weight_map"][_first_key(data)] = "model.safetensors.index.json"


def _shard_dot(root, data):
    data["weight_map"][_first_key(data)] = "."


SH = ["info", "{r}/m"]
SH_EIG = ["eig", "{r}/m", "--token", "0"]

case("shard_index_invalid_json", sharded("{weight_map"), SH)
case("shard_index_list", sharded([1, 2]), SH)
case("shard_index_deep", sharded(deep_json()), SH)
case("shard_index_no_weight_map", sharded({"metadata": {}}), SH)
case("shard_index_weight_map_list", sharded({"weight_map": ["model-00001-of-00002.safetensors"]}), SH)
case("shard_index_weight_map_string", sharded({"weight_map": "model.safetensors"}), SH)
case("shard_index_weight_map_empty", sharded({"weight_map": {}}), SH)
case("shard_index_shard_name_number",
     sharded(after=_edit_index(lambda r, d: d["weight_map"].update({_first_key(d): 5}))), SH)
case("shard_index_shard_name_list",
     sharded(after=_edit_index(lambda r, d: d["weight_map"].update({_first_key(d): ["a"]}))), SH)
case("shard_index_metadata_deep",
     sharded(after=lambda r: (r / "m" / "model.safetensors.index.json").write_text(
         json.dumps({"weight_map": json.loads((r / "m" / "model.safetensors.index.json")
                                              .read_text())["weight_map"]})[:-1]
         + f', "metadata": {deep_dict()}}}')), SH)
case("shard_dotdot_outside", sharded(after=_edit_index(_point_outside)), SH)
case("shard_dotdot_outside_eig", sharded(after=_edit_index(_point_outside)), SH_EIG)
case("shard_absolute_path", sharded(after=_edit_index(_point_absolute)), SH)
case("shard_missing", sharded(after=_edit_index(_missing_shard)), SH)
case("shard_key_not_in_shard", sharded(after=_edit_index(_wrong_owner)), SH)
case("shard_is_directory", sharded(after=_edit_index(_shard_dir)), SH)
case("shard_garbage", sharded(after=_edit_index(_shard_garbage)), SH)
case("shard_is_the_index", sharded(after=_edit_index(_shard_self)), SH)
case("shard_is_dot", sharded(after=_edit_index(_shard_dot)), SH)


# ---- --map files

def with_map(text: str | bytes | dict, direction: int | None = None):
    def build(root: Path) -> None:
        save(root / "c", custom_tensors())
        raw = text if isinstance(text, bytes) else (
            text if isinstance(text, str) else json.dumps(text)).encode()
        (root / "map.json").write_bytes(raw)
        if direction is not None:
            np.save(root / "u.npy", np.ones(direction))
    return build


MAP_INFO = ["info", "{r}/c", "--map", "{r}/map.json"]
MAP_EIG = ["eig", "{r}/c", "--map", "{r}/map.json", "--class", "0"]
GOOD_LAYER = {"w": "mix.a", "v": "mix.b"}

case("map_invalid_json", with_map("{layers: []"), MAP_INFO)
case("map_is_list", with_map("[]"), MAP_INFO)
case("map_deep", with_map(deep_json()), MAP_INFO)
case("map_deep_object", with_map(deep_dict()), MAP_INFO)
case("map_not_utf8", with_map(b'{"layers": "\xff\xfe"}'), MAP_INFO)
case("map_layers_number", with_map({"layers": 5, "head": "out.weight"}), MAP_INFO)
case("map_layers_empty", with_map({"layers": [], "head": "out.weight"}), MAP_INFO)
case("map_layers_null", with_map({"layers": None}), MAP_INFO)
case("map_layer_entry_number", with_map({"layers": [5]}), MAP_INFO)
case("map_layer_value_number", with_map({"layers": [{"w": 3, "v": "mix.b"}]}), MAP_INFO)
case("map_layer_value_list", with_map({"layers": [{"w": ["mix.a"], "v": "mix.b"}]}), MAP_INFO)
case("map_layer_value_object", with_map({"layers": [{"w": {"k": 1}, "v": "mix.b"}]}), MAP_INFO)
case("map_layer_unknown_key", with_map({"layers": [{**GOOD_LAYER, "q": "mix.a"}]}), MAP_INFO)
case("map_unknown_top_key",
     with_map({"layers": [GOOD_LAYER], "head": "out.weight", "heads": "x"}), MAP_INFO)
case("map_missing_tensor", with_map({"layers": [{"w": "mix.a", "v": "nope"}]}), MAP_INFO)
case("map_embed_missing",
     with_map({"layers": [GOOD_LAYER], "embed": "nope", "head": "out.weight"}), MAP_INFO)
case("map_head_list", with_map({"layers": [GOOD_LAYER], "head": ["out.weight"]}), MAP_INFO)
case("map_embed_number", with_map({"layers": [GOOD_LAYER], "embed": 1}), MAP_INFO)
case("map_residual_string",
     with_map({"layers": [{"wv": "mix.wv"}], "head": "out.weight", "residual": "no"}), MAP_INFO)
case("map_only_w", with_map({"layers": [{"w": "mix.a"}], "head": "out.weight"}), MAP_INFO)
case("map_w_and_wv", with_map({"layers": [{"w": "mix.a", "v": "mix.b", "wv": "mix.wv"}],
                               "head": "out.weight"}), MAP_INFO)
case("map_w_v_shapes_differ", with_map({"layers": [{"w": "mix.a", "v": "mix.c"}]}), MAP_INFO)
case("map_wv_odd_rows", with_map({"layers": [{"wv": "mix.odd"}], "head": "out.weight"}), MAP_INFO)
case("map_p_wrong_cols", with_map({"layers": [{**GOOD_LAYER, "p": "mix.p_bad"}]}), MAP_INFO)
case("map_embed_wrong_rows",
     with_map({"layers": [GOOD_LAYER], "embed": "enc.bad", "head": "out.weight"}), MAP_INFO)
case("map_head_wrong_cols", with_map({"layers": [GOOD_LAYER], "head": "out.bad"}), MAP_INFO)
case("map_wv_bias_wrong_length",
     with_map({"layers": [{"wv": "mix.wv", "wv_bias": "bias.5"}], "head": "out.weight"}), MAP_EIG)
case("map_w_bias_wrong_length",
     with_map({"layers": [{**GOOD_LAYER, "w_bias": "bias.3", "v_bias": "bias.5"}],
               "head": "out.weight"}), MAP_EIG)
case("map_v_bias_2d",
     with_map({"layers": [{**GOOD_LAYER, "v_bias": "mix.a"}], "head": "out.weight"}), MAP_EIG)
case("map_p_bias_wrong_length",
     with_map({"layers": [{**GOOD_LAYER, "p": "mix.p", "p_bias": "bias.10"}]}, direction=4),
     ["eig", "{r}/c", "--map", "{r}/map.json", "--direction", "{r}/u.npy"])
case("map_w_is_1d", with_map({"layers": [{"w": "vec.1d", "v": "vec.1d"}]}), MAP_INFO)
case("map_w_is_3d", with_map({"layers": [{"w": "cube.3d", "v": "cube.3d"}]}), MAP_INFO)
case("map_head_is_1d", with_map({"layers": [GOOD_LAYER], "head": "bias.5"}), MAP_INFO)
case("map_template_no_match", with_map({"layers": {"wv": "nope.{i}.w"}}), MAP_INFO)
case("map_template_non_string",
     with_map({"layers": {"wv": "tpl.{i}.wv", "p": 5}}), MAP_INFO)
case("map_template_unknown_key", with_map({"layers": {"q": "tpl.{i}.wv"}}), MAP_INFO)


def map_is_dir(root: Path) -> None:
    save(root / "c", custom_tensors())
    (root / "map.json").mkdir()


case("map_is_directory", map_is_dir, MAP_INFO)
case("map_missing_file", lambda root: save(root / "c", custom_tensors()), MAP_INFO)


# ---- cross-tensor shapes in recognised layouts

def layout(tensors_fn, changes: dict, config=None):
    """A recognised layout with some tensors replaced (None deletes one)."""
    def build(root: Path) -> None:
        t = tensors_fn()
        r = _rng(9)
        for k, shape in changes.items():
            if shape is None:
                t.pop(k)
            else:
                t[k] = r.standard_normal(shape).astype(np.float32)
        save(root / "m", t, config)
    return build


LM_EIG = ["eig", "{r}/m", "--token", "0"]

case("img_blocks_odd_rows", layout(image_tensors, {"blocks.0.weight": (2 * D + 1, D)}), M_EIG)
case("img_head_cols_ne_h", layout(image_tensors, {"head.weight": (N_CLS, D + 1)}), M_EIG)
case("img_embed_rows_ne_d", layout(image_tensors, {"embed.weight": (D + 2, N_IN)}), M_EIG)
case("img_bias_wrong_length", layout(image_tensors, {"blocks.0.bias": (2 * D - 1,)}), M_EIG)
case("img_bias_2d", layout(image_tensors, {"blocks.0.bias": (2, D)}), M_EIG)
case("img_head_1d", layout(image_tensors, {"head.weight": (N_CLS * D,)}), M_EIG)
case("img_blocks_1d", layout(image_tensors, {"blocks.0.weight": (2 * D * D,)}), M_EIG)
case("img_blocks_3d", layout(image_tensors, {"blocks.0.weight": (2 * D, D, 1)}), M_EIG)
case("img_embed_1d", layout(image_tensors, {"embed.weight": (D * N_IN,)}), M_EIG)
case("img_embed_3d", layout(image_tensors, {"embed.weight": (D, 3, 3)}), M_EIG)
case("img_layers_not_contiguous", layout(image_tensors, {"blocks.2.weight": (2 * D, D)}),
     M_EIG)
case("img_second_layer_wrong_d", layout(image_tensors, {"blocks.1.weight": (2 * D, D + 1)}),
     M_EIG)
case("img_residual_h_ne_d", layout(image_tensors, {"blocks.0.weight": (2 * D + 2, D),
                                                   "head.weight": (N_CLS, D + 1)},
                                   {"residual": True}), M_EIG)
case("tr_p_wrong_cols", layout(transformer_tensors, {"transformer.h.0.mlp.p.weight":
                                                     (LM_D, LM_H + 1)}, lm_config()), LM_EIG)
case("tr_p_rows_ne_d", layout(transformer_tensors, {"transformer.h.0.mlp.p.weight":
                                                    (LM_D + 1, LM_H)}, lm_config()), LM_EIG)
case("tr_w_bias_wrong_length", layout(transformer_tensors, {"transformer.h.0.mlp.w.bias":
                                                            (LM_H,)}, lm_config()), LM_EIG)
case("tr_p_bias_wrong_length", layout(transformer_tensors, {"transformer.h.0.mlp.p.bias":
                                                            (LM_D + 3,)}, lm_config()), LM_EIG)
case("tr_lm_head_cols_ne_d", layout(transformer_tensors, {"lm_head.weight":
                                                          (LM_VOCAB, LM_D + 1)}, lm_config()),
     LM_EIG)
case("tr_wte_cols_ne_d", layout(transformer_tensors, {"transformer.wte.weight":
                                                      (LM_VOCAB, LM_D + 1)}, lm_config()),
     ["eig", "{r}/m", "--token", "0", "--tokens", "3"])
case("tr_p_missing", layout(transformer_tensors, {"transformer.h.0.mlp.p.weight": None},
                            lm_config()), LM_EIG)
case("tr_w_odd_rows", layout(transformer_tensors, {"transformer.h.0.mlp.w.weight":
                                                   (2 * LM_H + 1, LM_D)}, lm_config()), LM_EIG)
case("llama_up_ne_gate", layout(llama_tensors, {"model.layers.0.mlp.up_proj.weight":
                                                (LM_H + 1, LM_D)}), LM_EIG)
case("llama_down_wrong", layout(llama_tensors, {"model.layers.0.mlp.down_proj.weight":
                                                (LM_D, LM_H + 2)}), LM_EIG)
case("llama_down_rows_ne_d", layout(llama_tensors, {"model.layers.0.mlp.down_proj.weight":
                                                    (LM_D + 2, LM_H)}), LM_EIG)
case("llama_up_missing", layout(llama_tensors, {"model.layers.0.mlp.up_proj.weight": None}),
     LM_EIG)
case("llama_norm_gain_wrong_length",
     layout(llama_tensors, {"model.layers.0.post_attention_layernorm.weight": (LM_D + 1,)}),
     ["eig", "{r}/m", "--token", "0", "--tokens", "3"])
case("toy_right_shape", layout(toy_tensors, {"right.weight": (5, 5)}), M_EIG)
case("toy_head_cols", layout(toy_tensors, {"head.weight": (3, 4)}), M_EIG)
case("toy_left_bias_wrong_length", layout(toy_tensors, {"left.bias": (4,)}), M_EIG)


# ---- NaN / Inf in every kind of weight, for every command that computes

def poisoned(key: str, value: float, part: str = "all", tensors=image_tensors, config=None):
    """``tensors`` with N_BAD entries of ``key`` set to ``value``.

    ``part``: anywhere (all), in the W rows or the V rows of a stacked matrix, or in row 0
    (an unembedding that ``--token 0`` reads one row of)."""
    def build(root: Path) -> None:
        t = tensors()
        flat = t[key].reshape(-1)
        n = flat.size
        row = t[key].shape[-1]
        lo, hi = {"all": (0, n), "W": (0, n // 2), "V": (n // 2, n), "row0": (0, row)}[part]
        idx = np.linspace(lo, hi - 1, N_BAD).astype(int)
        assert len(set(idx)) == N_BAD
        flat[idx] = value if value == value else np.nan
        if value == np.inf:  # mix the signs
            flat[idx[::2]] = -np.inf
        save(root / "m", t, config if config is not None
             else {"classes": [f"c{i}" for i in range(N_CLS)]})
        write_data(root / "data.npz")
    return build


COMMANDS = {
    "eig": ["eig", "{r}/m", "--class", "0"],
    "truncate": ["truncate", "{r}/m", "--rank", "2", "-o", "t.safetensors"],
    "eval": ["eval", "{r}/m", "--data", "{r}/data.npz"],
    "spectrum": ["spectrum", "{r}/m"],
    "hosvd": ["hosvd", "{r}/m"],
    "explain": ["explain", "{r}/m", "--input", "{r}/data.npz:0"],
}
WEIGHTS = {  # id -> (tensor, part)
    "embed": ("embed.weight", "all"),
    "W": ("blocks.0.weight", "W"),
    "V": ("blocks.0.weight", "V"),
    "head": ("head.weight", "all"),
    "bias": ("blocks.0.bias", "all"),
}
for wid, (key, part) in WEIGHTS.items():
    for cmd, argv in COMMANDS.items():
        if (wid, cmd) == ("embed", "spectrum"):  # eigenvalues in the hidden space: no E read
            continue
        case(f"nan_{wid}_{cmd}", poisoned(key, np.nan, part), argv,
             must=[re.escape(key), rf"\b{N_BAD}\b"])
for wid, (key, part) in WEIGHTS.items():
    for cmd in ("eig", "eval"):
        case(f"inf_{wid}_{cmd}", poisoned(key, np.inf, part), COMMANDS[cmd],
             must=[re.escape(key), rf"\b{N_BAD}\b"])
case("nan_adversarial_embed", poisoned("embed.weight", np.nan),
     ["adversarial", "{r}/m", "--data", "{r}/data.npz", "--target", "0"],
     must=[re.escape("embed.weight"), rf"\b{N_BAD}\b"])
case("nan_plot_W", poisoned("blocks.0.weight", np.nan, "W"),
     ["plot", "{r}/m", "--class", "0", "-o", "p.png"],
     must=[re.escape("blocks.0.weight"), rf"\b{N_BAD}\b"])
for lid, key in (("mlp_w", "transformer.h.0.mlp.w.weight"),
                 ("mlp_p", "transformer.h.0.mlp.p.weight"), ("lm_head", "lm_head.weight")):
    case(f"nan_lm_{lid}",
         poisoned(key, np.nan, "row0" if lid == "lm_head" else "all",
                  tensors=transformer_tensors, config=lm_config()), LM_EIG,
         must=[re.escape(key), rf"\b{N_BAD}\b"])
case("nan_llama_gate", poisoned("model.layers.0.mlp.gate_proj.weight", np.nan,
                                tensors=llama_tensors, config={"hidden_act": "identity"}), LM_EIG,
     must=[re.escape("model.layers.0.mlp.gate_proj.weight"), rf"\b{N_BAD}\b"])
case("inf_toy_head", poisoned("head.weight", np.inf, tensors=toy_tensors, config={}), M_EIG,
     must=[re.escape("head.weight"), rf"\b{N_BAD}\b"])


def nan_sae(root: Path) -> None:
    base_lm(root)
    enc = _rng(6).standard_normal((12, LM_D)).astype(np.float32)
    enc.reshape(-1)[:N_BAD] = np.nan
    shutil.rmtree(root / "sae_out")
    write_sae(root / "sae_out", enc=enc)


case("nan_sae_encoder", nan_sae,
     ["eig", "{r}/lm", "--sae", "{r}/sae_out", "--feature", "0"],
     must=["w_enc.weight", rf"\b{N_BAD}\b"])


def nan_direction(root: Path) -> None:
    base(root)
    u = np.ones(N_CLS)
    u[1] = np.nan
    np.save(root / "u.npy", u)


case("nan_direction_file", nan_direction, ["eig", "{r}/m", "--direction", "{r}/u.npy"])


# ---- PyTorch state dicts

def pt_file(make: Callable[[Path], None]):
    def build(root: Path) -> None:
        make(root / "m.pt")
    return build


def _torch_save(obj_fn):
    def make(path):
        import torch

        torch.save(obj_fn(torch), path)
    return make


PT = ["info", "{r}/m.pt"]

case("pt_garbage", pt_file(lambda p: p.write_bytes(b"\x80\x02garbage" * 20)), PT)
case("pt_empty", pt_file(lambda p: p.write_bytes(b"")), PT)
case("pt_zip_garbage", pt_file(lambda p: p.write_bytes(b"PK\x03\x04" + b"\0" * 60)), PT)
case("pt_namespace", pt_file(_torch_save(lambda torch: argparse.Namespace(cmd="touch pwned"))),
     PT)
case("pt_tensor_list", pt_file(_torch_save(lambda torch: [torch.zeros(3)])), PT)
case("pt_plain_tensor", pt_file(_torch_save(lambda torch: torch.zeros(3, 3))), PT)
case("pt_nan_weights", pt_file(_torch_save(lambda torch: {
    k: torch.from_numpy(v if k != "head.weight" else np.full_like(v, np.nan))
    for k, v in image_tensors().items()})), ["eig", "{r}/m.pt", "--class", "0"],
     must=["head.weight", rf"\b{N_CLS * D}\b"])


def zip_as_safetensors(root: Path) -> None:
    import torch

    torch.save({"w": torch.zeros(2)}, root / "m.safetensors")


# Read by its content (a torch zip), so info lists it; a command that needs a layout refuses.
case("pt_named_safetensors", zip_as_safetensors, ST_EIG)


# ---- data files for eval / explain

def with_data(make: Callable[[Path], None]):
    def build(root: Path) -> None:
        save(root / "m", image_tensors())
        make(root)
    return build


EVAL = ["eval", "{r}/m", "--data", "{r}/data.npz"]


def _truncated_npz(root):
    write_data(root / "full.npz")
    raw = (root / "full.npz").read_bytes()
    (root / "data.npz").write_bytes(raw[: len(raw) // 2])
    (root / "full.npz").unlink()


def _idx(root, images: bytes, labels: bytes, gz=True):
    folder = root / "idx"
    folder.mkdir()
    for name, raw in (("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)):
        if gz:
            with gzip.open(folder / (name + ".gz"), "wb") as fh:
                fh.write(raw)
        else:
            (folder / name).write_bytes(raw)


def _idx_images(n=20, rows=3, cols=3):
    return struct.pack(">BBBBIII", 0, 0, 8, 3, n, rows, cols) + bytes(n * rows * cols)


def _idx_labels(n=20):
    return struct.pack(">BBBBI", 0, 0, 8, 1, n) + bytes(n)


def _idx_gz_cut(root):
    _idx(root, _idx_images(), _idx_labels())
    p = root / "idx" / "t10k-images-idx3-ubyte.gz"
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])


IDX = ["eval", "{r}/m", "--data", "{r}/idx"]

case("data_npz_truncated", with_data(_truncated_npz), EVAL)
case("data_npz_no_x", with_data(lambda r: write_data(r / "data.npz", x=None)), EVAL)
case("data_npz_no_y", with_data(lambda r: write_data(r / "data.npz", y=None)), EVAL)
case("data_npz_nan_x", with_data(lambda r: write_data(
    r / "data.npz", x=np.where(np.arange(20 * N_IN).reshape(20, N_IN) % 26 == 0, np.nan,
                               0.5).astype(np.float32))), EVAL, must=[r"\bx\b", r"\b7\b"])
case("data_npz_inf_x", with_data(lambda r: write_data(
    r / "data.npz", x=np.full((20, N_IN), np.inf, np.float32))), EVAL)
case("data_labels_out_of_range", with_data(lambda r: write_data(
    r / "data.npz", y=np.full(20, N_CLS))), EVAL)
case("data_labels_negative", with_data(lambda r: write_data(r / "data.npz", y=-np.ones(20))),
     EVAL)
case("data_labels_float_nan", with_data(lambda r: write_data(
    r / "data.npz", y=np.full(20, np.nan))), EVAL)
case("data_labels_fractional", with_data(lambda r: write_data(
    r / "data.npz", y=np.full(20, 1.5))), EVAL)
case("data_labels_huge", with_data(lambda r: write_data(
    r / "data.npz", y=np.full(20, 2**63 - 1, np.int64))), EVAL)
case("data_labels_2d", with_data(lambda r: write_data(r / "data.npz", y=np.zeros((20, 2), int))),
     EVAL)
case("data_length_mismatch", with_data(lambda r: write_data(r / "data.npz", y=np.zeros(19, int))),
     EVAL)
case("data_x_scalar", with_data(lambda r: write_data(r / "data.npz", x=np.float32(1.0))), EVAL)
case("data_x_strings", with_data(lambda r: write_data(
    r / "data.npz", x=np.array([["a"] * N_IN] * 20))), EVAL)
case("data_x_object", with_data(lambda r: np.savez(
    r / "data.npz", x=np.array([None] * 20, dtype=object), y=np.zeros(20, int))), EVAL)
case("data_x_wrong_features", with_data(lambda r: write_data(r / "data.npz", n_in=N_IN + 1)),
     EVAL)
case("data_x_complex", with_data(lambda r: write_data(
    r / "data.npz", x=np.ones((20, N_IN), np.complex64))), EVAL)
case("data_not_npz", with_data(lambda r: (r / "data.npz").write_text("x,y\n1,2\n")), EVAL)
case("data_npz_is_directory", with_data(lambda r: (r / "data.npz").mkdir()), EVAL)
case("data_idx_gz_cut", with_data(_idx_gz_cut), IDX)
case("data_idx_huge_dims", with_data(lambda r: _idx(
    r, struct.pack(">BBBBIII", 0, 0, 8, 3, 2**31, 2**31, 2**31) + bytes(64), _idx_labels())),
     IDX)
case("data_idx_dims_product_wraps", with_data(lambda r: _idx(
    r, struct.pack(">BBBB", 0, 0, 8, 4) + struct.pack(">IIII", 2**16, 2**16, 2**16, 2**16),
    _idx_labels(), gz=False)), IDX)
case("data_idx_header_cut", with_data(lambda r: _idx(
    r, struct.pack(">BBBB", 0, 0, 8, 3) + b"\0\0", _idx_labels())), IDX)
case("data_idx_ndim_255", with_data(lambda r: _idx(
    r, struct.pack(">BBBB", 0, 0, 8, 255) + bytes(16), _idx_labels())), IDX)
case("data_idx_label_count_mismatch", with_data(lambda r: _idx(
    r, _idx_images(20), _idx_labels(7))), IDX)
case("data_idx_labels_out_of_range", with_data(lambda r: _idx(
    r, _idx_images(20), struct.pack(">BBBBI", 0, 0, 8, 1, 20) + bytes([200] * 20))), IDX)
case("data_idx_not_gzip", with_data(lambda r: (
    (r / "idx").mkdir(), (r / "idx" / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip"),
    (r / "idx" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip"))), IDX)
case("explain_index_out_of_range", base, ["explain", "{r}/m", "--input", "{r}/data.npz:99"],
     codes=USAGE)
case("explain_index_negative", base, ["explain", "{r}/m", "--input", "{r}/data.npz:-1"],
     codes=USAGE)
case("explain_index_not_number", base, ["explain", "{r}/m", "--input", "{r}/data.npz:nan"],
     codes=USAGE)
case("explain_numbers_nan", base, ["explain", "{r}/m", "--input", ",".join(["nan"] * N_IN)],
     codes=USAGE)
case("explain_numbers_wrong_count", base, ["explain", "{r}/m", "--input", "1,2,3"],
     codes=USAGE)
case("explain_numbers_garbage", base, ["explain", "{r}/m", "--input", "1,,x"], codes=USAGE)


# ---- option values: non-finite, negative, out of range, unparsable

OPTION_CASES = [
    ("eig_top_nan", ["eig", "{r}/m", "--class", "0", "--top", "nan"], (2,)),
    ("eig_top_negative", ["eig", "{r}/m", "--class", "0", "--top", "-3"], USAGE),
    ("eig_class_99", ["eig", "{r}/m", "--class", "99"], USAGE),
    ("eig_class_huge", ["eig", "{r}/m", "--class", str(2**64)], USAGE),
    ("eig_layer_99", ["eig", "{r}/m", "--class", "0", "--layer", "99"], USAGE),
    ("eig_layer_minus_99", ["eig", "{r}/m", "--class", "0", "--layer", "-99"], USAGE),
    ("eig_chain_0", ["eig", "{r}/m", "--class", "0", "--chain", "0"], USAGE),
    ("eig_tokens_negative", ["eig", "{r}/lm", "--token", "0", "--tokens", "-1"], USAGE),
    ("eig_token_negative", ["eig", "{r}/lm", "--token", "-1"], USAGE),
    ("eig_token_str_empty", ["eig", "{r}/lm", "--token-str", ""], USAGE),
    ("eig_feature_out_of_range", ["eig", "{r}/lm", "--sae", "{r}/sae_out", "--feature", "99"],
     USAGE),
    ("eig_feature_negative", ["eig", "{r}/lm", "--sae", "{r}/sae_out", "--feature", "-1"], USAGE),
    ("eig_feature_without_sae", ["eig", "{r}/lm", "--feature", "1"], USAGE),
    ("eig_two_directions", ["eig", "{r}/m", "--class", "0", "--direction", "{r}/data.npz"],
     USAGE),
    ("eig_direction_is_directory", ["eig", "{r}/m", "--direction", "{r}/m"], USAGE),
    ("eig_direction_npz", ["eig", "{r}/m", "--direction", "{r}/data.npz"], USAGE),
    ("eig_format_bogus", ["eig", "{r}/m", "--class", "0", "--format", "xml"], USAGE),
    ("eig_npz_without_output", ["eig", "{r}/m", "--class", "0", "--format", "npz"], USAGE),
    ("eig_output_in_missing_folder", ["eig", "{r}/m", "--class", "0", "--json", "-o",
                                      "no/such/dir/x.json"], USAGE),
    ("eig_output_is_directory", ["eig", "{r}/m", "--class", "0", "--json", "-o", "{r}/m"],
     USAGE),
    ("spectrum_plot_top_negative", ["spectrum", "{r}/m", "--plot-top", "-1"], USAGE),
    ("spectrum_class_99", ["spectrum", "{r}/m", "--class", "99"], USAGE),
    ("plot_n_zero", ["plot", "{r}/m", "--class", "0", "-o", "p.png", "--n", "0"], USAGE),
    ("plot_curve_negative", ["plot", "{r}/m", "--class", "0", "-o", "p.png", "--curve", "-1"],
     USAGE),
    ("plot_shape_garbage", ["plot", "{r}/m", "--class", "0", "-o", "p.png", "--shape", "axb"],
     USAGE),
    ("plot_shape_zero", ["plot", "{r}/m", "--class", "0", "-o", "p.png", "--shape", "0x0"], USAGE),
    ("plot_shape_wrong_size", ["plot", "{r}/m", "--class", "0", "-o", "p.png", "--shape", "2x2"],
     USAGE),
    ("plot_class_word", ["plot", "{r}/m", "--class", "some", "-o", "p.png"], USAGE),
    ("truncate_rank_negative", ["truncate", "{r}/m", "--rank", "-1", "-o", "t.safetensors"],
     USAGE),
    ("truncate_energy_above_1", ["truncate", "{r}/m", "--energy", "1.5", "-o", "t.safetensors"],
     USAGE),
    ("truncate_energy_nan", ["truncate", "{r}/m", "--energy", "nan", "-o", "t.safetensors"],
     USAGE),
    ("truncate_energy_inf", ["truncate", "{r}/m", "--energy", "inf", "-o", "t.safetensors"],
     USAGE),
    ("truncate_energy_negative", ["truncate", "{r}/m", "--energy", "-0.5", "-o",
                                  "t.safetensors"], USAGE),
    ("truncate_sweep_garbage", ["truncate", "{r}/m", "--sweep", "1,,x", "--data",
                                "{r}/data.npz"], USAGE),
    ("truncate_sweep_negative", ["truncate", "{r}/m", "--sweep", "-1,2", "--data",
                                 "{r}/data.npz"], USAGE),
    ("truncate_sweep_nan", ["truncate", "{r}/m", "--sweep", "nan", "--data", "{r}/data.npz"],
     USAGE),
    ("truncate_sweep_empty", ["truncate", "{r}/m", "--sweep", "", "--data", "{r}/data.npz"],
     USAGE),
    ("adversarial_strength_nan", ["adversarial", "{r}/m", "--data", "{r}/data.npz", "--target",
                                  "0", "--strength", "nan"], USAGE),
    ("adversarial_strength_inf", ["adversarial", "{r}/m", "--data", "{r}/data.npz", "--target",
                                  "0", "--strength", "inf"], USAGE),
    ("adversarial_strength_negative", ["adversarial", "{r}/m", "--data", "{r}/data.npz",
                                       "--target", "0", "--strength", "-1"], USAGE),
    ("adversarial_sweep_garbage", ["adversarial", "{r}/m", "--data", "{r}/data.npz", "--target",
                                   "0", "--sweep", "1,,x"], USAGE),
    ("adversarial_sweep_nan", ["adversarial", "{r}/m", "--data", "{r}/data.npz", "--target",
                               "0", "--sweep", "0.1,nan"], USAGE),
    ("adversarial_sweep_inf", ["adversarial", "{r}/m", "--data", "{r}/data.npz", "--target",
                               "0", "--sweep", "inf"], USAGE),
    ("adversarial_pixels_negative", ["adversarial", "{r}/m", "--data", "{r}/data.npz", "--target",
                                     "0", "--variant", "top-pixels", "--pixels", "-1"], USAGE),
    ("adversarial_pixels_too_many", ["adversarial", "{r}/m", "--data", "{r}/data.npz",
                                     "--target", "0", "--variant", "top-pixels", "--pixels",
                                     "999999"], USAGE),
    ("adversarial_eig_zero", ["adversarial", "{r}/m", "--data", "{r}/data.npz", "--target", "0",
                              "--eig", "0"], USAGE),
    ("adversarial_per_class_zero", ["adversarial", "{r}/m", "--data", "{r}/data.npz", "--target",
                                    "0", "--per-class", "0"], USAGE),
    ("adversarial_target_99", ["adversarial", "{r}/m", "--data", "{r}/data.npz", "--target",
                               "99"], USAGE),
    ("adversarial_seed_negative", ["adversarial", "{r}/m", "--data", "{r}/data.npz", "--target",
                                   "0", "--seed", "-1"], USAGE),
    ("explain_classes_zero", ["explain", "{r}/m", "--input", "{r}/data.npz:0", "--classes", "0"],
     USAGE),
    ("explain_top_negative", ["explain", "{r}/m", "--input", "{r}/data.npz:0", "--top", "-1"],
     USAGE),
    ("hosvd_max_memory_nan", ["hosvd", "{r}/m", "--max-memory", "nan"], USAGE),
    ("hosvd_max_memory_inf", ["hosvd", "{r}/m", "--max-memory", "inf"], USAGE),
    ("hosvd_max_memory_negative", ["hosvd", "{r}/m", "--max-memory", "-1"], USAGE),
    ("hosvd_components_zero", ["hosvd", "{r}/m", "--components", "0"], USAGE),
    ("hosvd_top_negative", ["hosvd", "{r}/m", "--top", "-2"], USAGE),
    ("compare_top_zero", ["compare", "{r}/m", "{r}/m", "--top", "0"], USAGE),
    ("compare_class_99", ["compare", "{r}/m", "{r}/m", "--class", "99"], USAGE),
    ("rank_features_threads_zero", ["rank-features", "{r}/lm", "--sae-out", "{r}/sae_out",
                                    "--threads", "0"], USAGE),
    ("rank_features_threads_negative", ["rank-features", "{r}/lm", "--sae-out", "{r}/sae_out",
                                        "--threads", "-4"], USAGE),
    ("rank_features_k_zero", ["rank-features", "{r}/lm", "--sae-out", "{r}/sae_out", "--k", "0"],
     USAGE),
    ("rank_features_limit_negative", ["rank-features", "{r}/lm", "--sae-out", "{r}/sae_out",
                                      "--limit", "-1"], USAGE),
    ("rank_features_top_negative", ["rank-features", "{r}/lm", "--sae-out", "{r}/sae_out",
                                    "--top", "-1"], USAGE),
    ("rank_features_device_bogus", ["rank-features", "{r}/lm", "--sae-out", "{r}/sae_out",
                                    "--device", "quantum:7"], USAGE),
    ("interact_top_negative", ["interact", "{r}/lm", "--sae-in", "{r}/sae_in", "--sae-out",
                               "{r}/sae_out", "--feature", "0", "--top", "-1"], USAGE),
    ("interact_feature_out_of_range", ["interact", "{r}/lm", "--sae-in", "{r}/sae_in",
                                       "--sae-out", "{r}/sae_out", "--feature", "12"], USAGE),
]


def base_all(root: Path) -> None:
    base(root)
    base_lm(root)


for oid, argv, codes in OPTION_CASES:
    case(f"opt_{oid}", base_all, argv, codes=codes)


# ---- SAE files

def sae_case(**kw):
    def build(root: Path) -> None:
        save(root / "lm", transformer_tensors(), lm_config())
        write_sae(root / "sae_out", **kw)
    return build


SAE_EIG = ["eig", "{r}/lm", "--sae", "{r}/sae_out", "--feature", "0"]

case("sae_cfg_invalid_json", sae_case(saelens=True, cfg_text="{d_in: 8"), SAE_EIG)
case("sae_cfg_deep", sae_case(saelens=True, cfg_text=deep_json()), SAE_EIG)
case("sae_cfg_list", sae_case(saelens=True, cfg_text="[1]"), SAE_EIG)
case("sae_config_deep", sae_case(cfg_text=deep_dict()), SAE_EIG)
case("sae_wrong_d", sae_case(d=LM_D + 1), SAE_EIG)
case("sae_not_an_sae", lambda root: (save(root / "lm", transformer_tensors(), lm_config()),
                                     save(root / "sae_out", image_tensors())), SAE_EIG)


# ---- what the path names: directories, FIFOs, sockets, devices

def ckpt_in_subdir_is_dir(root: Path) -> None:
    (root / "m" / "model.safetensors").mkdir(parents=True)


case("ckpt_model_file_is_directory", ckpt_in_subdir_is_dir, M_INFO)
case("ckpt_missing", lambda root: None, ["info", "{r}/nothing.safetensors"])
case("ckpt_empty_directory", lambda root: (root / "m").mkdir(), M_INFO)
case("ckpt_dangling_symlink", lambda root: (root / "m.safetensors").symlink_to(root / "gone"), ST)
case("ckpt_text_file", lambda root: (root / "m.safetensors").write_text("hello"), ST)


def fifo_ckpt(root: Path) -> None:
    os.mkfifo(root / "m.safetensors")


def fifo_ckpt_no_suffix(root: Path) -> None:
    os.mkfifo(root / "weights")


def fifo_in_dir(root: Path) -> None:
    (root / "m").mkdir()
    os.mkfifo(root / "m" / "model.safetensors")


def fifo_config(root: Path) -> None:
    save(root / "m", image_tensors())
    os.mkfifo(root / "m" / "config.json")


def fifo_map(root: Path) -> None:
    save(root / "c", custom_tensors())
    os.mkfifo(root / "map.json")


def fifo_data(root: Path) -> None:
    save(root / "m", image_tensors())
    os.mkfifo(root / "data.npz")


def fifo_idx(root: Path) -> None:
    save(root / "m", image_tensors())
    (root / "idx").mkdir()
    os.mkfifo(root / "idx" / "t10k-images-idx3-ubyte")
    (root / "idx" / "t10k-labels-idx1-ubyte").write_bytes(_idx_labels())


def fifo_shard(root: Path) -> None:
    sharded(after=_edit_index(lambda r, d: (
        os.mkfifo(r / "m" / "pipe.safetensors"),
        d["weight_map"].update({_first_key(d): "pipe.safetensors"}))))(root)


def fifo_direction(root: Path) -> None:
    base(root)
    os.mkfifo(root / "u.npy")


def fifo_sae_cfg(root: Path) -> None:
    save(root / "lm", transformer_tensors(), lm_config())
    write_sae(root / "sae_out", saelens=True)
    (root / "sae_out" / "cfg.json").unlink()
    os.mkfifo(root / "sae_out" / "cfg.json")


def socket_ckpt(root: Path) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cwd = os.getcwd()
    try:
        os.chdir(root)  # a relative name: AF_UNIX paths are limited to about 100 bytes
        s.bind("m.safetensors")
    finally:
        os.chdir(cwd)
        s.close()


def fifo_pt(root: Path) -> None:
    os.mkfifo(root / "m.pt")


case("fifo_checkpoint", fifo_ckpt, ST, subprocess=True)
case("fifo_checkpoint_no_suffix", fifo_ckpt_no_suffix, ["info", "{r}/weights"], subprocess=True)
case("fifo_checkpoint_pt", fifo_pt, PT, subprocess=True)
case("fifo_model_in_directory", fifo_in_dir, M_INFO, subprocess=True)
case("fifo_config_json", fifo_config, M_INFO, subprocess=True)
case("fifo_map", fifo_map, MAP_INFO, subprocess=True)
case("fifo_data_npz", fifo_data, EVAL, subprocess=True)
case("fifo_data_idx", fifo_idx, IDX, subprocess=True)
case("fifo_shard", fifo_shard, SH, subprocess=True)
case("fifo_direction", fifo_direction, ["eig", "{r}/m", "--direction", "{r}/u.npy"],
     subprocess=True)
case("fifo_explain_input", fifo_direction, ["explain", "{r}/m", "--input", "{r}/u.npy"],
     subprocess=True)
case("fifo_sae_cfg", fifo_sae_cfg, SAE_EIG, subprocess=True)
case("socket_checkpoint", socket_ckpt, ST, subprocess=True)
case("dev_zero_checkpoint", lambda root: None, ["info", "/dev/zero"], subprocess=True)
case("dev_zero_safetensors_link",
     lambda root: (root / "m.safetensors").symlink_to("/dev/zero"), ST, subprocess=True)
case("dev_zero_as_data", base, ["eval", "{r}/m", "--data", "/dev/zero"], subprocess=True)
case("dev_zero_as_map", lambda root: save(root / "c", custom_tensors()),
     ["info", "{r}/c", "--map", "/dev/zero"], subprocess=True)
case("dev_stdin_checkpoint", lambda root: None, ["info", "/dev/stdin"], subprocess=True)


# --------------------------------------------------------------------------- running


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _run_inprocess(cli, argv: list[str]) -> tuple[int, str, str]:
    """``cli`` with Python warnings shown as a real run shows them: on stderr."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            code, out, err = cli(*argv)
        shown = "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno)
                        for w in caught)
        return code, out, shown + err
    except Exception as exc:  # noqa: BLE001 - the point is to report any escape
        frames = traceback.extract_tb(exc.__traceback__)
        ours = [f for f in frames if f"{os.sep}bilin_cli{os.sep}" in f.filename] or frames
        where = ours[-1]
        pytest.fail(f"uncaught {type(exc).__name__}: {str(exc)[:300]!r} at "
                    f"{Path(where.filename).name}:{where.lineno} in {where.name}()",
                    pytrace=False)


def _run_subprocess(argv: list[str], cwd: Path, timeout=60) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    try:
        proc = subprocess.run([sys.executable, "-m", "bilin_cli", *argv], cwd=cwd, env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"bilin {' '.join(argv)} hung for {timeout} s", pytrace=False)
    return proc.returncode, proc.stdout, proc.stderr


def check_refusal(code: int, out: str, err: str, codes=frozenset({1}), must=()) -> None:
    """The shared contract: one ``error:`` line (or a usage error), nothing else."""
    assert "Traceback" not in err, err[-2000:]
    assert "\x1b" not in out and "\x1b" not in err, ("raw ESC on the terminal", out, err)
    assert "\x9b" not in out and "\x9b" not in err, ("raw C1 CSI on the terminal", out, err)
    assert "\u202e" not in out and "\u202e" not in err, ("raw bidi override", out, err)
    assert code in codes, f"exit {code}, expected {sorted(codes)}; stderr: {err[-1500:]!r}"
    assert out == "", f"stdout not empty on error: {out[:500]!r}"
    if code == 1:
        lines = err.strip("\n").splitlines()
        assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {err[-1500:]!r}"
        assert lines[0].startswith("error: "), lines[0]
        for pattern in must:
            assert re.search(pattern, lines[0]), f"{pattern!r} not in {lines[0]!r}"


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_refused(cli, tmp_path, monkeypatch, c: Case):
    root = tmp_path / "in"
    work = tmp_path / "work"
    root.mkdir()
    work.mkdir()
    c.build(root)
    argv = [a.replace("{r}", str(root)) for a in c.argv]
    monkeypatch.chdir(work)
    before = _listing(tmp_path)
    if c.subprocess:
        code, out, err = _run_subprocess(argv, work)
    else:
        code, out, err = _run_inprocess(cli, argv)
    leftovers = sorted(_listing(tmp_path) - before)
    check_refusal(code, out, err, c.codes, c.must)
    assert not leftovers, f"files left behind: {leftovers}"


def test_corpus_is_large_and_uniquely_named():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    assert len(CASES) >= 120


# The valid inputs the corpus corrupts must themselves work, so a refusal above is the
# hostile part's doing and not a broken starting point.
BASELINES = [
    ("image_safetensors_file", st_file(lambda h, d: st_pack(h, d)), ST),
    ("image_eig", base, ["eig", "{r}/m", "--class", "0"]),
    ("image_truncate", base, COMMANDS["truncate"]),
    ("image_eval", base, COMMANDS["eval"]),
    ("image_spectrum", base, COMMANDS["spectrum"]),
    ("image_hosvd", base, COMMANDS["hosvd"]),
    ("image_explain", base, COMMANDS["explain"]),
    ("image_idx_data", with_data(lambda r: _idx(r, _idx_images(), _idx_labels())), IDX),
    ("custom_map", with_map({"layers": [GOOD_LAYER], "embed": "enc.weight",
                             "head": "out.weight"}), MAP_EIG),
    ("custom_map_template", with_map({"layers": {"wv": "tpl.{i}.wv", "p": "tpl.{i}.p"}}), MAP_INFO),
    ("sharded", sharded(), SH_EIG),
    ("transformer", lambda root: save(root / "m", transformer_tensors(), lm_config()), LM_EIG),
    ("llama", lambda root: save(root / "m", llama_tensors(), {"hidden_act": "identity"}), LM_EIG),
    ("toy", lambda root: save(root / "m", toy_tensors()), M_EIG),
    ("sae", base_all, SAE_EIG),
    ("rank_features", base_all, ["rank-features", "{r}/lm", "--sae-out", "{r}/sae_out"]),
    ("interact", base_all, ["interact", "{r}/lm", "--sae-in", "{r}/sae_in", "--sae-out",
                            "{r}/sae_out", "--feature", "0"]),
    ("saelens", sae_case(saelens=True), SAE_EIG),
]


@pytest.mark.parametrize("name,build,argv", BASELINES, ids=[b[0] for b in BASELINES])
def test_the_uncorrupted_inputs_work(cli, tmp_path, monkeypatch, name, build, argv):
    root = tmp_path / "in"
    root.mkdir()
    build(root)
    monkeypatch.chdir(tmp_path)
    code, out, err = _run_inprocess(cli, [a.replace("{r}", str(root)) for a in argv])
    assert code == 0, err
    assert "Traceback" not in err


# Names from files shown by a command that succeeds are escaped too.
NAME_CASES = [("esc", "\x1b[31mevil\x1b[0m"), ("bidi", "x\u202eevil"), ("osc", "\x1b]0;t\x07"),
              ("c1", "\x9b2J")]


@pytest.mark.parametrize("label,evil", NAME_CASES, ids=[n[0] for n in NAME_CASES])
@pytest.mark.parametrize("where", ["tensor", "unknown_layout", "class_name", "vocab"])
def test_names_from_files_are_escaped_on_success(cli, tmp_path, label, evil, where):
    if where == "tensor":
        t = image_tensors()
        t[evil] = np.zeros(3, np.float32)
        save(tmp_path / "m", t)
        argvs = [["info", tmp_path / "m"], ["info", tmp_path / "m", "--json"]]
    elif where == "unknown_layout":
        save(tmp_path / "m", {evil: np.zeros((3, 3), np.float32),
                              "x" + evil: np.ones((2, 3), np.float32)})
        argvs = [["info", tmp_path / "m"], ["info", tmp_path / "m", "--json"],
                 ["info", tmp_path / "m", "--suggest-map"]]
    elif where == "class_name":
        save(tmp_path / "m", image_tensors(), {"classes": [evil] * N_CLS})
        argvs = [["info", tmp_path / "m"], ["eig", tmp_path / "m", "--class", "0"],
                 ["spectrum", tmp_path / "m"]]
    else:
        save(tmp_path / "m", transformer_tensors(),
             {**lm_config(), "vocab": [evil + str(i) for i in range(LM_VOCAB)]})
        argvs = [["eig", tmp_path / "m", "--token", "0", "--tokens", "3"]]
    for argv in argvs:
        code, out, err = _run_inprocess(cli, argv)
        assert "Traceback" not in err
        # JSON escapes C0 controls itself; a table must escape them all.
        bads = ("\x1b", "\x07") if "--json" in argv else ("\x1b", "\x9b", "\u202e", "\x07")
        for bad in bads:
            assert bad not in out and bad not in err, (argv, bad, out[:500], err[:500])

"""Write the seed corpus: ``python tests/robustness/fuzz/make_corpus.py`` (needs torch).

Seeds are real files: the shipped toy sample, converted, and small checkpoints written
here; part files written by ``bilin eig/spectrum/rank-features --shard``; hand-written
configs, maps, indexes and SAE configs. Each lands in ``corpus/<target>/<name>``, in the
input format of that target's harness. Existing seeds of the same name are replaced;
others (inputs the fuzzers found and were kept) are left alone.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fuzz_cli  # noqa: E402
import fuzz_common as common  # noqa: E402
import fuzz_json_docs  # noqa: E402
import fuzz_torch_zip  # noqa: E402


def put(target: str, name: str, data: bytes) -> None:
    folder = common.CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def st_bytes(tensors: dict, metadata: dict | None = None) -> bytes:
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata=metadata)


def hand_safetensors(header: object, data: bytes = b"") -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def torch_bytes(obj, legacy: bool = False) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


class Config:  # pickled by reference as __main__.Config: bilin reads it as an inert stand-in
    def __init__(self):
        self.d_hidden, self.lr, self.name = 16, 0.003, "toy"


def safetensors_seeds(fx: Path) -> None:
    toy = common.toy_tensors()
    put("safetensors", "toy", (common.TOY / "model.safetensors").read_bytes())
    put("safetensors", "image", (fx / "img" / "model.safetensors").read_bytes())
    put("safetensors", "lm", (fx / "lm" / "model.safetensors").read_bytes())
    put("safetensors", "fbt", (fx / "fbt" / "model.safetensors").read_bytes())
    put("safetensors", "sae", (fx / "sae12" / "sae_weights.safetensors").read_bytes())
    put("safetensors", "toy-f16", st_bytes({k: v.astype(np.float16) for k, v in toy.items()}))
    put("safetensors", "toy-f64", st_bytes({k: v.astype(np.float64) for k, v in toy.items()}))
    import ml_dtypes

    put("safetensors", "toy-bf16",
        st_bytes({k: v.astype(ml_dtypes.bfloat16) for k, v in toy.items()}))
    cfg = json.loads((common.TOY / "config.json").read_text())
    put("safetensors", "toy-embedded-config",
        st_bytes(toy, {"bilin_config": json.dumps({"layout": "toy", "outputs": cfg["outputs"]})}))
    r = np.random.default_rng(0)
    d, h = 4, 6
    put("safetensors", "image-bias", st_bytes({
        "embed.weight": r.standard_normal((d, 9)).astype(np.float32),
        "blocks.0.weight": r.standard_normal((2 * h, d)).astype(np.float32),
        "blocks.0.bias": r.standard_normal(2 * h).astype(np.float32),
        "head.weight": r.standard_normal((3, h)).astype(np.float32)}))
    put("safetensors", "llama", st_bytes({
        "model.embed_tokens.weight": r.standard_normal((9, d)).astype(np.float32),
        "model.layers.0.mlp.gate_proj.weight": r.standard_normal((h, d)).astype(np.float32),
        "model.layers.0.mlp.up_proj.weight": r.standard_normal((h, d)).astype(np.float32),
        "model.layers.0.mlp.down_proj.weight": r.standard_normal((d, h)).astype(np.float32),
        "model.layers.0.post_attention_layernorm.weight": np.ones(d, np.float32),
        "lm_head.weight": r.standard_normal((9, d)).astype(np.float32)}))
    put("safetensors", "structure", st_bytes({
        "body.W_l": r.standard_normal((h, d)).astype(np.float32),
        "body.W_r": r.standard_normal((h, d)).astype(np.float32),
        "body.W_p": r.standard_normal((d, h)).astype(np.float32),
        "readout.weight": r.standard_normal((2, d)).astype(np.float32)}))
    raw = np.arange(8, dtype=np.float32).tobytes()
    put("safetensors", "hand-one-tensor", hand_safetensors(
        {"a": {"dtype": "F32", "shape": [2, 4], "data_offsets": [0, 32]}}, raw))
    put("safetensors", "hand-metadata", hand_safetensors(
        {"__metadata__": {"format": "pt"},
         "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
         "v": {"dtype": "F32", "shape": [2, 2], "data_offsets": [16, 32]}}, raw))
    put("safetensors", "hand-int", hand_safetensors(
        {"i": {"dtype": "I64", "shape": [4], "data_offsets": [0, 32]}}, raw))


def torch_seeds() -> None:
    import torch

    toy = {k: torch.from_numpy(v.copy()) for k, v in common.toy_tensors().items()}
    raws = {
        "toy": torch_bytes(toy),
        "training": torch_bytes({"epoch": 9, "accuracy": 0.97, "model_state_dict": toy,
                                 "optimizer_state_dict": {"state": {}, "param_groups": []}}),
        "dataparallel": torch_bytes({f"module.{k}": v for k, v in toy.items()}),
        "bf16": torch_bytes({k: v.to(torch.bfloat16) for k, v in toy.items()}),
        "views": torch_bytes({"left.weight": toy["left.weight"],
                              "right.weight": toy["left.weight"][:, :4].clone()[:, ::1],
                              "head.weight": toy["head.weight"].t().contiguous().t()}),
        "config-object": torch_bytes({"config": Config(), "state_dict": toy}),
    }
    for name, raw in raws.items():
        put("torch_zip", f"{name}-raw", b"\x00" + raw)
        put("torch_zip", f"{name}-packed", fuzz_torch_zip.unpack(raw))
    put("torch_zip", "toy-deflated", b"\x02" + fuzz_torch_zip.unpack(raws["toy"])[1:])
    put("torch_zip", "legacy-raw", b"\x00" + torch_bytes(toy, legacy=True))


def torch_seeds_more() -> None:
    """Round 2: what torch.save writes that round 1's seeds lacked: a Module's state dict
    (OrderedDict with _metadata), Parameters, integer/bool/complex/float8 dtypes, 0-dim and
    empty tensors, views with a storage offset and shared storages, sparse and quantized
    tensors, nested and non-string keys, torch.Size/dtype/device values."""
    from collections import OrderedDict

    import torch

    torch.manual_seed(0)
    toy = {k: torch.from_numpy(v.copy()) for k, v in common.toy_tensors().items()}
    module = torch.nn.Module()
    module.left = torch.nn.Linear(4, 16, bias=False)
    module.right = torch.nn.Linear(4, 16, bias=False)
    module.head = torch.nn.Linear(16, 12, bias=True)
    base = torch.arange(96, dtype=torch.float32).reshape(16, 6)
    with warnings.catch_warnings():  # torch deprecates making quantized tensors
        warnings.simplefilter("ignore")
        quantized = torch.quantize_per_tensor(torch.randn(4, 4), 0.1, 0, torch.qint8)
    raws = {
        "module": torch_bytes(module.state_dict()),
        "parameters": torch_bytes({k: torch.nn.Parameter(v) for k, v in toy.items()}),
        "dtypes": torch_bytes({"left.weight": toy["left.weight"].to(torch.float16),
                               "right.weight": toy["right.weight"].to(torch.float64),
                               "head.weight": toy["head.weight"],
                               "step": torch.tensor(3), "mask": torch.ones(4, dtype=torch.bool),
                               "idx": torch.arange(5, dtype=torch.int8),
                               "z": torch.zeros(2, dtype=torch.complex64),
                               "f8": torch.zeros(3, dtype=torch.float8_e4m3fn),
                               "empty": torch.zeros(0, 4), "scalar": torch.tensor(1.5)}),
        "views": torch_bytes({"left.weight": base[:, 1:5], "right.weight": base[:, 2:6],
                              "head.weight": torch.randn(16, 12).t()}),
        "sparse": torch_bytes({**toy, "extra": torch.eye(4).to_sparse()}),
        "quantized": torch_bytes({**toy, "q": quantized}),
        "nested": torch_bytes({"model": {"state_dict": OrderedDict(toy)},
                               "meta": {"shape": torch.Size([4, 16]), "dtype": torch.float32,
                                        "device": torch.device("cpu"), 1: "one",
                                        (2, 3): [1.0, None, True]}}),
        "list": torch_bytes([toy, {"epoch": 3}]),
    }
    for name, raw in raws.items():
        put("torch_zip", f"{name}2-raw", b"\x00" + raw)
        put("torch_zip", f"{name}2-packed", fuzz_torch_zip.unpack(raw))


def parts(fx: Path) -> dict[str, list[bytes]]:
    """Part files of a few sharded jobs, written by bilin itself (run from the case folder,
    the checkpoints named by relative paths, so the parts are the same on every machine)."""
    fx = Path("..") / fx.name
    jobs = {
        "eig": (["eig", str(fx / "toy"), "--class", "all", "--top", "2", "--json"], 2),
        "eig-csv": (["eig", str(fx / "img"), "--class", "all", "--top", "2", "--format",
                     "csv"], 2),
        "spectrum": (["spectrum", str(fx / "toy"), "--json"], 3),
        "rank": (["rank-features", str(fx / "lm"), "--layer", "1", "--sae-out",
                  str(fx / "sae8"), "--top", "3"], 2),
        "eig-sae": (["eig", str(fx / "lm"), "--sae", str(fx / "sae8"), "--feature", "all",
                     "--top", "2", "--json"], 2),
    }
    out = {}
    for name, (args, n) in jobs.items():
        got = []
        for i in range(1, n + 1):
            case = common.fresh()
            common.run_cli([*args, "--shard", f"{i}/{n}", "-o", "part"], case)
            got.append((case / "part").read_bytes())
        out[name] = got
    return out


def json_seeds(fx: Path, job_parts: dict[str, list[bytes]]) -> None:
    seed = fuzz_json_docs.seed
    toy_cfg = (common.TOY / "config.json").read_bytes()
    put("json_docs", "config-toy", seed("config", toy_cfg))
    put("json_docs", "config-small", seed("config", json.dumps(
        {"layout": "toy", "d_input": 4, "d_hidden": 16, "d_output": 12,
         "outputs": [f"o{i}" for i in range(12)], "residual": False}).encode()))
    put("json_docs", "config-bilin-map", seed("config", json.dumps(
        {"bilin_map": {"layers": [{"w": "left.weight", "v": "right.weight"}],
                       "head": "head.weight", "kind": "classifier"},
         "classes": [f"c{i}" for i in range(12)]}).encode()))
    put("json_docs", "config-lm-ish", seed("config", json.dumps(
        {"vocab": ["a", "b"], "n_heads": 2, "norm": "rms", "eps": 1e-5, "attn_scale": 0.25,
         "hidden_act": "silu", "residual": True, "image_shape": [2, 2]}).encode()))
    put("json_docs", "config-empty", seed("config", b"{}"))
    maps = {
        "toy": {"layers": [{"w": "left.weight", "v": "right.weight"}], "head": "head.weight",
                "kind": "classifier"},
        "full": {"layers": [{"w": "left.weight", "v": "right.weight", "p": "down.weight",
                             "w_bias": "left.bias", "v_bias": "right.bias",
                             "p_bias": "down.bias"}],
                 "embed": "embed.weight", "head": "cls.weight", "head_bias": "cls.bias",
                 "_comment": "a classifier with every bias"},
        "template": {"layers": {"wv": "blocks.{i}.weight", "p": "down.weight"}, "residual": True,
                     "embed": "embed.weight", "head": "cls.weight"},
        "stacked": {"layers": [{"wv": "blocks.0.weight", "wv_bias": "blocks.0.bias",
                                "p": "down.weight"}], "head": "cls.weight"},
        "lm": {"kind": "lm", "layers": {"wv": "blocks.{i}.weight", "p": "down.weight"},
               "embed": "tok.weight", "head": "unembed.weight",
               "norm": {"kind": "rms", "gain": "norm.weight"}, "final_scale": "final.scale"},
        "lm-layer-norm": {"kind": "lm", "layers": [{"w": "left.weight", "v": "right.weight",
                                                    "p": "down.weight"}],
                          "embed": "tok.weight", "head": "unembed.weight",
                          "norm": {"kind": "layer", "gain": "norm.weight",
                                   "bias": "norm.bias"}},
        "attention": {"kind": "lm", "layers": [{"w": "left.weight", "v": "right.weight",
                                                "p": "down.weight"}],
                      "embed": "tok.weight", "head": "unembed.weight",
                      "norm": {"kind": "scale", "gain": "final.scale"},
                      "attention": {"layers": [{"q1": "attn.q1.weight", "q2": "attn.q2.weight",
                                                "k1": "attn.k1.weight", "k2": "attn.k2.weight",
                                                "v": "attn.v.weight", "o": "attn.o.weight",
                                                "scale": "final.scale"}],
                                    "norm": "scale", "n_heads": 2}},
        "two-inputs": {"layers": [{"w": "left.weight", "v": "right.weight"}],
                       "head": "head.weight", "inputs": 2},
        "toy-kind": {"kind": "toy", "layers": [{"w": "left.weight", "v": "right.weight",
                                                "p": "head.weight"}]},
        "scalar": {"layers": [{"w": "left.weight", "v": "right.weight"}], "head": "head.weight",
                   "norm": {"kind": "scale", "gain": "scalar"}},
    }
    for name, doc in maps.items():
        put("json_docs", f"map-{name}", seed("map", json.dumps(doc).encode()))
    weight_map = {"left.weight": "model-00001-of-00002.safetensors",
                  "right.weight": "model-00001-of-00002.safetensors",
                  "head.weight": "model-00002-of-00002.safetensors"}
    put("json_docs", "index", seed("index", json.dumps(
        {"metadata": {"total_size": 1280}, "weight_map": weight_map}).encode()))
    put("json_docs", "index-bin", seed("index_bin", json.dumps(
        {"metadata": {"total_size": 1280},
         "weight_map": {k: v.replace("model-", "pytorch_model-").replace(".safetensors", ".bin")
                        for k, v in weight_map.items()}}).encode()))
    put("json_docs", "sae-cfg", seed("sae_cfg", b'{"d_in": 12, "d_sae": 6}'))
    put("json_docs", "sae-cfg-saelens", seed("sae_cfg", json.dumps(
        {"architecture": "standard", "d_in": 12, "d_sae": 6, "dtype": "float32",
         "device": "cpu", "hook_name": "blocks.0.hook_mlp_out", "hook_layer": 0,
         "apply_b_dec_to_input": True, "normalize_activations": "none",
         "context_size": 128, "prepend_bos": True}).encode()))
    put("json_docs", "sae-config", seed("sae_config", b'{"d_model": 12, "n_features": 6, "k": 2}'))
    sep = fuzz_json_docs.PART_SEP
    for name, got in job_parts.items():
        put("json_docs", f"merge-{name}", seed("merge", sep.join(got)))
    put("json_docs", "merge-eig-json", seed("merge", sep.join(job_parts["eig"]), fmt=1))
    put("json_docs", "merge-spectrum-csv", seed("merge", sep.join(job_parts["spectrum"]), fmt=2))
    put("json_docs", "merge-rank-tsv", seed("merge", sep.join(job_parts["rank"]), fmt=3))
    shipped = common.ROOT / "sample_checkpoints" / "parts"
    put("json_docs", "merge-shipped", seed("merge", sep.join(
        (shipped / f"toy-spectrum.part{i}").read_bytes() for i in (1, 2))))


def png_bytes(pixels: np.ndarray) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image

    buf = io.BytesIO()
    matplotlib.image.imsave(buf, pixels, cmap="gray", format="png")
    return buf.getvalue()


def cli_seeds(fx: Path, job_parts: dict[str, list[bytes]]) -> None:
    r = np.random.default_rng(1)
    npz = io.BytesIO()
    np.savez(npz, x=r.random((12, 16)).astype(np.float32), y=np.arange(12) % 3)
    data = npz.getvalue()
    npz8 = io.BytesIO()
    np.savez(npz8, x=(r.random((6, 16)) * 255).astype(np.uint8), y=np.arange(6) % 3)

    def npy(a) -> bytes:
        buf = io.BytesIO()
        np.save(buf, a)
        return buf.getvalue()

    map_toy = json.dumps({"layers": [{"w": "left.weight", "v": "right.weight"}],
                          "head": "head.weight"}).encode()
    toy_st = (common.TOY / "model.safetensors").read_bytes()
    seeds = {
        "info": ["info", "@TOY"],
        "info-json": ["info", "@IMG", "--json"],
        "info-suggest": ["info", "@ZOO", "--suggest-map"],
        "info-file": (["info", "@F1.safetensors", "--format", "csv"], toy_st),
        "info-map": (["info", "@ZOO", "--map", "@F1.json", "--json"], map_toy),
        "info-fbt": ["info", "@FBT"],
        "eig": ["eig", "@TOY", "--class", "0", "--top", "2", "--json"],
        "eig-all-csv": ["eig", "@IMG", "--class", "all", "--top", "2", "--format", "csv"],
        "eig-npz": ["eig", "@IMG", "--class", "0,2", "--format", "npz", "-o", "@OUT.npz"],
        "eig-direction": (["eig", "@IMG", "--direction", "@F1.npy", "--top", "3"],
                          npy(np.array([1.0, -1.0, 0.5]))),
        "eig-token-file": (["eig", "@LM", "--token-file", "@F1.txt", "--top", "2", "--json"],
                           b"0, 1\n3-4 # comment\n"),
        "eig-token-str": ["eig", "@LM", "--token-str", "b", "--tokens", "3", "--layer", "0"],
        "eig-chain": ["eig", "@LM", "--token", "2", "--chain", "1", "--top", "2"],
        "eig-sae": ["eig", "@LM", "--sae", "@SAE", "--feature", "1", "--show"],
        "eig-head": ["eig", "@FBT", "--head", "0.1", "--query-token", "3", "--top", "2"],
        "eig-arpack": ["eig", "@TOY", "--class", "1", "--method", "arpack", "--top", "1"],
        "eig-shard": ["eig", "@TOY", "--class", "all", "--json", "--shard", "1/3", "-o",
                      "@OUT.part"],
        "spectrum": ["spectrum", "@TOY", "--class", "0-3", "--float64"],
        "spectrum-json": ["spectrum", "@LM", "--token", "all", "--json"],
        "truncate": ["truncate", "@IMG", "--rank", "2", "--data", "@F1.npz", "-o",
                     "@OUT.safetensors"],
        "truncate-sweep": (["truncate", "@IMG", "--sweep", "0,1,2", "--data", "@F1.npz",
                            "--json"], data),
        "truncate-energy": (["truncate", "@IMG", "--energy", "0.9", "--data", "@F1.npz",
                             "-o", "@OUT.safetensors"], data),
        "eval": (["eval", "@IMG", "--data", "@F1.npz", "--confusion"], data),
        "eval-uint8": (["eval", "@IMG", "--data", "@F1.npz", "--json"], npz8.getvalue()),
        "explain": (["explain", "@IMG", "--input", "@F1.npz:2", "--classes", "2"], data),
        "explain-png": (["explain", "@IMG", "--input", "@F1.png"],
                        png_bytes(r.random((4, 4)))),
        "hosvd": ["hosvd", "@IMG", "--components", "2", "--top", "2", "--json"],
        "hosvd-gram": ["hosvd", "@TOY", "--method", "gram", "--max-memory", "0.5"],
        "compare": ["compare", "@IMG", "@IMG", "--top", "2"],
        "compare-network": ["compare", "--network", "@IMG", "@IMG", "--json"],
        "compare-network-cov": (["compare", "--network", "@IMG", "@IMG", "--input-cov",
                                 "@F1.npz"], data),
        "adversarial": (["adversarial", "@IMG", "--target", "1", "--data", "@F1.npz",
                         "--strength", "0.3"], data),
        "adversarial-input": (["adversarial", "@IMG", "--target", "all", "--input",
                               "@F1.npz:0", "--variant", "top-pixels", "--pixels", "3"], data),
        "plot": ["plot", "@IMG", "--class", "0", "-o", "@OUT.svg", "--n", "1"],
        "interact": ["interact", "@LM", "--layer", "1", "--sae-in", "@SAEP", "--sae-out",
                     "@SAE", "--feature", "2", "--top", "3"],
        "rank-features": ["rank-features", "@LM", "--sae-out", "@SAE", "--top", "3",
                          "--format", "csv"],
        "rank-features-shard": ["rank-features", "@LM", "--sae-out", "@SAEP", "--shard",
                                "2/2", "-o", "@OUT.part"],
        "attention": ["attention", "@FBT", "--layer", "1", "--top", "2", "--pairs", "3"],
        "report": (["report", "@IMG", "-o", "@OUT", "--data", "@F1.npz", "--class", "0"], data),
        "merge": (["merge", "@F1.part", "@F2.part"], *job_parts["eig"][:2]),
        "merge-csv": (["merge", "@F1", "@F2", "--format", "csv"], *job_parts["rank"][:2]),
        "usage": ["eig", "@TOY", "--class", "0", "--top", "1", "--top", "2"],
        "help": ["eig", "--help"],
        "version": ["--version"],
    }
    for name, spec in seeds.items():
        if isinstance(spec, tuple):
            args, *files = spec
        else:
            args, files = spec, []
        put("cli", name, fuzz_cli.seed(args, *files))


def json_seeds_more(fx: Path) -> None:
    """Round 2: configs beside the LM, the transformer and the image classifier, maps for
    them (what ``bilin info --suggest-map`` writes, and variations), more part files."""
    import bilin_cli as bilin

    seed = fuzz_json_docs.seed
    for i, host in enumerate(fuzz_json_docs.HOSTS[1:], 1):
        cfg = (fx / host / "config.json").read_bytes()
        put("json_docs", f"config-{host}", seed("config", cfg, fmt=i))
    put("json_docs", "config-fbt-rope", seed("config", json.dumps(
        {"n_layer": 2, "d_model": 8, "n_heads": 4, "rope": True, "rope_base": 10000.0,
         "causal": False, "attn_scale": 0.5, "vocab": [chr(97 + i) for i in range(11)]}
    ).encode(), fmt=2))
    put("json_docs", "config-img-shape", seed("config", json.dumps(
        {"d_hidden": 6, "d_input": 16, "d_output": 3, "n_layer": 1, "input_shape": [1, 4, 4],
         "classes": ["zero", "one", "two"], "residual": False}).encode(), fmt=3))
    for i, host in enumerate(fuzz_json_docs.MAP_HOSTS[1:], 1):
        name = host.split("/")[0]
        mapping, _ = bilin.suggest_map(fx / host)
        put("json_docs", f"map-{name}-suggested", seed("map", json.dumps(mapping).encode(),
                                                       fmt=i))
    lm_template = {"kind": "lm", "layers": {"wv": "transformer.h.{i}.mlp.w.weight",
                                            "p": "transformer.h.{i}.mlp.p.weight"},
                   "residual": True, "embed": "transformer.wte.weight",
                   "head": "lm_head.weight",
                   "norm": {"kind": "rms", "gain": "transformer.h.{i}.n1.weight"}}
    put("json_docs", "map-lm-template", seed("map", json.dumps(lm_template).encode(), fmt=1))
    fbt_one = {"kind": "lm", "layers": [{"w": "blocks.1.mlp.w_m.weight",
                                         "v": "blocks.1.mlp.w_n.weight",
                                         "p": "blocks.1.mlp.w_proj.weight"}],
               "embed": "embed.weight", "head": "unembed.weight",
               "attention": {"layers": [{"q1": "blocks.0.attn.q1_proj.weight",
                                         "q2": "blocks.0.attn.q2_proj.weight",
                                         "k1": "blocks.0.attn.k1_proj.weight",
                                         "k2": "blocks.0.attn.k2_proj.weight",
                                         "v": "blocks.0.attn.v_proj.weight",
                                         "o": "blocks.0.attn.o_proj.weight"}],
                             "n_heads": 4, "norm": "none"},
               "final_scale": "final_norm.scale"}
    put("json_docs", "map-fbt-attention", seed("map", json.dumps(fbt_one).encode(), fmt=2))
    put("json_docs", "map-img-split", seed("map", json.dumps(
        {"kind": "classifier", "layers": [{"wv": "blocks.0.weight"}], "embed": "embed.weight",
         "head": "head.weight", "residual": True}).encode(),
        fmt=3))
    fxr = Path("..") / fx.name
    sep = fuzz_json_docs.PART_SEP
    jobs = {
        "spectrum-img-csv": (["spectrum", str(fxr / "img"), "--class", "all", "--format",
                              "csv"], 3, 0),
        "spectrum-lm": (["spectrum", str(fxr / "lm"), "--token", "0-6", "--layer", "0"], 2, 1),
        "eig-lm-npz": (["eig", str(fxr / "lm"), "--token", "0-3", "--top", "1", "--format",
                        "npz"], 2, 4),
        "eig-fbt": (["eig", str(fxr / "fbt"), "--token", "all", "--top", "1"], 3, 2),
        "rank-sae12": (["rank-features", str(fxr / "toy"), "--sae-out", str(fxr / "sae12p"),
                        "--top", "2", "--json"], 2, 0),
        "spectrum-sae": (["spectrum", str(fxr / "lm"), "--sae", str(fxr / "sae8p"),
                          "--feature", "all", "--json"], 2, 3),
    }
    for name, (args, n, fmt) in jobs.items():
        put("json_docs", f"merge-{name}", seed("merge", sep.join(parts_of(fx, args, n)),
                                                fmt=fmt))


def tokenizer_bytes(kind: str, vocab: int = 11) -> bytes:
    """A tokenizer.json of ``vocab`` tokens (``kind``: wordlevel, bpe (byte-level), unigram)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    words = [chr(97 + i) for i in range(vocab - 1)]
    if kind == "wordlevel":
        tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["[UNK]", *words])},
                                         unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
    elif kind == "bpe":
        pieces = ["a", "b", "c", "\u0120", "\u0120a", "ab", "\u0120ab", "c\u00a9", "\u00c3",
                  "\u00a9", "<unk>"][:vocab]
        tok = Tokenizer(models.BPE({w: i for i, w in enumerate(pieces)},
                                   [("\u0120", "a"), ("a", "b"), ("\u0120a", "b")],
                                   unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
    else:
        pieces = [("<unk>", 0.0)] + [(f"\u2581{w}", -1.0 - i) for i, w in enumerate(words)]
        tok = Tokenizer(models.Unigram(pieces, unk_id=0, byte_fallback=False))
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
    return tok.to_str().encode()


def cli_seeds_more(fx: Path, job_parts: dict[str, list[bytes]]) -> None:
    """Round 2: the options and formats round 1 seldom reached, tokenizer.json, 3-part
    merges."""
    r = np.random.default_rng(3)
    npz = io.BytesIO()
    np.savez(npz, x=r.random((12, 16)).astype(np.float32), y=np.arange(12) % 3)
    data = npz.getvalue()
    npz = io.BytesIO()
    x = r.random((12, 16)).astype(np.float32)
    x[:, :6] = 0  # a dark border: edge pixels
    np.savez(npz, x=x, y=np.arange(12) % 3)
    edged = npz.getvalue()
    buf = io.BytesIO()
    np.save(buf, r.random(16).astype(np.float32))
    one_image = buf.getvalue()
    toy_st = (common.TOY / "model.safetensors").read_bytes()
    wl, bpe, uni = (tokenizer_bytes(k) for k in ("wordlevel", "bpe", "unigram"))
    spec3 = parts_of(fx, ["spectrum", str(Path("..") / fx.name / "img"), "--class", "all", "--format",
                          "csv"], 3)
    seeds = {
        "tok-eig-str": (["eig", "@LMT", "--token-str", "b", "--tokens", "3"], b"", wl),
        "tok-eig-bpe": (["eig", "@LMT", "--token-str", " ab", "--top", "2", "--json"], b"",
                        bpe),
        "tok-eig-unigram": (["eig", "@LMT", "--token-str", "zz", "--tokens", "2"], b"", uni),
        "tok-spectrum": (["spectrum", "@LMT", "--token", "0-4", "--format", "tsv"], b"", bpe),
        "tok-attention": (["attention", "@FBTT", "--layer", "0", "--pairs", "2", "--tokens",
                           "2", "--top", "1"], b"", uni),
        "tok-info": (["info", "@LMT", "--json"], b"", wl),
        "merge-3": (["merge", "@F1", "@F2", "@F3", "--json"], *spec3),
        "merge-sae": (["merge", "@F1", "@F2", "--format", "tsv"], *job_parts["eig-sae"][:2]),
        "merge-spectrum-o": (["merge", "@F1", "@F2", "@F3", "-o", "@OUT.csv"],
                             *job_parts["spectrum"][:3]),
        "spectrum-npz": ["spectrum", "@IMG", "--class", "all", "--format", "npz", "-o",
                         "@OUT.npz"],
        "spectrum-shard": ["spectrum", "@LM", "--token", "0-5", "--shard", "2/3", "-o",
                           "@OUT.part"],
        "spectrum-sae": ["spectrum", "@LM", "--sae", "@SAEP", "--feature", "all", "--format",
                         "csv"],
        "spectrum-direction": (["spectrum", "@IMG", "--direction", "@F1.npy", "--json"],
                               _npy(np.array([0.5, -1.0, 2.0]))),
        "eig-lm-npz": ["eig", "@LM", "--token", "1,3", "--format", "npz", "-o", "@OUT.npz",
                       "--float64"],
        "eig-hidden-csv": ["eig", "@TOY", "--class", "2", "--basis", "hidden", "--format",
                           "csv", "-o", "@OUT.csv"],
        "eig-fbt-layer": ["eig", "@FBT", "--token", "4", "--layer", "0", "--chain", "1",
                          "--json"],
        "hosvd-npz": ["hosvd", "@LM", "--layer", "0", "--components", "3", "--format", "npz",
                      "-o", "@OUT.npz"],
        "hosvd-csv": ["hosvd", "@TOY", "--basis", "hidden", "--method", "unfold", "--format",
                      "csv"],
        "attention-csv": ["attention", "@FBT", "--head", "1.0", "--format", "csv"],
        "attention-npz": ["attention", "@FBT", "--layer", "0", "--head", "1", "--format", "npz",
                          "-o", "@OUT.npz"],
        "attention-json": ["attention", "@FBT", "--pairs", "0", "--tokens", "0", "--json"],
        "rank-sq": ["rank-features", "@LM", "--layer", "1", "--sae-out", "@SAE", "--measure",
                    "sq_top_k_share", "--top", "2", "--json"],
        "rank-certified": ["rank-features", "@LM", "--sae-out", "@SAEP", "--route",
                           "certified", "--top", "2", "--k", "2"],
        "rank-effective": ["rank-features", "@LM", "--layer", "0", "--sae-out", "@SAE",
                           "--measure", "effective_rank", "--limit", "4", "--format", "tsv"],
        "rank-toy": ["rank-features", "@TOY", "--sae-out", "@SAE12", "--sort",
                     "effective_rank", "--top", "3", "--threads", "1"],
        "interact-json": ["interact", "@LM", "--sae-in", "@SAE", "--sae-out", "@SAEP",
                          "--feature", "0", "--eig", "2", "--features-per-eig", "2", "--json"],
        "interact-csv": ["interact", "@LM", "--layer", "0", "--sae-in", "@SAEP", "--sae-out",
                         "@SAEP", "--feature", "1", "--format", "csv"],
        "compare-csv": (["compare", "@TOY", "@F1.safetensors", "--class", "1", "--basis",
                         "hidden", "--format", "csv"], toy_st),
        "compare-network-mean": (["compare", "--network", "@IMG", "@IMG", "--input-cov",
                                  "@F1.npz", "--input-mean", "--format", "tsv"], data),
        "explain-npy": (["explain", "@IMG", "--input", "@F1.npy", "--top", "2", "--json"],
                        one_image),
        "explain-csv": (["explain", "@IMG", "--input", "@F1.npz:11", "--format", "csv"], data),
        "adversarial-save": (["adversarial", "@IMG", "--target", "2", "--data", "@F1.npz",
                              "--variant", "edge", "--sweep", "0.1,0.5", "--save",
                              "@OUT.npz", "--json"], edged),
        "adversarial-pixel": (["adversarial", "@IMG", "--target", "0", "--data", "@F1.npz",
                               "--inverse", "pixel", "--eig", "1", "--per-class", "2",
                               "--format", "csv"], data),
        "adversarial-top": (["adversarial", "@IMG", "--target", "all", "--data", "@F1.npz",
                             "--variant", "top-pixels", "--sweep", "1,4", "--seed", "3"],
                            data),
        "report-toy": ["report", "@TOY", "-o", "@OUT", "--class", "0-2", "--top", "2",
                       "--json"],
        "report-lm": ["report", "@LM", "-o", "@OUT", "--token", "1", "--sae-in", "@SAEP",
                      "--layer", "0"],
        "report-sae": ["report", "@LM", "-o", "@OUT", "--sae", "@SAE", "--feature", "0,2"],
        "truncate-lm": ["truncate", "@TOY", "--rank", "1", "-o", "@OUT.safetensors", "--json"],
        "eval-csv": (["eval", "@IMG", "--data", "@F1.npz", "--format", "csv"], data),
        "info-suggest-file": (["info", "@F1.safetensors", "--suggest-map"],
                              (fx / "fbt" / "model.safetensors").read_bytes()),
    }
    for name, spec in seeds.items():
        if isinstance(spec, tuple):
            args, *files = spec
        else:
            args, files = spec, []
        put("cli", name, fuzz_cli.seed(args, *files))


def _npy(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def parts_of(fx: Path, args: list[str], n: int) -> list[bytes]:
    got = []
    for i in range(1, n + 1):
        case = common.fresh()
        common.run_cli([*args, "--shard", f"{i}/{n}", "-o", "part"], case)
        got.append((case / "part").read_bytes())
    return got


def main() -> None:
    for target in ("safetensors", "torch_zip", "json_docs", "cli"):
        (common.CORPUS / target).mkdir(parents=True, exist_ok=True)
    common.CRASHES.mkdir(parents=True, exist_ok=True)
    fx = common.fixtures()
    safetensors_seeds(fx)
    torch_seeds()
    torch_seeds_more()
    job_parts = parts(fx)
    json_seeds(fx, job_parts)
    json_seeds_more(fx)
    cli_seeds(fx, job_parts)
    cli_seeds_more(fx, job_parts)
    total = sum(p.stat().st_size for p in common.CORPUS.rglob("*") if p.is_file())
    print(f"corpus: {total} bytes")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()
    shutil.rmtree(common.base(), ignore_errors=True)

"""Shared fixtures: checkpoints of every layout written WITHOUT bilin, and a CLI runner.

The writers use safetensors.numpy / torch.save directly and the reference math
materializes the full tensor B with einsum, so the tests check bilin against code
that shares nothing with it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from bilin_cli.cli.app import main


@dataclass
class Ref:
    """Reference weights of one bilinear layer as plain arrays (float64)."""

    W: np.ndarray
    V: np.ndarray
    P: np.ndarray | None
    b_w: np.ndarray | None = None
    b_v: np.ndarray | None = None
    b_p: np.ndarray | None = None
    E: np.ndarray | None = None  # embedding (d, n_in)


def reference_B(ref: Ref) -> np.ndarray:
    """The naive third-order tensor, symmetrized: B[c,i,j] = sum_a P[c,a] W[a,i] V[a,j]."""
    W, V = ref.W, ref.V
    if ref.b_w is not None:
        W = np.concatenate([W, ref.b_w[:, None]], 1)
        V = np.concatenate([V, ref.b_v[:, None]], 1)
    P = np.eye(W.shape[0]) if ref.P is None else ref.P
    B = np.einsum("ca,ai,aj->cij", P, W, V)
    return 0.5 * (B + B.transpose(0, 2, 1))


def reference_Q(ref: Ref, u: np.ndarray) -> np.ndarray:
    return np.einsum("c,cij->ij", u, reference_B(ref))


def reference_eigvals(ref: Ref, u: np.ndarray) -> np.ndarray:
    """Eigenvalues of the interaction block, sorted by |lambda| descending."""
    Q = reference_Q(ref, u)
    d = ref.W.shape[1]
    lam = np.linalg.eigvalsh(Q[:d, :d])
    return lam[np.argsort(-np.abs(lam), kind="stable")]


def reference_layer_output(ref: Ref, x: np.ndarray) -> np.ndarray:
    left, right = x @ ref.W.T, x @ ref.V.T
    if ref.b_w is not None:
        left, right = left + ref.b_w, right + ref.b_v
    g = left * right
    y = g if ref.P is None else g @ ref.P.T
    return y if ref.b_p is None else y + ref.b_p


def _rng(seed):
    return np.random.default_rng(seed)


def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def write_image(path: Path, d=12, n_in=20, n_cls=5, bias=False, seed=0, config=True,
                n_layer=1, residual=False, as_pt=False) -> list[Ref]:
    """The paper's image classifier: embed -> blocks.{i} (stacked WV) -> head."""
    r = _rng(seed)
    E = r.standard_normal((d, n_in)) / np.sqrt(n_in)
    tensors = {"embed.weight": E}
    refs = []
    for i in range(n_layer):
        WV = r.standard_normal((2 * d, d)) / np.sqrt(d)
        tensors[f"blocks.{i}.weight"] = WV
        ref = Ref(WV[:d], WV[d:], None, E=E if i == 0 else None)
        if bias:
            b = r.standard_normal(2 * d) * 0.5
            tensors[f"blocks.{i}.bias"] = b
            ref.b_w, ref.b_v = b[:d], b[d:]
        refs.append(ref)
    head = r.standard_normal((n_cls, d)) / np.sqrt(d)
    tensors["head.weight"] = head
    refs[-1].P = head
    path.mkdir(parents=True, exist_ok=True)
    # Round-trip through float32 so references see exactly what the file holds.
    tensors = {k: f32(v) for k, v in tensors.items()}
    _as_stored(refs)
    if as_pt:
        import torch

        torch.save({k: torch.from_numpy(v) for k, v in tensors.items()}, path / "model.pt")
    else:
        save_file(tensors, str(path / "model.safetensors"))
    if config:
        cfg = {"d_hidden": d, "d_input": n_in, "d_output": n_cls, "n_layer": n_layer,
               "bias": bias, "residual": residual, "classes": [f"c{i}" for i in range(n_cls)]}
        (path / "config.json").write_text(json.dumps(cfg))
    return refs


def _as_stored(refs):
    """Round reference weights through float32, as the checkpoint stores them."""
    for ref in refs:
        for name in ("W", "V", "P", "b_w", "b_v", "b_p", "E"):
            val = getattr(ref, name)
            if val is not None:
                setattr(ref, name, np.asarray(f32(val), dtype=np.float64))
    return refs


def write_toy(path: Path, d=4, h=6, o=3, seed=1) -> Ref:
    r = _rng(seed)
    t = {"left.weight": f32(r.standard_normal((h, d))),
         "right.weight": f32(r.standard_normal((h, d))),
         "head.weight": f32(r.standard_normal((o, h)))}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(t, str(path))
    return Ref(*(t[k].astype(np.float64) for k in ("left.weight", "right.weight", "head.weight")))


def bf16_round(a: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even float32 -> bfloat16, returned as float64 values (independent)."""
    import torch

    return torch.from_numpy(f32(a)).to(torch.bfloat16).float().numpy().astype(np.float64)


def write_transformer(path: Path, d=8, h=16, vocab=11, n_layer=3, bias=False, seed=2,
                      sharded=False, bf16=False) -> tuple[list[Ref], np.ndarray]:
    """The paper's bilinear transformer keys, with attention and norm keys to ignore."""
    import torch

    r = _rng(seed)
    sd = {"transformer.wte.weight": r.standard_normal((vocab, d)),
          "lm_head.weight": r.standard_normal((vocab, d))}
    for i in range(n_layer):
        pre = f"transformer.h.{i}."
        sd[pre + "attn.qkv.weight"] = r.standard_normal((3 * d, d))
        sd[pre + "attn.o.weight"] = r.standard_normal((d, d))
        sd[pre + "attn.rotary.inv_freq"] = r.standard_normal(d // 2)
        sd[pre + "n1.weight"] = np.ones(d)
        sd[pre + "mlp.w.weight"] = r.standard_normal((2 * h, d)) / np.sqrt(d)
        sd[pre + "mlp.p.weight"] = r.standard_normal((d, h)) / np.sqrt(h)
        if bias:
            sd[pre + "mlp.w.bias"] = r.standard_normal(2 * h) * 0.3
            sd[pre + "mlp.p.bias"] = r.standard_normal(d) * 0.3
    dtype = torch.bfloat16 if bf16 else torch.float32
    tsd = {k: torch.from_numpy(f32(v)).to(dtype).contiguous() for k, v in sd.items()}
    vals = {k: v.float().numpy().astype(np.float64) for k, v in tsd.items()}
    refs = []
    for i in range(n_layer):
        pre = f"transformer.h.{i}.mlp."
        WV = vals[pre + "w.weight"]
        ref = Ref(WV[:h], WV[h:], vals[pre + "p.weight"])
        if bias:
            ref.b_w, ref.b_v = vals[pre + "w.bias"][:h], vals[pre + "w.bias"][h:]
            ref.b_p = vals[pre + "p.bias"]
        refs.append(ref)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"n_layer": n_layer, "d_model": d,
                                                  "vocab": [chr(97 + i) for i in range(vocab)]}))
    from safetensors.torch import save_file as save_torch

    if sharded:
        keys = sorted(tsd)
        half = len(keys) // 2
        shards = {"model-00001-of-00002.safetensors": keys[:half],
                  "model-00002-of-00002.safetensors": keys[half:]}
        weight_map = {}
        for name, ks in shards.items():
            save_torch({k: tsd[k] for k in ks}, str(path / name))
            weight_map.update({k: name for k in ks})
        (path / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {}, "weight_map": weight_map}))
    else:
        save_torch(tsd, str(path / "model.safetensors"))
    return refs, vals["lm_head.weight"]


def write_llama(path: Path, d=8, h=12, vocab=9, n_layer=2, act="identity", seed=3,
                as_bin=False, mlp_gain=False) -> tuple[list[Ref], np.ndarray]:
    import torch

    r = _rng(seed)
    sd = {"model.embed_tokens.weight": r.standard_normal((vocab, d)),
          "lm_head.weight": r.standard_normal((vocab, d)), "model.norm.weight": np.ones(d)}
    refs = []
    for i in range(n_layer):
        pre = f"model.layers.{i}."
        for k, shape in (("mlp.gate_proj", (h, d)), ("mlp.up_proj", (h, d)),
                         ("mlp.down_proj", (d, h)), ("self_attn.q_proj", (d, d))):
            sd[pre + k + ".weight"] = r.standard_normal(shape) / np.sqrt(shape[1])
        sd[pre + "input_layernorm.weight"] = np.ones(d)
        if mlp_gain:  # the RMS-norm gain in front of the MLP, from its own stream
            sd[pre + "post_attention_layernorm.weight"] = _rng(100 + i).uniform(0.2, 2.0, d)
    tsd = {k: torch.from_numpy(f32(v)) for k, v in sd.items()}
    for i in range(n_layer):
        pre = f"model.layers.{i}.mlp."
        refs.append(Ref(*(tsd[pre + k + ".weight"].double().numpy()
                          for k in ("gate_proj", "up_proj", "down_proj"))))
    path.mkdir(parents=True, exist_ok=True)
    cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": d, "intermediate_size": h,
           "num_hidden_layers": n_layer, "vocab_size": vocab}
    if act is not None:
        cfg["hidden_act"] = act
    (path / "config.json").write_text(json.dumps(cfg))
    if as_bin:
        torch.save(tsd, path / "pytorch_model.bin")
    else:
        from safetensors.torch import save_file as save_torch

        save_torch(tsd, str(path / "model.safetensors"))
    return refs, tsd["lm_head.weight"].double().numpy()


def write_tokenizer(path: Path):
    """A byte-level BPE tokenizer.json trained by the tokenizers package, as HF models ship."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["the cat sat on the mat", "café au lait", "the end\nnew line"] * 20,
                            trainer)
    path.mkdir(parents=True, exist_ok=True)
    tok.save(str(path / "tokenizer.json"))
    return tok


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run ``bilin ARGS`` in-process through the real entry point; return (code, out, err)."""

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["bilin", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def image_ckpt(tmp_path):
    refs = write_image(tmp_path / "img")
    return tmp_path / "img", refs

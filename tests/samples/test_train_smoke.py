"""Smoke tests for scripts/train_samples.py: a few training steps of each sample kind on tiny data."""
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "train_samples.py"
MNIST_NPZ = REPO / "sample_checkpoints" / "data" / "mnist-test.npz"


@pytest.fixture(scope="module")
def ts():
    spec = importlib.util.spec_from_file_location("train_samples", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.set_num_threads(2)
    return mod


def _load(d):
    tensors = safetensors_numpy.load_file(str(d / "model.safetensors"))
    cfg = json.loads((d / "config.json").read_text())
    for v in tensors.values():
        assert v.dtype == np.float32
        assert np.isfinite(v).all()
    return tensors, cfg


@pytest.mark.parametrize("name", ["mnist", "mnist-bias"])
def test_image_sample_smoke(ts, tmp_path, name):
    if not MNIST_NPZ.exists():
        pytest.skip("sample_checkpoints/data/mnist-test.npz not present")
    z = np.load(MNIST_NPZ)
    x, y = z["x"], z["y"]
    data = (x[:1536], y[:1536], x[1536:2048], y[1536:2048])
    cfg = ts.run_image_sample(name, tmp_path, seed=0, epochs=2, smoke=True, data=data)
    t, c = _load(tmp_path / name)
    shapes = {"embed.weight": (512, 784), "blocks.0.weight": (1024, 512), "head.weight": (10, 512)}
    if name == "mnist-bias":
        shapes["blocks.0.bias"] = (1024,)
    assert {k: v.shape for k, v in t.items()} == shapes
    assert c["layout"] == "image" and c["bias"] == (name == "mnist-bias")
    assert c["input_shape"] == [28, 28] and len(c["classes"]) == 10
    # recorded accuracy equals a numpy recomputation from the saved weights, and beats chance
    acc = float((ts.numpy_image_logits(t, data[2]).argmax(1) == data[3]).mean())
    assert abs(acc - c["test_accuracy"]) < 1e-6
    assert c["test_accuracy"] > 0.3
    assert (tmp_path / name / "README.md").read_text().count("test accuracy") >= 1
    assert cfg["test_accuracy"] == c["test_accuracy"]


def test_toy_sample_smoke(ts, tmp_path):
    ts.run_toy_sample(tmp_path, seed=0, steps=300, smoke=True)
    t, c = _load(tmp_path / "toy")
    h, o = c["d_hidden"], c["d_output"]
    assert {k: v.shape for k, v in t.items()} == {"left.weight": (h, 4), "right.weight": (h, 4),
                                                  "head.weight": (o, h)}
    assert o == len(c["outputs"]) == 12 and "AND(0,1)" in c["outputs"] and "XOR(2,3)" in c["outputs"]
    # predicting all zeros gives an MSE of about 0.255; a few hundred steps must beat that clearly
    assert math.isfinite(c["expected_mse"]) and c["expected_mse"] < 0.2
    assert len(c["per_output"]) == 12


def test_transformer_and_sae_smoke(ts, tmp_path):
    rng = np.random.default_rng(0)
    words = ["to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis", "nobler",
             "in", "mind", "suffer", "slings", "and", "arrows", "of", "outrageous", "fortune"]
    text = "\n".join(" ".join(rng.choice(words, size=8)) + "." for _ in range(600))
    cfg, saes = ts.run_shakespeare_sample(tmp_path, seed=0, smoke=True, text=text)
    t, c = _load(tmp_path / "shakespeare")
    d, h, V, L = c["d_model"], c["d_hidden"], c["vocab_size"], c["n_layer"]
    assert V == len(c["vocab"]) == len(set(text))
    assert t["transformer.wte.weight"].shape == (V, d)
    assert t["lm_head.weight"].shape == (V, d)
    for i in range(L):
        assert t[f"transformer.h.{i}.attn.qkv.weight"].shape == (3 * d, d)
        assert t[f"transformer.h.{i}.attn.o.weight"].shape == (d, d)
        assert t[f"transformer.h.{i}.mlp.w.weight"].shape == (2 * h, d)
        assert t[f"transformer.h.{i}.mlp.p.weight"].shape == (d, h)
    assert not any("bias" in k for k in t)
    # the loss went down from the uniform-prediction level
    assert math.isfinite(c["val_loss"]) and c["train_loss"] < math.log(V) - 0.3
    for site in ("mlp-in", "mlp-out"):
        sd = tmp_path / "shakespeare" / f"sae-{site}-L{saes['mlp_in']['layer']}"
        st, sc = _load(sd)
        f = sc["n_features"]
        assert sc["format"] == "bilinear-sae" and sc["d_model"] == d
        assert {k: v.shape for k, v in st.items()} == {"w_enc.weight": (f, d), "w_enc.bias": (f,),
                                                       "w_dec.weight": (d, f), "b_dec": (d,)}
        np.testing.assert_allclose(np.linalg.norm(st["w_dec.weight"], axis=0), 1.0, atol=1e-4)
        assert math.isfinite(sc["normalized_mse"]) and sc["normalized_mse"] < 1.0


def test_bilinear_transformer_sample_smoke(tmp_path):
    """scripts/train_bilinear_transformer.py trains a few steps and writes a checkpoint bilin
    reads as a fully bilinear transformer, without a map."""
    spec = importlib.util.spec_from_file_location(
        "train_bilinear_transformer", REPO / "scripts" / "train_bilinear_transformer.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = ("Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\n"
            * 40)
    mod.run(tmp_path, smoke=True, text=text)
    folder = next(p.parent for p in tmp_path.rglob("model.safetensors"))
    tensors, cfg = _load(folder)
    assert "blocks.0.attn.q1_proj.weight" in tensors and "unembed.weight" in tensors
    import bilin_cli as bilin

    m = bilin.load(folder)
    assert m.n_attention == cfg["n_layers"] and m.layout.startswith("fully bilinear")
    assert math.isfinite(cfg["val_loss"])

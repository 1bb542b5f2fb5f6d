"""Networks inside larger files, and Linear chains with activations between (not bilinear)."""

from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import pytest

import bilin_cli as bilin

torch = pytest.importorskip("torch")


def _save(path, tensors: dict) -> None:
    torch.save(OrderedDict((k, torch.from_numpy(np.asarray(v, np.float32)))
                           for k, v in tensors.items()), path)


@pytest.mark.parametrize("layers", [[(512, 784), (10, 256)], [(64, 32), (64, 64), (10, 64)]])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_layers_with_activations_between_are_refused_in_one_line(tmp_path, cli,
                                                                         layers, bias):
    rng = np.random.default_rng(0)
    tensors = {}
    for i, shape in enumerate(layers):
        tensors[f"net.{2 * i}.weight"] = rng.standard_normal(shape)
        if bias:
            tensors[f"net.{2 * i}.bias"] = rng.standard_normal(shape[0])
    _save(tmp_path / "relu.pt", tensors)
    chain = " → ".join(f"net.{2 * i}" for i in range(len(layers)))
    for args in (["eig", tmp_path / "relu.pt", "--class", "1"],
                 ["spectrum", tmp_path / "relu.pt"]):
        code, out, err = cli(*args)
        assert code == 1 and err.count("\n") == 1, err
        assert "no bilinear layer" in err and f"(Linear layers separated by activations: {chain})" in err
        assert "ambiguous" not in err
    code, out, err = cli("info", tmp_path / "relu.pt", "--json")
    assert code == 0 and json.loads(out)["layout"] is None


def test_a_bilinear_decoder_beside_a_relu_encoder_is_read_alone(tmp_path):
    rng = np.random.default_rng(1)
    W, V, P = (rng.standard_normal(s) for s in ((16, 8), (16, 8), (20, 16)))
    _save(tmp_path / "vae.pt", {"encoder.0.weight": rng.standard_normal((32, 20)),
                                "encoder.2.weight": rng.standard_normal((8, 32)),
                                "decoder.left.weight": W, "decoder.right.weight": V,
                                "decoder.down.weight": P})
    m = bilin.load(tmp_path / "vae.pt")
    assert m.embed_key is None and m.meta["set_aside"] == ["encoder"]
    d = bilin.eig(m, cls=3, top=None, dtype=np.float64)
    B = np.einsum("ca,ai,aj->cij", P.astype(np.float32).astype(np.float64),
                  W.astype(np.float32).astype(np.float64), V.astype(np.float32).astype(np.float64))
    want = np.linalg.eigvalsh(0.5 * (B[3] + B[3].T))
    np.testing.assert_allclose(np.sort(d.eigenvalues), np.sort(want), rtol=1e-9, atol=1e-12)
    assert any("encoder.*" in n and "set aside" in n for n in m.notes)


def test_a_network_beside_a_decompositions_components(tmp_path, cli):
    rng = np.random.default_rng(2)
    net = {"embed.weight": rng.standard_normal((12, 20)),
           "blocks.0.weight": rng.standard_normal((32, 12)),
           "head.weight": rng.standard_normal((5, 16))}
    _save(tmp_path / "clean.pt", net)
    _save(tmp_path / "apd.pt", {**{f"target_model.{k}": v for k, v in net.items()},
                                "_components.blocks.0.U": rng.standard_normal((4, 12)),
                                "_components.blocks.0.V": rng.standard_normal((4, 12)),
                                "_components.blocks.0.P": rng.standard_normal((5, 4))})
    m = bilin.load(tmp_path / "apd.pt")
    assert m.layout == "image classifier" and m.meta["set_aside"] == ["_components"]
    clean = bilin.eig(tmp_path / "clean.pt", cls=2, top=5)
    inside = bilin.eig(m, cls=2, top=5)
    np.testing.assert_array_equal(inside.eigenvalues, clean.eigenvalues)
    code, out, err = cli("info", tmp_path / "apd.pt")
    assert code == 0 and "_components.*" in out

"""Every layout and container, written by code that is not bilin's, through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import (
    reference_eigvals,
    reference_layer_output,
    reference_Q,
    write_image,
    write_llama,
    write_toy,
    write_transformer,
)
from safetensors.numpy import save_file

from bilin_cli.storage.containers import open_checkpoint
from bilin_cli.storage.layouts import recognise

CONTRACT = {"eigenvalues", "eigenvectors", "basis", "layer", "direction", "n_eigenvalues",
            "effective_rank"}


def eig_json(cli, *args):
    code, out, err = cli("eig", *args, "--json", "--float64")
    assert code == 0, err
    doc = json.loads(out)
    assert CONTRACT <= set(doc)
    return doc


def check_against_reference(doc, ref, u):
    """Eigenvalues equal the naive reference; hidden-basis vectors satisfy Q v = lambda v."""
    lam = np.array(doc["eigenvalues"])
    vecs = np.array(doc["eigenvectors"])
    expected = reference_eigvals(ref, u)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(lam, expected[: len(lam)], rtol=0, atol=1e-9 * scale)
    assert list(np.abs(lam)) == sorted(np.abs(lam), reverse=True)
    assert doc["n_eigenvalues"] == ref.W.shape[1]
    a = np.abs(expected)
    assert doc["effective_rank"] == pytest.approx(a.sum() ** 2 / (a**2).sum(), rel=1e-9)
    if doc["basis"] == "hidden":
        d = ref.W.shape[1]
        Q = reference_Q(ref, u)[:d, :d]
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-12)
        np.testing.assert_allclose(vecs @ Q, lam[:, None] * vecs, atol=1e-9 * scale)


@pytest.mark.parametrize("as_pt", [False, True])
def test_image_classifier(cli, tmp_path, as_pt):
    (ref,) = write_image(tmp_path / "m", as_pt=as_pt)
    u = np.eye(5)[2]
    doc = eig_json(cli, tmp_path / "m", "--class", "2", "--all", "--basis", "hidden")
    check_against_reference(doc, ref, u)
    assert doc["direction"] == {"kind": "class", "index": 2, "name": "c2"}
    assert doc["basis"] == "hidden" and doc["layer"] == 0
    # Default basis for image models is the input (pixels): E^T v, same order.
    doc_in = eig_json(cli, tmp_path / "m", "--class", "2", "--top", "3")
    assert doc_in["basis"] == "input"
    np.testing.assert_allclose(np.array(doc_in["eigenvectors"]),
                               np.array(doc["eigenvectors"])[:3] @ ref.E, atol=1e-12)
    assert len(doc_in["eigenvectors"][0]) == 20
    assert doc_in["top_k"] == 3


def test_image_with_bias_reports_three_parts(cli, tmp_path):
    (ref,) = write_image(tmp_path / "m", bias=True)
    u = np.eye(5)[4]
    doc = eig_json(cli, tmp_path / "m", "--class", "4", "--all", "--basis", "hidden")
    check_against_reference(doc, ref, u)
    parts = doc["bias_parts"]
    x = np.random.default_rng(0).standard_normal((6, 12))
    lam, vecs = np.array(doc["eigenvalues"]), np.array(doc["eigenvectors"])
    total = ((x @ vecs.T) ** 2 * lam).sum(1) + x @ np.array(parts["linear"]) + parts["constant"]
    np.testing.assert_allclose(total, reference_layer_output(ref, x) @ u, atol=1e-9)


def test_residual_two_layer_classifier(cli, tmp_path):
    refs = write_image(tmp_path / "m", n_layer=2, residual=True)
    code, out, _ = cli("info", tmp_path / "m", "--json")
    info = json.loads(out)
    assert info["n_layers"] == 2 and info["residual"] is True
    assert [L["out_space"] for L in info["layers"]] == ["hidden", "logits"]
    # Default layer is the last; it notes the skip path.
    doc = eig_json(cli, tmp_path / "m", "--class", "1", "--all")
    assert doc["layer"] == 1 and doc["basis"] == "hidden"
    check_against_reference(doc, refs[1], np.eye(5)[1])
    assert any("skip path" in n for n in doc["notes"])
    # Layer 0 through the direct path: u is the head row in the residual stream.
    doc0 = eig_json(cli, tmp_path / "m", "--class", "1", "--layer", "0", "--all",
                    "--basis", "hidden")
    check_against_reference(doc0, refs[0], refs[1].P[1])
    assert doc0["direction"]["path"] == "direct"
    # The model's forward pass: x + g(x) through both layers, head included.
    model = recognise(open_checkpoint(tmp_path / "m"))
    x = np.random.default_rng(1).standard_normal((4, 20))
    h = x @ refs[0].E.T
    h = h + reference_layer_output(refs[0], h)
    logits = h @ refs[1].P.T + reference_layer_output(refs[1], h)
    np.testing.assert_allclose(model.forward(x, np.float64), logits, atol=1e-10)


def test_toy_model(cli, tmp_path):
    ref = write_toy(tmp_path / "toy.safetensors")
    doc = eig_json(cli, tmp_path / "toy.safetensors", "--class", "1", "--all")
    assert doc["basis"] == "hidden"
    check_against_reference(doc, ref, np.eye(3)[1])
    model = recognise(open_checkpoint(tmp_path / "toy.safetensors"))
    x = np.random.default_rng(2).standard_normal((5, 4))
    np.testing.assert_allclose(model.forward(x, np.float64), reference_layer_output(ref, x),
                               atol=1e-12)


@pytest.mark.parametrize("sharded,bf16,bias", [(False, False, False), (True, True, False),
                                                (False, False, True)])
def test_transformer(cli, tmp_path, sharded, bf16, bias):
    refs, unembed = write_transformer(tmp_path / "lm", sharded=sharded, bf16=bf16, bias=bias)
    code, out, err = cli("info", tmp_path / "lm", "--json")
    info = json.loads(out)
    assert info["layout"] == "bilinear transformer" and info["n_layers"] == 3
    assert info["outputs"] == {"kind": "vocabulary", "n": 11, "option": "--token T",
                               "tokens": "character vocabulary from config.json"}
    if bf16:
        assert set(info["dtype"]) == {"BF16"}
    doc = eig_json(cli, tmp_path / "lm", "--layer", "2", "--token", "7", "--all")
    assert doc["direction"]["kind"] == "token" and doc["direction"]["string"] == "h"
    check_against_reference(doc, refs[2], unembed[7])
    # --direction: any residual-stream vector.
    u = np.random.default_rng(3).standard_normal(8)
    np.save(tmp_path / "u.npy", u)
    doc = eig_json(cli, tmp_path / "lm", "--layer", "1", "--direction", tmp_path / "u.npy",
                   "--all")
    check_against_reference(doc, refs[1], u)
    if bias:
        x = np.random.default_rng(4).standard_normal((3, 8))
        lam, vecs = np.array(doc["eigenvalues"]), np.array(doc["eigenvectors"])
        p = doc["bias_parts"]
        total = ((x @ vecs.T) ** 2 * lam).sum(1) + x @ np.array(p["linear"]) + p["constant"]
        np.testing.assert_allclose(total, reference_layer_output(refs[1], x) @ u, atol=1e-9)


@pytest.mark.parametrize("as_bin", [False, True])
def test_llama_identity_gate_is_exact(cli, tmp_path, as_bin):
    refs, unembed = write_llama(tmp_path / "llama", as_bin=as_bin)
    code, out, err = cli("eig", tmp_path / "llama", "--layer", "0", "--token", "3", "--json",
                         "--float64", "--all")
    assert code == 0 and "warning" not in err
    check_against_reference(json.loads(out), refs[0], unembed[3])
    # The MLP forward pass (down(gate(x) * up(x))) equals sum lambda (v.x)^2.
    model = recognise(open_checkpoint(tmp_path / "llama"))
    x = np.random.default_rng(5).standard_normal((4, 8))
    layer = model.layer(0, np.float64)
    np.testing.assert_allclose(layer.forward(x), reference_layer_output(refs[0], x), atol=1e-12)


def test_llama_with_silu_warns_loudly(cli, tmp_path):
    write_llama(tmp_path / "llama", act="silu")
    code, out, err = cli("eig", tmp_path / "llama", "--token", "1")
    assert code == 0
    assert "warning:" in err and "NOT exact" in err
    code, out, err = cli("info", tmp_path / "llama", "--json")
    assert "NOT exact" in json.loads(out)["warnings"][0]


def test_explicit_map(cli, tmp_path):
    r = np.random.default_rng(6)
    t = {"enc.weight": r.standard_normal((7, 10)), "mix.a": r.standard_normal((9, 7)),
         "mix.b": r.standard_normal((9, 7)), "out.weight": r.standard_normal((4, 9))}
    t = {k: v.astype(np.float32) for k, v in t.items()}
    save_file(t, str(tmp_path / "odd.safetensors"))
    # Unknown names, but an unambiguous structure: recognised without a map.
    code, out, err = cli("info", tmp_path / "odd.safetensors", "--json")
    assert code == 0, err
    assert "recognised by structure" in json.loads(out)["notes"][0]
    (tmp_path / "map.json").write_text(json.dumps(
        {"layers": [{"w": "mix.a", "v": "mix.b"}], "embed": "enc.weight", "head": "out.weight"}))
    from conftest import Ref

    ref = Ref(*(t[k].astype(np.float64) for k in ("mix.a", "mix.b", "out.weight")))
    doc = eig_json(cli, tmp_path / "odd.safetensors", "--map", tmp_path / "map.json",
                   "--class", "3", "--all", "--basis", "hidden")
    check_against_reference(doc, ref, np.eye(4)[3])
    # A {i} template expands over layers.
    t2 = {f"mlp.{i}.{k}": r.standard_normal(s).astype(np.float32) for i in range(3)
          for k, s in (("wv", (10, 6)), ("p", (6, 5)))}
    save_file(t2, str(tmp_path / "tmpl.safetensors"))
    template = {"layers": {"wv": "mlp.{i}.wv", "p": "mlp.{i}.p"}}
    (tmp_path / "m2.json").write_text(json.dumps(template))
    code, out, err = cli("info", tmp_path / "tmpl.safetensors", "--map", tmp_path / "m2.json",
                         "--json")
    assert code == 0, err
    assert json.loads(out)["n_layers"] == 3


def test_info_reports_the_basics(cli, tmp_path):
    write_image(tmp_path / "m", bias=True)
    code, out, err = cli("info", tmp_path / "m", "--json")
    doc = json.loads(out)
    assert doc["layout"] == "image classifier"
    assert doc["layers"] == [{"index": 0, "d": 12, "h": 12, "o": 5, "out_space": "logits",
                              "bias": True}]
    assert doc["n_parameters"] == 12 * 20 + 24 * 12 + 24 + 5 * 12
    assert doc["outputs"]["names"] == ["c0", "c1", "c2", "c3", "c4"]
    assert doc["bias"] is True and doc["residual"] is False
    assert doc["file_size_bytes"] > doc["n_parameters"] * 4
    code, out, err = cli("info", tmp_path / "m")
    assert code == 0 and "image classifier" in out and "layer" in out

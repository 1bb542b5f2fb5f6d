"""Two-input bilinear forms W_p((W_l x_a) * (W_r x_b)), read with the map key "inputs": 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

import bilin_cli as bilin


@pytest.fixture
def modular(tmp_path):
    """A modular-arithmetic form: one one-hot per operand (p = 7), h = 20, with biases."""
    r = np.random.default_rng(0)
    t = {"W_l": r.standard_normal((20, 7)), "W_r": r.standard_normal((20, 7)),
         "W_p": r.standard_normal((7, 20)), "b_l": r.standard_normal(20),
         "b_r": r.standard_normal(20)}
    t = {k: v.astype(np.float32) for k, v in t.items()}
    save_file(t, str(tmp_path / "mod.safetensors"))
    mapping = {"layers": [{"w": "W_l", "v": "W_r", "p": "W_p", "w_bias": "b_l",
                           "v_bias": "b_r"}], "inputs": 2}
    (tmp_path / "map.json").write_text(json.dumps(mapping))
    return tmp_path, {k: v.astype(np.float64) for k, v in t.items()}


def test_q_is_the_off_diagonal_form_and_explains_the_model(modular):
    folder, t = modular
    m = bilin.load(folder / "mod.safetensors", map=folder / "map.json")
    for c in range(7):
        d = bilin.eig(m, cls=c, top=None, dtype=np.float64)
        M = t["W_l"].T @ np.diag(t["W_p"][c]) @ t["W_r"]  # (x_a, x_b)
        sv = np.linalg.svd(M, compute_uv=False)
        want = np.sort(np.concatenate([sv, -sv]) / 2)
        np.testing.assert_allclose(np.sort(d.eigenvalues), want, atol=1e-10)
        for a in range(7):
            for b in range(7):
                z = np.concatenate([np.eye(7)[a], np.eye(7)[b]])
                got = (np.sum(d.eigenvalues * (d.eigenvectors @ z) ** 2) + d.linear @ z
                       + d.constant)
                y = t["W_p"][c] @ ((t["W_l"][:, a] + t["b_l"]) * (t["W_r"][:, b] + t["b_r"]))
                assert got == pytest.approx(y, rel=1e-9, abs=1e-9)
    doc = d.as_dict()
    assert doc["operands"] == {"x_a": [0, 7], "x_b": [7, 14]}
    assert len(doc["operand_shares"]) == 14


def test_cli_says_which_half_is_which(modular, cli):
    folder, _ = modular
    args = ("--map", folder / "map.json")
    code, out, err = cli("eig", folder / "mod.safetensors", "--class", "2", "--json", *args)
    assert code == 0, err
    assert json.loads(out)["operands"] == {"x_a": [0, 7], "x_b": [7, 14]}
    code, out, err = cli("spectrum", folder / "mod.safetensors", "--json", *args)
    assert code == 0 and json.loads(out)["operands"]["x_b"] == [7, 14]
    code, out, err = cli("truncate", folder / "mod.safetensors", "--rank", "4", "-o",
                         folder / "small", "--json", *args)
    assert code == 0, err
    assert json.loads(out)["operands"]["x_a"] == [0, 7]
    code, out, err = cli("info", folder / "mod.safetensors", *args, "--json")
    assert code == 0 and json.loads(out)["operands"] == {"x_a": [0, 7], "x_b": [7, 14]}


def test_without_the_key_nothing_changes_but_info_says_so(modular, cli):
    folder, _ = modular
    code, out, err = cli("info", folder / "mod.safetensors", "--json", "--map",
                         folder / "map.json")
    two = json.loads(out)
    (folder / "one.json").write_text(json.dumps(
        {"layers": [{"w": "W_l", "v": "W_r", "p": "W_p", "w_bias": "b_l", "v_bias": "b_r"}]}))
    code, out, err = cli("info", folder / "mod.safetensors", "--json", "--map",
                         folder / "one.json")
    one = json.loads(out)
    assert one["layers"][0]["d"] == 7 and two["layers"][0]["d"] == 14
    assert any('"inputs": 2' in n for n in one["notes"])


@pytest.mark.parametrize("bad, says", [
    ({"inputs": 3}, "'inputs' must be 1 or 2"),
    ({"inputs": True}, "'inputs' must be 1 or 2"),
    ({"inputs": 2, "embed": "W_p"}, "drop 'embed'"),
])
def test_bad_inputs_keys_are_one_line(modular, cli, bad, says):
    folder, _ = modular
    mapping = {"layers": [{"w": "W_l", "v": "W_r", "p": "W_p"}], **bad}
    (folder / "bad.json").write_text(json.dumps(mapping))
    code, out, err = cli("eig", folder / "mod.safetensors", "--class", "1", "--map",
                         folder / "bad.json")
    assert code == 1 and says in err and err.count("\n") == 1

"""Truncation, the sweep, eval and spectrum, against independent computations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import reference_B, reference_layer_output, write_image, write_toy

from bilin_cli.storage.containers import open_checkpoint
from bilin_cli.storage.layouts import recognise


def independent_logits(refs, x):
    """embed -> (Wx+b)(Vx+b) -> head, written out here (no bilin code)."""
    (ref,) = refs
    return reference_layer_output(ref, x @ ref.E.T)


def reference_truncated_logits(ref, x, k):
    """Top-k |lambda| eigenpairs of each class's naive (augmented) B_c; sum lambda (v.h)^2."""
    h = x @ ref.E.T
    if ref.b_w is not None:
        h = np.concatenate([h, np.ones((h.shape[0], 1))], 1)
    B = reference_B(ref)
    out = np.zeros((x.shape[0], B.shape[0]))
    for c in range(B.shape[0]):
        lam, vecs = np.linalg.eigh(B[c])
        order = np.argsort(-np.abs(lam), kind="stable")[:k]
        out[:, c] = ((h @ vecs[:, order]) ** 2 * lam[order]).sum(1)
    return out


@pytest.fixture
def setup(tmp_path):
    def make(bias=False):
        refs = write_image(tmp_path / "m", d=10, n_in=16, n_cls=4, bias=bias, seed=11)
        r = np.random.default_rng(12)
        x = r.integers(0, 256, size=(300, 4, 4), dtype=np.uint8)
        logits = independent_logits(refs, x.reshape(300, -1) / 255.0)
        # Labels: mostly the model's own prediction, some flipped, so accuracy is non-trivial.
        y = logits.argmax(1)
        flip = r.random(300) < 0.2
        y[flip] = r.integers(0, 4, flip.sum())
        np.savez_compressed(tmp_path / "data.npz", x=x, y=y.astype(np.uint8))
        return refs, x.reshape(300, -1) / 255.0, y

    return make


def read_logits(path, x):
    model = recognise(open_checkpoint(path))
    return model.forward(x, np.float64)


@pytest.mark.parametrize("bias", [False, True])
def test_full_rank_reproduces_logits(cli, tmp_path, setup, bias):
    refs, x, _ = setup(bias)
    d_full = 10 + bias
    code, out, err = cli("truncate", tmp_path / "m", "--rank", d_full, "--float64",
                         "-o", tmp_path / "full.safetensors", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["hidden_units"] == 4 * d_full and doc["augmented"] is bias
    assert all(r["k"] == d_full and r["max_discarded_abs_eigenvalue"] == 0 for r in doc["per_class"])
    expected = independent_logits(refs, x)
    got = read_logits(tmp_path / "full.safetensors", x)
    np.testing.assert_allclose(got, expected, atol=2e-5 * np.abs(expected).max())


@pytest.mark.parametrize("bias", [False, True])
def test_rank_k_equals_sum_of_kept_components_and_bound_holds(cli, tmp_path, setup, bias):
    refs, x, _ = setup(bias)
    k = 3
    code, out, err = cli("truncate", tmp_path / "m", "--rank", k, "--float64", "-o",
                         tmp_path / "k3", "--json")
    assert code == 0, err
    got = read_logits(tmp_path / "k3", x)
    np.testing.assert_allclose(got, reference_truncated_logits(refs[0], x, k), atol=1e-5)
    # |full - truncated| <= max|lambda discarded| * ||h||^2 (h = the layer's input).
    h = x @ refs[0].E.T
    if bias:
        h = np.concatenate([h, np.ones((len(h), 1))], 1)
    bound = np.array([r["max_discarded_abs_eigenvalue"] for r in json.loads(out)["per_class"]])
    err_ = np.abs(independent_logits(refs, x) - got)
    assert (err_ <= bound[None, :] * (h**2).sum(1)[:, None] + 1e-6).all()
    info = json.loads(cli("info", tmp_path / "k3", "--json")[1])
    assert info["layers"][0]["h"] == 4 * k and info["bias"] is bias


def test_sweep_agrees_with_written_checkpoints_and_eval(cli, tmp_path, setup):
    refs, x, y = setup(False)
    code, out, err = cli("truncate", tmp_path / "m", "--sweep", "0,1,2,5,10", "--data",
                         tmp_path / "data.npz", "--json", "--float64")
    assert code == 0, err
    doc = json.loads(out)
    full = float(np.mean(independent_logits(refs, x).argmax(1) == y))
    assert doc["full_accuracy"] == pytest.approx(full)
    by_k = {r["k"]: r for r in doc["sweep"]}
    assert set(by_k) == {0, 1, 2, 5, 10}
    assert by_k[10]["accuracy"] == pytest.approx(full) and by_k[10]["drop"] == pytest.approx(0)
    for k in (1, 2, 5):
        cli("truncate", tmp_path / "m", "--rank", k, "--float64", "-o", tmp_path / f"k{k}.safetensors")
        code, out, err = cli("eval", tmp_path / f"k{k}.safetensors", "--data",
                             tmp_path / "data.npz", "--json", "--float64")
        assert code == 0, err
        ev = json.loads(out)
        assert ev["accuracy"] == pytest.approx(by_k[k]["accuracy"])
        independent = np.mean(reference_truncated_logits(refs[0], x, k).argmax(1) == y)
        assert ev["accuracy"] == pytest.approx(independent)


def test_eval_matches_independent_forward(cli, tmp_path, setup):
    refs, x, y = setup(True)
    code, out, err = cli("eval", tmp_path / "m", "--data", tmp_path / "data.npz", "--json",
                         "--confusion")
    assert code == 0, err
    doc = json.loads(out)
    pred = independent_logits(refs, x).argmax(1)
    assert doc["n"] == 300
    assert doc["accuracy"] == pytest.approx(np.mean(pred == y))
    M = np.array(doc["confusion"])
    assert M.sum() == 300 and np.trace(M) == (pred == y).sum()
    for c in range(4):
        assert doc["per_class"][c]["n"] == (y == c).sum()


def test_eval_reads_idx_directories(cli, tmp_path, setup):
    import gzip

    refs, x, y = setup(False)
    raw = np.load(tmp_path / "data.npz")
    (tmp_path / "idx").mkdir()
    img = bytes([0, 0, 8, 3]) + b"".join(int(n).to_bytes(4, "big") for n in raw["x"].shape)
    lab = bytes([0, 0, 8, 1]) + int(len(raw["y"])).to_bytes(4, "big")
    with gzip.open(tmp_path / "idx" / "t10k-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(img + raw["x"].tobytes())
    with gzip.open(tmp_path / "idx" / "t10k-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(lab + raw["y"].tobytes())
    a = json.loads(cli("eval", tmp_path / "m", "--data", tmp_path / "idx", "--json")[1])
    b = json.loads(cli("eval", tmp_path / "m", "--data", tmp_path / "data.npz", "--json")[1])
    assert a["accuracy"] == b["accuracy"] and a["n"] == 300


def test_energy_picks_smallest_k(cli, tmp_path, setup):
    refs, x, _ = setup(False)
    code, out, err = cli("truncate", tmp_path / "m", "--energy", "0.8", "-o",
                         tmp_path / "e.safetensors", "--json", "--float64")
    assert code == 0, err
    B = reference_B(refs[0])
    for row in json.loads(out)["per_class"]:
        a = np.sort(np.abs(np.linalg.eigvalsh(B[row["class"]])))[::-1]
        cum = np.cumsum(a) / a.sum()
        assert cum[row["k"] - 1] >= 0.8 - 1e-9
        assert row["k"] == 1 or cum[row["k"] - 2] < 0.8
        assert row["share_kept"] == pytest.approx(cum[row["k"] - 1])


def test_toy_truncation_keeps_layout(cli, tmp_path):
    ref = write_toy(tmp_path / "toy.safetensors", d=4, h=6, o=3)
    code, out, err = cli("truncate", tmp_path / "toy.safetensors", "--rank", 4, "-o",
                         tmp_path / "t4.safetensors", "--float64")
    assert code == 0, err
    ck = open_checkpoint(tmp_path / "t4.safetensors")
    assert {"left.weight", "right.weight", "head.weight"} <= set(ck.tensors)
    x = np.random.default_rng(0).standard_normal((5, 4))
    np.testing.assert_allclose(recognise(ck).forward(x, np.float64),
                               reference_layer_output(ref, x), atol=1e-4)


def test_truncate_refuses_what_it_cannot_do(cli, tmp_path, setup):
    setup(False)
    (tmp_path / "exists.safetensors").write_text("keep me")
    code, _, err = cli("truncate", tmp_path / "m", "--rank", 2, "-o", tmp_path / "exists.safetensors")
    assert code == 1 and "--force" in err
    assert (tmp_path / "exists.safetensors").read_text() == "keep me"
    write_image(tmp_path / "res", n_layer=2, residual=True)
    code, _, err = cli("truncate", tmp_path / "res", "--rank", 2, "-o", tmp_path / "r.safetensors")
    assert code == 1 and err.startswith("error:")
    code, _, err = cli("truncate", tmp_path / "m", "--rank", 2)
    assert code == 2
    code, _, err = cli("eval", tmp_path / "m")
    assert code == 1 and "--data" in err


def test_spectrum_summary_and_plot(cli, tmp_path, setup):
    refs, _, _ = setup(False)
    code, out, err = cli("spectrum", tmp_path / "m", "--json", "--plot", tmp_path / "s.png")
    assert code == 0, err
    doc = json.loads(out)
    B = reference_B(refs[0])
    assert len(doc["directions"]) == 4
    for c, row in enumerate(doc["directions"]):
        lam = np.linalg.eigvalsh(B[c])
        a = np.sort(np.abs(lam))[::-1]
        assert row["effective_rank"] == pytest.approx(a.sum() ** 2 / (a**2).sum(), rel=1e-5)
        assert row["top_positive"][0] == pytest.approx(lam.max(), rel=1e-5)
        assert row["top_negative"][0] == pytest.approx(lam.min(), rel=1e-5)
        cum = np.cumsum(a) / a.sum()
        assert row["k90"] == int(np.argmax(cum >= 0.9 - 1e-9)) + 1
    png = (tmp_path / "s.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000

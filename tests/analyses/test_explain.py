"""bilin explain: contributions sum to the logit, and match a naive B + eigh computation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import reference_B, reference_layer_output, write_image, write_toy, write_transformer
from test_hosvd import check_png

D, N_IN, N_CLS = 10, 16, 4


def make(tmp_path, bias, seed=31, **kw):
    refs = write_image(tmp_path / "m", d=D, n_in=N_IN, n_cls=N_CLS, bias=bias, seed=seed, **kw)
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["input_shape"] = [4, 4]
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    r = np.random.default_rng(seed)
    x = r.integers(0, 256, size=(5, 4, 4), dtype=np.uint8)
    np.savez(tmp_path / "data.npz", x=x, y=np.arange(5, dtype=np.uint8) % N_CLS)
    return refs, x.reshape(5, -1) / 255.0


def independent(ref, x):
    """Logits, and per class: all contributions (naive B, eigh), linear and constant parts."""
    h = ref.E @ x
    logits = reference_layer_output(ref, h[None])[0]
    B = reference_B(ref)
    parts = []
    for c in range(B.shape[0]):
        lam, vecs = np.linalg.eigh(B[c, :D, :D])
        contrib = lam * (vecs.T @ h) ** 2
        lin = 2 * B[c, :D, D] @ h if ref.b_w is not None else None
        const = B[c, D, D] if ref.b_w is not None else None
        parts.append((lam, contrib, lin, const))
    return logits, parts


@pytest.mark.parametrize("bias", [False, True])
def test_contributions_sum_to_logit_and_match_reference(cli, tmp_path, bias):
    refs, x = make(tmp_path, bias)
    ref = refs[0]
    for index in (0, 3):
        code, out, err = cli("explain", tmp_path / "m", "--input", f"{tmp_path / 'data.npz'}:{index}",
                             "--json", "--float64", "--classes", N_CLS, "--top", 3)
        assert code == 0, err
        doc = json.loads(out)
        logits, parts = independent(ref, x[index])
        np.testing.assert_allclose(doc["logits"], logits, rtol=1e-9, atol=1e-12)
        assert doc["prediction"] == int(np.argmax(logits))
        assert doc["input"]["label"] == index % N_CLS
        assert [c["class"] for c in doc["classes"]] == list(np.argsort(-logits, kind="stable"))
        assert doc["max_abs_residual"] < 1e-10
        for cd in doc["classes"]:
            lam, contrib, lin, const = parts[cd["class"]]
            assert cd["logit"] == pytest.approx(logits[cd["class"]], rel=1e-9, abs=1e-12)
            assert cd["interaction"] == pytest.approx(contrib.sum(), rel=1e-9, abs=1e-12)
            parts_sum = cd["interaction"] + (cd["linear"] or 0) + (cd["constant"] or 0)
            assert parts_sum == pytest.approx(cd["logit"], rel=1e-9, abs=1e-12)
            assert abs(cd["check"]["residual"]) < 1e-10
            if bias:
                assert cd["linear"] == pytest.approx(lin, rel=1e-9, abs=1e-12)
                assert cd["constant"] == pytest.approx(const, rel=1e-9, abs=1e-12)
            else:
                assert cd["linear"] is None and cd["constant"] is None
            pos = np.sort(contrib[contrib > 0])[::-1][:3]
            neg = np.sort(contrib[contrib < 0])[:3]
            np.testing.assert_allclose([r["contribution"] for r in cd["positive"]], pos, rtol=1e-8)
            np.testing.assert_allclose([r["contribution"] for r in cd["negative"]], neg, rtol=1e-8)
            # Each row's eigenvalue is the reference's for that contribution, and its rank is
            # the |lambda|-descending position from 1 (as bilin eig --all numbers them).
            by_abs = lam[np.argsort(-np.abs(lam), kind="stable")]
            for r in cd["positive"] + cd["negative"]:
                assert "index" not in r and r["rank"] >= 1
                assert r["eigenvalue"] == pytest.approx(by_abs[r["rank"] - 1], rel=1e-9)
                assert r["eigenvalue"] * r["projection"] ** 2 == pytest.approx(r["contribution"])


def test_ranks_agree_with_eig(cli, tmp_path):
    make(tmp_path, False)
    code, out, _ = cli("explain", tmp_path / "m", "-i", f"{tmp_path / 'data.npz'}:1", "--json",
                       "--float64", "--classes", 1)
    cd = json.loads(out)["classes"][0]
    code, out, _ = cli("eig", tmp_path / "m", "--class", cd["class"], "--all", "--float64",
                       "--json")
    lam = json.loads(out)["eigenvalues"]
    for r in cd["positive"] + cd["negative"]:
        assert lam[r["rank"] - 1] == pytest.approx(r["eigenvalue"], rel=1e-12)


def test_float32_residual_is_small(cli, tmp_path):
    make(tmp_path, True)
    code, out, err = cli("explain", tmp_path / "m", "-i", f"{tmp_path / 'data.npz'}:2", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["dtype"] == "float32" and len(doc["classes"]) == 3
    for cd in doc["classes"]:
        assert cd["check"]["relative_residual"] < 1e-4


def test_residual_two_layer_model_sums_to_forward(cli, tmp_path):
    from bilin_cli.api import load

    make(tmp_path, True, n_layer=2, residual=True)
    code, out, err = cli("explain", tmp_path / "m", "-i", f"{tmp_path / 'data.npz'}:0", "--json",
                         "--float64", "--classes", N_CLS)
    assert code == 0, err
    doc = json.loads(out)
    model = load(tmp_path / "m")
    with np.load(tmp_path / "data.npz") as z:
        x = z["x"][0].reshape(1, -1) / 255.0
    np.testing.assert_allclose(doc["logits"], model.forward(x, np.float64)[0], rtol=1e-12)
    for cd in doc["classes"]:
        assert cd["skip"] is not None and cd["linear"] is not None
        total = cd["interaction"] + cd["linear"] + cd["constant"] + cd["skip"]
        assert total == pytest.approx(cd["logit"], rel=1e-9, abs=1e-12)


def test_png_input_and_plot(cli, tmp_path):
    from PIL import Image

    refs, _ = make(tmp_path, False)
    pixels = np.random.default_rng(5).integers(0, 120, size=(4, 4), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(tmp_path / "digit.png")
    code, out, err = cli("explain", tmp_path / "m", "--input", tmp_path / "digit.png", "--json",
                         "--float64", "--plot", tmp_path / "why.png", "--classes", 2)
    assert code == 0, err
    doc = json.loads(out)
    logits, _ = independent(refs[0], pixels.ravel() / 255.0)
    # matplotlib reads PNG pixels as float32 (v / 255 to ~1e-7 relative).
    np.testing.assert_allclose(doc["logits"], logits, rtol=1e-5)
    assert doc["input"]["kind"] == "image"
    check_png(tmp_path / "why.png")
    # A wrong-sized image is a one-line error.
    Image.fromarray(np.zeros((5, 4), np.uint8), mode="L").save(tmp_path / "bad.png")
    code, _, err = cli("explain", tmp_path / "m", "--input", tmp_path / "bad.png")
    assert code == 1 and "4x5 pixels" in err and "4x4" in err


def test_toy_model_values_and_bar_plot(cli, tmp_path):
    ref = write_toy(tmp_path / "toy.safetensors", d=4, h=6, o=3)
    code, out, err = cli("explain", tmp_path / "toy.safetensors", "--input", "1,0,1,0.5", "--json",
                         "--float64", "--plot", tmp_path / "toy.png")
    assert code == 0, err
    doc = json.loads(out)
    x = np.array([1, 0, 1, 0.5])
    np.testing.assert_allclose(doc["logits"], reference_layer_output(ref, x[None])[0], rtol=1e-9)
    assert doc["max_abs_residual"] < 1e-10
    check_png(tmp_path / "toy.png", diverging=False)


def test_npz_output(cli, tmp_path):
    make(tmp_path, False)
    code, _, err = cli("explain", tmp_path / "m", "-i", f"{tmp_path / 'data.npz'}:0",
                       "--format", "npz", "-o", tmp_path / "e.npz")
    assert code == 0, err
    with np.load(tmp_path / "e.npz") as z:
        assert z["contributions"].shape == (3, D) and z["logits"].shape == (N_CLS,)
        np.testing.assert_allclose(z["contributions"].sum(1), z["logits"][z["classes"]], rtol=1e-4)


def test_user_errors(cli, tmp_path):
    make(tmp_path, False)
    data = tmp_path / "data.npz"
    for spec, words in ((f"{data}:5", "out of range"), (f"{data}:-1", "out of range"),
                        ("1,2,3", "takes 16"), (str(tmp_path / "nope.png"), "no such file"),
                        (str(data), "cannot read")):
        code, out, err = cli("explain", tmp_path / "m", "--input", spec)
        assert code == 1 and err.startswith("error:") and words in err, (spec, err)
        assert "Traceback" not in err
    write_transformer(tmp_path / "lm", n_layer=1)
    code, _, err = cli("explain", tmp_path / "lm", "--input", "1,2")
    assert code == 1 and "classifier" in err

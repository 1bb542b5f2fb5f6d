"""HOSVD of a layer against the naive materialized B and LAPACK's SVD of its unfolding."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import Ref, reference_B, write_image, write_transformer

from bilin_cli.analyses.hosvd import component, gram_matrix, loadings, unfolding
from bilin_cli.model.bilinear import BilinearLayer


def check_png(path, diverging=True):
    """A real, non-blank PNG; with ``diverging`` it has both reddish and bluish pixels."""
    import matplotlib.image

    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    rgb = img[..., :3]
    assert rgb.std() > 0.05  # not blank
    if diverging:
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        assert np.sum((r > b + 0.25) & (r > g + 0.1)) > 20, "no reddish pixels"
        assert np.sum((b > r + 0.25) & (b > g + 0.05)) > 20, "no bluish pixels"


def random_layer(seed, d, h, o, with_p=True, bias=False):
    r = np.random.default_rng(seed)
    ref = Ref(r.standard_normal((h, d)), r.standard_normal((h, d)),
              r.standard_normal((o, h)) if with_p else None)
    if bias:
        ref.b_w, ref.b_v = r.standard_normal(h), r.standard_normal(h)
    return ref, BilinearLayer(ref.W, ref.V, ref.P, ref.b_w, ref.b_v)


def interaction_block(ref):
    d = ref.W.shape[1]
    return reference_B(ref)[:, :d, :d]


@pytest.mark.parametrize("method", ["gram", "unfold"])
@pytest.mark.parametrize("d,h,o,with_p,bias", [
    (6, 9, 4, True, False),
    (5, 7, 3, True, True),
    (4, 6, 6, False, False),  # P = identity: o = h
    (3, 20, 12, True, False),  # o > d(d+1)/2 = 6: B has rank 6 at most
])
def test_reconstructs_symmetrized_B(method, d, h, o, with_p, bias):
    ref, layer = random_layer(7, d, h, o, with_p, bias)
    B = interaction_block(ref)
    load = loadings(layer, method)
    assert np.all(np.diff(load.sigma) <= 1e-12 * load.sigma[0])  # descending
    np.testing.assert_allclose(load.U.T @ load.U, np.eye(load.U.shape[1]), atol=1e-10)
    R = np.zeros_like(B)
    for k in range(load.sigma.size):
        if load.Qs is None:
            sigma, Q = component(layer, load.U[:, k])
        else:
            sigma, Q = load.sigma[k], load.Qs[k]
        if sigma > 1e-8 * load.sigma[0]:
            assert sigma == pytest.approx(load.sigma[k], rel=1e-7)
            assert np.linalg.norm(Q) == pytest.approx(1.0, rel=1e-12)
            np.testing.assert_allclose(Q, Q.T, atol=1e-14)
        R += sigma * np.einsum("c,ij->cij", load.U[:, k], Q)
    assert np.linalg.norm(R - B) <= 1e-6 * np.linalg.norm(B)
    # The singular values are LAPACK's on the materialized unfolding.
    ref_sigma = np.linalg.svd(B.reshape(o, d * d), compute_uv=False)
    np.testing.assert_allclose(load.sigma[: ref_sigma.size], ref_sigma,
                               atol=1e-7 * ref_sigma[0])


def test_gram_matrix_closed_form():
    ref, layer = random_layer(3, 7, 11, 5)
    Bu = interaction_block(ref).reshape(5, -1)
    np.testing.assert_allclose(gram_matrix(layer), Bu @ Bu.T, rtol=1e-10)
    np.testing.assert_allclose(unfolding(layer), Bu, atol=1e-12)


def test_sign_rule_largest_loading_positive():
    _, layer = random_layer(5, 6, 8, 4)
    for method in ("gram", "unfold"):
        U = loadings(layer, method).U
        assert np.all(U[np.argmax(np.abs(U), axis=0), np.arange(U.shape[1])] > 0)


@pytest.fixture
def image(tmp_path):
    refs = write_image(tmp_path / "m", d=10, n_in=16, n_cls=4, seed=21)
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["input_shape"] = [4, 4]
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    return tmp_path / "m", refs[0]


def test_cli_matches_reference(cli, image):
    path, ref = image
    code, out, err = cli("hosvd", path, "--json", "--float64", "--components", 3, "--top", 4,
                         "--basis", "hidden")
    assert code == 0, err
    doc = json.loads(out)
    B = interaction_block(ref)
    Bu = B.reshape(4, -1)
    Ur, S, Vt = np.linalg.svd(Bu, full_matrices=False)
    assert doc["n_components"] == 3 and doc["basis"] == "hidden" and doc["o"] == 4
    assert doc["rank"] == 4 and [c["component"] for c in doc["components"]] == [1, 2, 3]
    np.testing.assert_allclose(doc["singular_values"], S[:3], rtol=1e-9)
    np.testing.assert_allclose(doc["all_singular_values"], S, rtol=1e-9)
    shares = [c["energy_share"] for c in doc["components"]]
    np.testing.assert_allclose(shares, S[:3] ** 2 / np.sum(S**2), rtol=1e-9)
    for k, comp in enumerate(doc["components"]):
        u = np.array(comp["loadings"])
        np.testing.assert_allclose(np.abs(u), np.abs(Ur[:, k]), atol=1e-8)
        Qk = np.einsum("c,cij->ij", u, B) / S[k]
        lam = np.linalg.eigvalsh(Qk)
        lam = lam[np.argsort(-np.abs(lam), kind="stable")][:4]
        np.testing.assert_allclose(comp["eigenvalues"], lam, atol=1e-9)
        vecs = np.array(comp["eigenvectors"])
        assert vecs.shape == (4, 10)
        for lam_i, v in zip(comp["eigenvalues"], vecs, strict=True):
            np.testing.assert_allclose(Qk @ v, lam_i * v, atol=1e-9)


def test_npz_input_basis_and_plot(cli, image, tmp_path):
    path, ref = image
    code, out, err = cli("hosvd", path, "--components", 2, "--top", 3, "--format", "npz",
                         "-o", tmp_path / "h.npz", "--plot", tmp_path / "h.png")
    assert code == 0, err
    with np.load(tmp_path / "h.npz") as z:
        assert z["sigma"].shape == (2,) and z["U"].shape == (4, 2)
        assert z["eigenvalues"].shape == (2, 3) and z["eigenvectors"].shape == (2, 3, 16)
        # Input basis: E^T v for the hidden-space eigenvectors.
        code, out, _ = cli("hosvd", path, "--components", 2, "--top", 3, "--basis", "hidden",
                           "--json")
        hid = np.array([c["eigenvectors"] for c in json.loads(out)["components"]])
        np.testing.assert_allclose(z["eigenvectors"], hid @ ref.E, atol=1e-5)
    check_png(tmp_path / "h.png")
    # No overwrite without --force.
    code, _, err = cli("hosvd", path, "--format", "npz", "-o", tmp_path / "h.npz")
    assert code == 1 and "--force" in err


def test_table_and_csv(cli, image):
    path, _ = image
    code, out, err = cli("hosvd", path)
    assert code == 0 and "sigma" in out and "energy_share" in out
    code, out, _ = cli("hosvd", path, "--format", "csv", "--components", 2)
    assert code == 0 and out.splitlines()[0].startswith("component,sigma")
    assert len(out.strip().splitlines()) == 3


def test_numbering_from_1_and_csv_columns_are_json_keys(cli, image):
    """Components and eigenvalue ranks count from 1 everywhere; CSV/TSV headers are
    snake_case JSON keys of a component."""
    import csv
    import io
    import re

    path, _ = image
    code, out, err = cli("hosvd", path, "--json", "--components", 3, "--top", 2)
    assert code == 0, err
    doc = json.loads(out)
    comps = doc["components"]
    assert [c["component"] for c in comps] == [1, 2, 3]
    assert all(c["ranks"] == [1, 2] and "index" not in c for c in comps)
    assert doc["conventions"]["numbering"].startswith("components count from 1")
    for fmt, sep in (("csv", ","), ("tsv", "\t")):
        code, out, err = cli("hosvd", path, "--format", fmt, "--components", 3, "--top", 2)
        assert code == 0, err
        rows = list(csv.reader(io.StringIO(out), delimiter=sep))
        header = rows[0]
        assert all(re.fullmatch(r"[a-z][a-z0-9_]*", h) for h in header), header
        assert set(header) <= set(comps[0]), set(header) - set(comps[0])
        assert [r[0] for r in rows[1:]] == ["1", "2", "3"]
        col = {h: i for i, h in enumerate(header)}
        for r, c in zip(rows[1:], comps, strict=True):
            assert float(r[col["sigma"]]) == c["sigma"]
            assert float(r[col["energy_share"]]) == c["energy_share"]  # a fraction, exact
            assert float(r[col["effective_rank"]]) == c["effective_rank"]
            np.testing.assert_allclose([float(v) for v in r[col["eigenvalues"]].split()],
                                       c["eigenvalues"], rtol=1e-3)
            top = c["largest_loadings"][0]
            assert r[col["largest_loadings"]].startswith(f"{top['name']}:{top['loading']:+.2f}")
            u = np.array(c["loadings"])
            assert top["output"] == int(np.argmax(np.abs(u))) and top["name"] == f"c{top['output']}"
            e = c["largest_entries"][0]
            v = np.array(c["eigenvectors"][0])
            assert e["entry"] == int(np.argmax(np.abs(v))) and e["value"] == v[e["entry"]]
            assert e["pixel"] == [e["entry"] // 4, e["entry"] % 4]  # input_shape (4, 4)
    # The table: rows 1..K, shares in one style (percentages), no 6-digit fractions of them.
    code, out, err = cli("hosvd", path, "--components", 3)
    assert code == 0, err
    share = f"{100 * comps[0]['energy_share']:.4g}%"
    assert share in out and f"{comps[0]['energy_share']:.6g}" not in out
    table_rows = [ln.split("│")[0].strip() for ln in out.splitlines() if "│" in ln]
    assert [r for r in table_rows if r] == ["1", "2", "3"]


@pytest.mark.parametrize("ext,magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF"),
                                       (".svg", b"<?xml")])
def test_plot_formats_by_extension(cli, image, tmp_path, ext, magic):
    path, _ = image
    target = tmp_path / f"h{ext}"
    code, _, err = cli("hosvd", path, "--components", 2, "--plot", target)
    assert code == 0, err
    assert target.read_bytes().startswith(magic)
    code, out, err = cli("hosvd", path, "--plot", tmp_path / "h.jpg")
    assert code == 1 and out == "" and ".jpg" in err and ".png" in err


# Numerical rank: both methods, against LAPACK's rank of the materialized unfolding ----------


def reference_rank(ref) -> int:
    """``matrix_rank`` of the naive (o, d^2) unfolding of the interaction block (float64)."""
    B = interaction_block(ref)
    return int(np.linalg.matrix_rank(B.reshape(B.shape[0], -1)))


@pytest.mark.parametrize("method", ["gram", "unfold"])
@pytest.mark.parametrize("d,h,o", [(16, 6, 16), (24, 10, 30), (12, 3, 40), (9, 8, 5),
                                   (6, 20, 30)])
def test_rank_of_random_low_rank_layers(method, d, h, o):
    """h < o: B has rank h; o > d(d+1)/2: rank d(d+1)/2. Noise is never a component."""
    from bilin_cli.analyses.hosvd import rank_tolerance

    for seed in range(4):
        r = np.random.default_rng(seed)
        # float32-stored weights, as checkpoints hold them
        ref = Ref(*(r.standard_normal(s).astype(np.float32).astype(np.float64) * 10.0 ** seed
                    for s in ((h, d), (h, d), (o, h))))
        layer = BilinearLayer(ref.W, ref.V, ref.P)
        load = loadings(layer, method)
        want = reference_rank(ref)
        assert want == min(h, o, d * (d + 1) // 2)
        assert load.rank == want
        assert np.all(load.sigma[want:] == 0) and np.all(load.sigma[:want] > load.tolerance)
        assert load.tolerance == rank_tolerance(load.sigma[0], method, d, h, o)


@pytest.mark.parametrize("float64", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_cli_rank_of_transformer_layers_with_h_below_d(cli, tmp_path, float64, bias):
    """The issue's case: an LM layer with h < d. Both methods report rank h, and every
    component they show has a real singular value."""
    refs, _ = write_transformer(tmp_path / "lm", d=20, h=7, n_layer=2, bias=bias, seed=5)
    want = reference_rank(refs[1])
    assert want == 7
    S = np.linalg.svd(interaction_block(refs[1]).reshape(20, -1), compute_uv=False)
    sigmas = {}
    for method in ("gram", "unfold"):
        args = ["hosvd", tmp_path / "lm", "--layer", 1, "--components", 20, "--top", 2,
                "--method", method, "--json"] + (["--float64"] if float64 else [])
        code, out, err = cli(*args)
        assert code == 0, err
        doc = json.loads(out)
        assert doc["rank"] == want and doc["n_components"] == want, method
        assert len(doc["all_singular_values"]) == 20
        assert all(s == 0 for s in doc["all_singular_values"][want:])
        assert any(f"rank {want}" in n for n in doc["notes"])
        sigmas[method] = np.array(doc["singular_values"])
        np.testing.assert_allclose(sigmas[method], S[:want], rtol=1e-5 if not float64 else 1e-9)
        assert doc["rank_tolerance"] < S[want - 1] and doc["rank_tolerance"] > S[want]


@pytest.mark.parametrize("method", ["gram", "unfold"])
@pytest.mark.parametrize("float64", [False, True])
def test_toy_sample_has_rank_10(cli, method, float64):
    """The issue's reproduction: the toy sample's B (12 outputs) has rank 10."""
    from pathlib import Path

    toy = Path(__file__).resolve().parents[2] / "sample_checkpoints" / "toy"
    args = ["hosvd", toy, "--components", 12, "--method", method, "--json"]
    code, out, err = cli(*args, *(["--float64"] if float64 else []))
    assert code == 0, err
    doc = json.loads(out)
    assert doc["rank"] == 10 and doc["n_components"] == 10
    assert [c["component"] for c in doc["components"]] == list(range(1, 11))


def test_zero_layer_has_no_components(cli, tmp_path):
    from safetensors.numpy import save_file

    save_file({"left.weight": np.zeros((5, 3), np.float32),
               "right.weight": np.ones((5, 3), np.float32),
               "head.weight": np.ones((2, 5), np.float32)}, str(tmp_path / "z.safetensors"))
    for method in ("gram", "unfold"):
        code, out, err = cli("hosvd", tmp_path / "z.safetensors", "--method", method, "--json",
                             "--plot", tmp_path / f"z-{method}.png")
        assert code == 0, err
        doc = json.loads(out)
        assert doc["rank"] == 0 and doc["components"] == [] and "B is zero" in doc["notes"][0]


def test_memory_check(cli, image):
    path, _ = image
    code, out, err = cli("hosvd", path, "--max-memory", "1e-6")
    assert code == 1 and err.startswith("error:") and "needs about" in err and "GB" in err
    assert out == ""
    code, _, err = cli("hosvd", path, "--max-memory", "0")
    assert code == 1 and "positive" in err
    code, _, err = cli("hosvd", path, "--max-memory", "1")  # 1 GB is plenty here
    assert code == 0, err


def test_language_model_layer(cli, tmp_path):
    refs, _ = write_transformer(tmp_path / "lm", d=6, h=10, n_layer=2, bias=True)
    code, out, err = cli("hosvd", tmp_path / "lm", "--layer", 1, "--json", "--float64",
                         "--components", 20)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["basis"] == "hidden" and doc["o"] == 6 and doc["n_components"] == 6
    assert any("biases" in n for n in doc["notes"])
    S = np.linalg.svd(interaction_block(refs[1]).reshape(6, -1), compute_uv=False)
    np.testing.assert_allclose(doc["singular_values"], S, rtol=1e-8)
    code, _, err = cli("hosvd", tmp_path / "lm", "--basis", "input")
    assert code == 1 and "--basis hidden" in err


def test_bad_values(cli, image):
    path, _ = image
    code, _, err = cli("hosvd", path, "--components", 0)
    assert code == 1 and "--components" in err
    code, _, err = cli("hosvd", path, "--layer", 3)
    assert code == 1 and "out of range" in err


def test_inner_layer_of_stacked_model(cli, tmp_path):
    """Layer 0 of a two-layer classifier: its outputs are hidden units, not the classes."""
    refs = write_image(tmp_path / "deep", d=6, n_in=9, n_cls=3, n_layer=2, bias=True)
    code, out, err = cli("hosvd", tmp_path / "deep", "--layer", 0, "--json", "--float64")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["o"] == 6 and doc["output_names"] is None and doc["basis"] == "input"
    S = np.linalg.svd(interaction_block(refs[0]).reshape(6, -1), compute_uv=False)
    np.testing.assert_allclose(doc["all_singular_values"], S, rtol=1e-8)
    code, out, err = cli("hosvd", tmp_path / "deep", "--layer", 0)  # table with loadings
    assert code == 0, err

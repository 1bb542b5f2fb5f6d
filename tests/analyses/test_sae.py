"""SAE directions, interact and rank-features against a naive reference (the full B)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import f32, reference_Q, write_tokenizer, write_transformer
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file


def write_sae(path, d, f, fmt, seed):
    """An SAE written without bilin, in the paper's or SAELens' format; returns (enc, dec)."""
    r = np.random.default_rng(seed)
    enc = f32(r.standard_normal((f, d)))
    dec = r.standard_normal((d, f))
    dec = f32(dec / np.linalg.norm(dec, axis=0))
    path.mkdir(parents=True)
    if fmt == "paper":
        save_file({"w_enc.weight": enc, "w_enc.bias": f32(r.standard_normal(f)),
                   "w_dec.weight": dec, "b_dec": f32(r.standard_normal(d))},
                  str(path / "model.safetensors"))
        (path / "config.json").write_text(json.dumps({"d_model": d, "n_features": f, "k": 4}))
    else:
        save_file({"W_enc": f32(enc.T), "b_enc": f32(r.standard_normal(f)), "W_dec": f32(dec.T),
                   "b_dec": f32(r.standard_normal(d))}, str(path / "sae_weights.safetensors"))
        (path / "cfg.json").write_text(json.dumps({"d_in": d, "d_sae": f}))
    return enc.astype(np.float64), dec.astype(np.float64)


@pytest.fixture
def lm(tmp_path):
    refs, unembed = write_transformer(tmp_path / "lm", d=8, h=16, vocab=11, n_layer=3)
    return tmp_path / "lm", refs


@pytest.mark.parametrize("fmt_in,fmt_out", [("paper", "saelens"), ("saelens", "paper")])
def test_interaction_entries_equal_naive(cli, tmp_path, lm, fmt_in, fmt_out):
    path, refs = lm
    _, D = write_sae(tmp_path / "in", 8, 20, fmt_in, 1)
    enc, _ = write_sae(tmp_path / "out", 8, 12, fmt_out, 2)
    code, out, err = cli("interact", path, "--layer", "1", "--sae-in", tmp_path / "in",
                         "--sae-out", tmp_path / "out", "--feature", "5", "--top", "6",
                         "--json", "--float64")
    assert code == 0, err
    doc = json.loads(out)
    M = D.T @ reference_Q(refs[1], enc[5]) @ D  # naive: full B, then project
    diag = np.diag(M)
    expected_self = np.argsort(-np.abs(diag))[:6]
    assert [p["i"] for p in doc["pairs"]["self"]] == expected_self.tolist()
    for p in doc["pairs"]["self"]:
        assert p["value"] == pytest.approx(M[p["i"], p["i"]], rel=1e-9)
    iu = np.triu_indices(20, 1)
    upper = M[iu]
    order = np.argsort(-np.abs(upper))[:6]
    assert [(p["i"], p["j"]) for p in doc["pairs"]["cross"]] == \
        [(int(iu[0][o]), int(iu[1][o])) for o in order]
    for p in doc["pairs"]["cross"]:
        assert p["value"] == pytest.approx(M[p["i"], p["j"]], rel=1e-9)
        assert p["coefficient"] == pytest.approx(2 * M[p["i"], p["j"]], rel=1e-9)
    # Eigenvectors expressed as input features: loadings D^T v of Q's top eigenvector.
    Q = reference_Q(refs[1], enc[5])
    lam, vecs = np.linalg.eigh(Q)
    top = np.argmax(np.abs(lam))
    load = D.T @ vecs[:, top]
    first = doc["eigen"][0]
    assert first["eigenvalue"] == pytest.approx(lam[top], rel=1e-9)
    assert abs(first["features"][0]["loading"]) == pytest.approx(np.abs(load).max(), rel=1e-9)


def test_top_pairs_streams_in_blocks():
    from bilin_cli.analyses.features import top_pairs

    r = np.random.default_rng(0)
    A = r.standard_normal((6, 6))
    Q = A + A.T
    D = r.standard_normal((6, 50))
    whole = top_pairs(Q, D, 7, block=1000)
    blocked = top_pairs(Q, D, 7, block=3)
    assert whole == blocked


@pytest.mark.parametrize("fmt", ["paper", "saelens"])
def test_rank_features_equal_naive(cli, tmp_path, lm, fmt):
    path, refs = lm
    enc, _ = write_sae(tmp_path / "out", 8, 30, fmt, 3)
    code, out, err = cli("rank-features", path, "--layer", "2", "--sae-out", tmp_path / "out",
                         "--k", "2", "--json", "--float64")
    assert code == 0, err
    rows = json.loads(out)["features"]
    assert sorted(r["feature"] for r in rows) == list(range(30))
    shares = [r["top_k_share"] for r in rows]
    assert shares == sorted(shares, reverse=True)
    for r in rows:
        lam = np.linalg.eigvalsh(reference_Q(refs[2], enc[r["feature"]]))
        a = np.sort(np.abs(lam))[::-1]
        assert r["top_k_share"] == pytest.approx(a[:2].sum() / a.sum(), abs=1e-9)
        assert r["effective_rank"] == pytest.approx(a.sum() ** 2 / (a**2).sum(), rel=1e-9)
    code, out, err = cli("rank-features", path, "--layer", "2", "--sae-out", tmp_path / "out",
                         "--limit", "4", "--format", "csv")
    assert code == 0 and len(out.strip().splitlines()) == 5
    assert {int(line.split(",")[0]) for line in out.strip().splitlines()[1:]} == {0, 1, 2, 3}
    # --top reports the most low-rank of all features; --threads changes nothing but speed
    code, out, err = cli("rank-features", path, "--layer", "2", "--sae-out", tmp_path / "out",
                         "--top", "3", "--threads", "1", "--json", "--float64")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["features_ranked"] == 30 and doc["features"] == rows[:3]
    code, out, err = cli("rank-features", path, "--layer", "2", "--sae-out", tmp_path / "out",
                         "--sort", "effective_rank", "--json", "--float64")
    assert code == 0, err
    by_rank = json.loads(out)["features"]
    assert [r["effective_rank"] for r in by_rank] == sorted(r["effective_rank"] for r in rows)
    for flag in ("--top", "--threads", "--limit", "--k"):
        code, _, err = cli("rank-features", path, "--layer", "2", "--sae-out", tmp_path / "out",
                           flag, "0")
        assert code == 1 and f"{flag} must be positive" in err


def test_sae_feature_direction_in_eig(cli, tmp_path, lm):
    path, refs = lm
    enc, _ = write_sae(tmp_path / "out", 8, 12, "paper", 4)
    code, out, err = cli("eig", path, "--layer", "0", "--sae", tmp_path / "out", "--feature", "3",
                         "--all", "--json", "--float64")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["direction"]["kind"] == "sae_feature" and doc["direction"]["feature"] == 3
    lam = np.linalg.eigvalsh(reference_Q(refs[0], enc[3]))
    np.testing.assert_allclose(sorted(doc["eigenvalues"]), np.sort(lam), atol=1e-10)
    code, _, err = cli("eig", path, "--sae", tmp_path / "out", "--feature", "12")
    assert code == 1 and "feature 12 is out of range" in err
    code, _, err = cli("eig", path, "--sae", tmp_path / "out")
    assert code == 2


def test_token_str(cli, tmp_path, lm):
    path, refs = lm
    a = json.loads(cli("eig", path, "--token-str", "c", "--json")[1])
    b = json.loads(cli("eig", path, "--token", "2", "--json")[1])
    assert a["eigenvalues"] == b["eigenvalues"] and a["direction"]["index"] == 2
    code, _, err = cli("eig", path, "--token-str", "zz")
    assert code == 1 and "not a token" in err
    # A tokenizer.json (byte-level BPE, as Hugging Face models ship) instead of a vocab list.
    tok = write_tokenizer(tmp_path / "bpe")
    write_transformer(tmp_path / "bpe", vocab=tok.get_vocab_size(), n_layer=1)
    cfg = json.loads((tmp_path / "bpe" / "config.json").read_text())
    del cfg["vocab"]
    (tmp_path / "bpe" / "config.json").write_text(json.dumps(cfg))
    for text in (" the", "é", "\n", "Ġthe"):  # "Ġthe": the stored spelling of " the"
        code, out, err = cli("eig", tmp_path / "bpe", "--token-str", text, "--json")
        assert code == 0, err
        direction = json.loads(out)["direction"]
        want = tok.encode(text.replace("Ġ", " "), add_special_tokens=False).ids
        assert len(want) == 1 and direction["index"] == want[0]
        assert direction["string"] == text.replace("Ġ", " ")
    code, _, err = cli("eig", tmp_path / "bpe", "--token-str", " café")
    assert code == 1 and "is 2 tokens" in err and "not one" in err
    (tmp_path / "bpe" / "tokenizer.json").write_text("{not json")
    code, _, err = cli("eig", tmp_path / "bpe", "--token-str", "x")
    assert code == 1 and "not a tokenizer.json the tokenizers package can read" in err


@pytest.mark.parametrize("device", [None, "cpu"])
def test_rank_features_factored_path_equals_unfolding(device):
    """Both ways of building Q (via B's unfolding, or batched from W, V, P) agree, on
    NumPy and on a torch device."""
    from bilin_cli.analyses.features import rank_features
    from bilin_cli.model.bilinear import BilinearLayer

    r = np.random.default_rng(9)
    layer = BilinearLayer(r.standard_normal((14, 6)), r.standard_normal((14, 6)),
                          r.standard_normal((5, 14)))
    enc = r.standard_normal((23, 5))
    a = rank_features(layer, enc, k=3, chunk=4)
    b = rank_features(layer, enc, k=3, chunk=4, unfold_limit=0, device=device)
    # a memory budget below one feature's product still streams, one feature at a time
    assert rank_features(layer, enc, k=3, unfold_limit=0, chunk_budget=1, device=device) == b
    assert [x["feature"] for x in a] == [x["feature"] for x in b]
    for x, y in zip(a, b, strict=True):
        assert x["top_k_share"] == pytest.approx(y["top_k_share"], abs=1e-12)
        assert x["effective_rank"] == pytest.approx(y["effective_rank"], rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 9), st.integers(1, 4), st.integers(0, 2**32 - 1), st.booleans())
def test_spectra_stats_match_per_spectrum_reference(d, k, seed, ties):
    """The vectorized statistics equal a per-spectrum computation, ties included."""
    from bilin_cli.analyses.features import spectra_stats
    from bilin_cli.model.spectra import order_by_magnitude

    r = np.random.default_rng(seed)
    lam = r.standard_normal((5, d))
    if ties:  # +x and -x: the positive one comes first
        lam[:, -1] = -lam[:, 0]
    lam[0] = 0.0  # an all-zero spectrum reports zeros, not NaN
    got = spectra_stats(lam, k)
    for n, spectrum in enumerate(lam):
        s = spectrum[order_by_magnitude(spectrum)]
        a = np.abs(s)
        assert got["top_eigenvalues"][n].tolist() == s[:k].tolist()
        if n == 0:
            assert got["top_k_share"][n] == 0 and got["effective_rank"][n] == 0
            continue
        assert got["top_k_share"][n] == pytest.approx(a[:k].sum() / a.sum(), rel=1e-12)
        assert got["effective_rank"][n] == pytest.approx(a.sum() ** 2 / (s**2).sum(), rel=1e-12)


def test_rank_features_same_on_any_number_of_workers():
    from bilin_cli.analyses.features import rank_features
    from bilin_cli.model.bilinear import BilinearLayer

    r = np.random.default_rng(4)
    layer = BilinearLayer(r.standard_normal((20, 7)), r.standard_normal((20, 7)),
                          r.standard_normal((6, 20)))
    enc = r.standard_normal((37, 6))
    one = rank_features(layer, enc, k=2, chunk=5, workers=1)
    many = rank_features(layer, enc, k=2, chunk=5, workers=3)
    assert one == many
    assert sorted(x["feature"] for x in one) == list(range(37))


def test_rank_features_on_a_torch_device_equals_numpy(cli, tmp_path, lm):
    """--device runs the same computation batched in torch (here on its CPU device)."""
    path, refs = lm
    write_sae(tmp_path / "out", 8, 30, "saelens", 3)
    args = ("rank-features", path, "--layer", "2", "--sae-out", tmp_path / "out", "--json",
            "--float64")
    code, out, err = cli(*args)
    assert code == 0, err
    code, out_t, err = cli(*args, "--device", "cpu")
    assert code == 0, err
    a, b = json.loads(out)["features"], json.loads(out_t)["features"]
    assert [r["feature"] for r in a] == [r["feature"] for r in b]
    for x, y in zip(a, b, strict=True):
        assert y["top_k_share"] == pytest.approx(x["top_k_share"], abs=1e-12)
        assert y["effective_rank"] == pytest.approx(x["effective_rank"], rel=1e-12)
    code, _, err = cli(*args, "--device", "tpu")
    assert code == 1 and err.startswith("error: --device")


def test_device_errors(monkeypatch):
    import builtins

    import torch

    from bilin_cli.core.accel import torch_device
    from bilin_cli.core.errors import BilinError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BilinError, match="no CUDA device"):
        torch_device("cuda")
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(BilinError, match=r"needs torch: pip install 'bilin\[torch\]'"):
        torch_device("cuda")


def test_spectrum_of_sae_features_and_token_strings(cli, tmp_path, lm):
    """`spectrum --sae/--feature` and `--token-str` summarize the same Q as the reference."""
    path, refs = lm
    enc, _ = write_sae(tmp_path / "out", 8, 12, "saelens", 6)
    code, out, err = cli("spectrum", path, "--layer", "1", "--sae", tmp_path / "out",
                         "--feature", "4", "--feature", "9", "--token-str", "c", "--json",
                         "--float64")
    assert code == 0, err
    rows = json.loads(out)["directions"]
    assert [r["direction"]["kind"] for r in rows] == ["token", "sae_feature", "sae_feature"]
    assert rows[0]["direction"]["index"] == 2
    for row, u in zip(rows[1:], (enc[4], enc[9]), strict=True):
        lam = np.linalg.eigvalsh(reference_Q(refs[1], u))
        a = np.abs(lam)
        assert row["effective_rank"] == pytest.approx(a.sum() ** 2 / (a**2).sum(), rel=1e-9)
        assert row["top_positive"][0] == pytest.approx(lam.max(), rel=1e-9)
        assert row["top_negative"][0] == pytest.approx(lam.min(), rel=1e-9)
    code, _, err = cli("spectrum", path, "--layer", "1", "--feature", "3")
    assert code == 2 and "--sae and --feature go together" in err

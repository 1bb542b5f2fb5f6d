"""Low-rank search at scale (bilin_cli/analyses/lowrank_search.py) against dense references."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_sae import write_sae

from bilin_cli.analyses.lowrank_search import (
    frobenius_sq,
    kw_factor,
    lanczos,
    lanczos_bounds,
    rank_sq_share,
)
from bilin_cli.model.bilinear import BilinearLayer
from bilin_cli.model.interaction import symmetric_form


def _layer(seed, d=12, h=20, o=9, with_p=True, planted=()):
    r = np.random.default_rng(seed)
    W, V = r.standard_normal((h, d)), r.standard_normal((h, d))
    for j in planted:
        W[j] *= 8
        V[j] *= 8
    return BilinearLayer(W, V, r.standard_normal((o, h)) if with_p else None)


def _dense(layer, E):
    P = np.eye(layer.h) if layer.P is None else layer.P
    B = np.einsum("ca,ai,aj->cij", P, layer.W, layer.V)
    B = 0.5 * (B + B.transpose(0, 2, 1))
    Q = np.einsum("fc,cij->fij", E, B)
    lam = np.linalg.eigvalsh(Q)
    return np.take_along_axis(lam, np.lexsort((-lam, -np.abs(lam)), axis=-1), -1)


@pytest.mark.parametrize("with_p", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gram_identity_equals_frobenius_of_naive_q(seed, with_p):
    layer = _layer(seed, with_p=with_p)
    E = np.random.default_rng(seed + 10).standard_normal((15, layer.o))
    lam = _dense(layer, E)
    np.testing.assert_allclose(frobenius_sq(layer, E), (lam**2).sum(1), rtol=1e-12)


def _q(layer, c):
    return symmetric_form(np.asarray(layer.W, float), np.asarray(layer.V, float), c)


@pytest.mark.parametrize("device", [None, "cpu"])
def test_lanczos_over_the_whole_space_is_exact(device):
    if device:
        pytest.importorskip("torch")
    layer = _layer(3)
    E = np.random.default_rng(4).standard_normal((7, layer.o))
    lam = _dense(layer, E)
    H = lanczos(layer, E @ layer.P, 40, dtype=np.float64, device=device)  # s = d = 12
    assert H.shape == (7, 13, 12)
    np.testing.assert_allclose(lanczos(layer, E, 40, dtype=np.float64, device=device,
                                       P=layer.P), H)  # c = e P formed batch by batch
    theta, top_sq, mu = lanczos_bounds(H, 2)
    np.testing.assert_allclose(theta, lam, atol=1e-9)
    np.testing.assert_allclose(top_sq, (lam[:, :2] ** 2).sum(1), rtol=1e-9)
    np.testing.assert_allclose(mu, lam[:, 0] ** 2, rtol=1e-9)
    assert kw_factor(12, 12) == 1.0


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), steps=st.integers(1, 9), k=st.integers(1, 3))
def test_lanczos_bounds_never_exceed_the_spectrum(seed, steps, k):
    """Interlacing: Ritz values give lower bounds on sum_{top k} lambda^2 and lambda_max^2,
    and S - sum_{j>k} theta_j^2 is an upper bound on sum_{top k} lambda^2."""
    layer = _layer(seed, d=16, h=24, o=6, with_p=seed % 2 == 0)
    E = np.random.default_rng(seed + 1).standard_normal((5, layer.o))
    C = E @ layer.P if layer.P is not None else E
    lam = _dense(layer, E)
    theta, top_sq, mu = lanczos_bounds(lanczos(layer, C, steps, dtype=np.float64, seed=seed), k)
    T, S = (lam[:, :k] ** 2).sum(1), (lam**2).sum(1)
    assert (top_sq <= T * (1 + 1e-9)).all()
    assert (mu <= lam[:, 0] ** 2 * (1 + 1e-9)).all()
    # the deterministic upper bound: energy the Ritz values prove lies outside the top k
    assert (S - (theta[:, k:] ** 2).sum(1) >= T * (1 - 1e-9)).all()


def test_kw_factor_shape():
    assert kw_factor(2, 1000) == np.inf  # degree 0 in Q^2: no bound
    f = [kw_factor(s, 1000) for s in (3, 5, 11, 21, 33)]
    assert all(a > b > 1 for a, b in zip(f[:-1], f[1:], strict=True))
    assert kw_factor(11, 1000, 1e-3) < kw_factor(11, 1000, 1e-10)
    assert kw_factor(11, 4000) > kw_factor(11, 1000)  # a bigger space hides more


def test_kw_factor_holds_on_a_hard_spectrum():
    """Empirical failure rate of 'lambda_max^2 <= F mu' stays below delta on a spectrum
    built to be hard (one top eigenvalue, the rest just below it), from many random starts;
    a factor 4x smaller fails often, so the test can tell."""
    d, s, delta, runs = 300, 7, 0.05, 400
    r = np.random.default_rng(0)
    lam = np.concatenate([[1.0], np.linspace(-0.9, 0.9, d - 1)])
    Qm, _ = np.linalg.qr(r.standard_normal((d, d)))
    Q = (Qm * lam) @ Qm.T
    # a layer whose Q(e) is exactly Q: W = I-ish factors, c = eigen weights
    layer = BilinearLayer(Qm.T.copy(), (Qm * lam).T.copy(), None)  # W^T diag(1) V = Q
    np.testing.assert_allclose(_q(layer, np.ones(d)), Q, atol=1e-12)
    F = kw_factor(s, d, delta)
    mus = np.concatenate([lanczos_bounds(lanczos(layer, np.ones((1, d)), s, dtype=np.float64,
                                                 seed=i), 1)[2] for i in range(runs)])
    assert (F * mus < 1.0).mean() <= delta
    assert (F / 4 * mus < 1.0).mean() > 2 * delta


def _planted(seed=5, d=40, h=80, o=40, n=120, planted=(7, 21, 44)):
    """Random factors; the output directions of the planted features read one or two hidden
    units only (P changed on their span: W, V and the other features stay random)."""
    r = np.random.default_rng(seed)
    W, V = r.standard_normal((h, d)), r.standard_normal((h, d))
    P = r.standard_normal((o, h))
    U, _ = np.linalg.qr(r.standard_normal((o, len(planted))))
    Cs = np.zeros((len(planted), h))
    for i in range(len(planted)):
        Cs[i, r.choice(h, 1 + i % 2, replace=False)] = 3.0
    P = P - U @ (U.T @ P) + U @ Cs
    layer = BilinearLayer(W, V, P)
    E = r.standard_normal((n, o))
    E[list(planted)] = U.T
    lam = _dense(layer, E)
    return layer, E, lam, (lam[:, :2] ** 2).sum(1) / (lam**2).sum(1)


@pytest.mark.parametrize("top", [1, 3, 10])
def test_ranking_reports_the_dense_top_n_exactly(top):
    layer, E, lam, share = _planted()
    res = rank_sq_share(layer, E, 2, top=top, steps=7, deep_steps=15)
    assert [r_["feature"] for r_ in res.rows] == list(np.argsort(-share, kind="stable")[:top])
    for r_ in res.rows:
        assert r_["method"] == "dense"
        assert r_["sq_top_k_share"] == pytest.approx(share[r_["feature"]], rel=1e-9)
        np.testing.assert_allclose(r_["top_eigenvalues"], lam[r_["feature"], :2], rtol=1e-9)
    c = res.certificate
    assert c["features"] == 120 and c["dense"] + c["excluded"] == 120
    assert c["cut"] == pytest.approx(np.sort(share)[::-1][top - 1], rel=1e-9)
    assert c["excluded"] == 0 or c["max_excluded_upper_bound"] < c["cut"]
    assert c["failure_probability_bound"] == pytest.approx(c["excluded"] * 1e-10)


def test_most_features_are_excluded_without_dense():
    layer, E, lam, share = _planted()
    res = rank_sq_share(layer, E, 2, top=3)
    assert [r_["feature"] for r_ in res.rows] == list(np.argsort(-share, kind="stable")[:3])
    assert {r_["feature"] for r_ in res.rows} == {7, 21, 44}
    assert res.certificate["excluded"] >= 100  # the bound, not dense, rules most of them out


def test_no_top_computes_every_feature_densely():
    layer, E, lam, share = _planted()
    every = rank_sq_share(layer, E, 2)
    np.testing.assert_allclose([r_["sq_top_k_share"] for r_ in every.rows],
                               np.sort(share)[::-1], rtol=1e-9)
    assert every.certificate == {"features": 120, "dense": 120, "excluded": 0}


def test_torch_cpu_device_agrees_with_numpy():
    pytest.importorskip("torch")
    layer = _layer(7, d=24, h=48, o=16, planted=(2,))
    E = np.random.default_rng(8).standard_normal((20, layer.o))
    a = lanczos(layer, E @ layer.P, 9, dtype=np.float64)
    b = lanczos(layer, E @ layer.P, 9, dtype=np.float64, device="cpu")
    np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)
    ra = rank_sq_share(layer, E, 2, top=4)
    rb = rank_sq_share(layer, E, 2, top=4, device="cpu")
    assert ra.rows == rb.rows


def test_cli_sq_measure_end_to_end(cli, tmp_path):
    from conftest import write_transformer

    write_transformer(tmp_path / "lm", d=8, h=16, vocab=11, n_layer=3)
    enc, _ = write_sae(tmp_path / "sae", 8, 30, "paper", 0)
    code, out, err = cli("rank-features", tmp_path / "lm", "--layer", 1, "--sae-out",
                         tmp_path / "sae", "--measure", "sq_top_k_share", "--top", 5, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["measure"] == "sq_top_k_share" and len(doc["features"]) == 5
    assert all(r["method"] == "dense" for r in doc["features"])
    code, out, err = cli("rank-features", tmp_path / "lm", "--layer", 1, "--sae-out",
                         tmp_path / "sae", "--measure", "nope")
    assert code == 2


def test_the_measure_never_switches_and_the_route_is_said(cli, tmp_path, monkeypatch):
    """--measure says what is ranked at every size; bilin picks the route and says which."""
    from conftest import write_transformer

    from bilin_cli.analyses import lowrank_search
    write_transformer(tmp_path / "lm", d=8, h=16, vocab=11, n_layer=3)
    write_sae(tmp_path / "sae", 8, 30, "paper", 0)
    args = ("rank-features", tmp_path / "lm", "--layer", 1, "--sae-out", tmp_path / "sae",
            "--top", 4, "--json")
    code, out, err = cli(*args)
    assert code == 0, err
    small = json.loads(out)
    assert small["measure"] == "top_k_share" and small["route"] == "dense"
    monkeypatch.setattr(lowrank_search, "AUTO_WORK", 1.0)  # every layer counts as large
    code, out, err = cli(*args)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["measure"] == "top_k_share" and doc["route"] == "certified"
    assert doc["certificate"]["features"] == 30
    assert [r["feature"] for r in doc["features"]] == [r["feature"] for r in small["features"]]
    for a, b in zip(doc["features"], small["features"], strict=True):
        assert a["top_k_share"] == pytest.approx(b["top_k_share"], rel=1e-5)
    code, out, err = cli(*args[:-3], "--json")  # no --top: nothing to certify
    assert json.loads(out)["route"] == "dense"
    code, out, err = cli(*args, "--shard", "1/2")  # shards stay on the dense route
    assert code == 0, err
    code, out, err = cli(*args[:-1], "--measure", "auto", "--json")
    assert code == 0 and "deprecated" in err and json.loads(out)["measure"] == "top_k_share"


def test_api_sq_route_equals_the_cli(cli, tmp_path):
    from conftest import write_transformer

    import bilin_cli as bilin

    write_transformer(tmp_path / "lm", d=8, h=16, vocab=11, n_layer=3)
    write_sae(tmp_path / "sae", 8, 30, "paper", 0)
    r = bilin.rank_features(tmp_path / "lm", tmp_path / "sae", layer=1, top=5,
                            measure="sq_top_k_share")
    code, out, err = cli("rank-features", tmp_path / "lm", "--layer", 1, "--sae-out",
                         tmp_path / "sae", "--measure", "sq_top_k_share", "--top", 5, "--json")
    doc = json.loads(out)
    assert r.features.tolist() == [row["feature"] for row in doc["features"]]
    np.testing.assert_allclose(r.sq_top_k_share, [row["sq_top_k_share"] for row in doc["features"]])
    assert r.certificate == doc["certificate"] and r.top_k_share is None


@settings(max_examples=30, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 4), top=st.integers(1, 12),
       d=st.integers(2, 30), with_p=st.booleans())
def test_top_n_equals_the_dense_ranking(seed, k, top, d, with_p):
    """Whatever the layer, the reported rows are the dense top N, in order, and exact."""
    layer = _layer(seed, d=d, h=2 * d + 3, o=7, with_p=with_p)
    r = np.random.default_rng(seed)
    E = r.standard_normal((25, layer.o if with_p else layer.h))
    E[r.random(25) < 0.1] = 0.0  # a zero direction has Q = 0 and share 0
    lam = _dense(layer, E)
    S = (lam**2).sum(1)
    share = np.where(S > 0, (lam[:, :k] ** 2).sum(1) / np.where(S > 0, S, 1), 0.0)
    res = rank_sq_share(layer, E, k, top=top, steps=5, deep_steps=9)
    got = [row["sq_top_k_share"] for row in res.rows]
    np.testing.assert_allclose(got, np.sort(share)[::-1][:top], rtol=1e-9, atol=1e-12)
    for row in res.rows:
        assert row["sq_top_k_share"] == pytest.approx(share[row["feature"]], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("top", [5, 20])
def test_a_cut_inside_the_bulk_is_screened_in_float32_and_stays_exact(top, monkeypatch):
    """With --top reaching past the low-rank features the bounds cannot separate the bulk;
    the float32 dense screen decides it, and the rows are still the dense float64 top N."""
    from bilin_cli.analyses import lowrank_search
    monkeypatch.setattr(lowrank_search, "SCREEN_MIN", 1)
    layer, E, lam, share = _planted()
    res = rank_sq_share(layer, E, 2, top=top, steps=5, deep_steps=7)
    assert [r_["feature"] for r_ in res.rows] == list(np.argsort(-share, kind="stable")[:top])
    np.testing.assert_allclose([r_["sq_top_k_share"] for r_ in res.rows],
                               np.sort(share)[::-1][:top], rtol=1e-9)
    c = res.certificate
    assert c["screened_dense_float32"] > 0
    assert c["dense"] < 120  # the screen, not float64, ruled most of them out

"""The paper's measure at scale: the certified top N by the share of sum |lambda| (and by the
effective rank) equals the dense exact ranking, and its bounds hold on every feature."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_rank_scale import _dense, _layer

from bilin_cli.analyses.lowrank_search import (
    abs_bounds,
    abs_parts,
    frobenius_sq,
    kw_factor,
    lanczos,
    lanczos_bounds,
    rank_abs_share,
)
from bilin_cli.model.bilinear import BilinearLayer


def _measures(lam: np.ndarray, k: int):
    """Independent float64 measures of sorted spectra ``lam : (n, d)``."""
    a = np.abs(lam)
    total = a.sum(1)
    S = (lam**2).sum(1)
    share = np.where(total > 0, a[:, :k].sum(1) / np.where(total > 0, total, 1), 0.0)
    eff = np.where(S > 0, total**2 / np.where(S > 0, S, 1), 0.0)
    return share, eff


def _case(kind: str, seed: int):
    r = np.random.default_rng(seed)
    if kind == "planted":
        # no P: c = e, so a row reading 1 or 2 hidden units has a Q of rank 2 or 4
        layer = _layer(seed, d=16, h=30, with_p=False)
        E = r.standard_normal((40, 30))
        E[:6] = 0.01 * E[:6]
        for i in range(6):
            E[i, r.choice(30, 1 + i % 2, replace=False)] = 3.0
    elif kind == "negative-definite":
        # W = V and c < 0 on every hidden unit: every Q is negative semi-definite
        W = r.standard_normal((30, 14))
        layer = BilinearLayer(W, W.copy(), None)
        E = -np.abs(r.standard_normal((30, 30)))
    elif kind == "ties":
        layer = _layer(seed, d=10, h=20, o=8)
        E = r.standard_normal((30, 8))
        E[10:20] = E[:10]  # every feature twice: exact ties
    elif kind == "zeros":
        layer = _layer(seed, d=10, h=20, o=8)
        E = r.standard_normal((30, 8))
        E[::3] = 0.0  # a zero direction: Q = 0, share 0
    else:
        layer = _layer(seed, d=18, h=40, o=12)
        E = r.standard_normal((40, 12))
    return layer, E


@pytest.mark.parametrize("kind", ["random", "planted", "negative-definite", "ties", "zeros"])
@pytest.mark.parametrize("sort_by", ["top_k_share", "effective_rank"])
def test_certified_top_n_equals_the_dense_ranking(kind, sort_by):
    layer, E = _case(kind, 3)
    share, eff = _measures(_dense(layer, E), 2)
    top = 5
    res = rank_abs_share(layer, E, 2, top=top, sort_by=sort_by, steps=5, deep_steps=9)
    score = share if sort_by == "top_k_share" else -eff
    want = np.sort(score)[::-1][:top]
    got = [r["top_k_share"] if sort_by == "top_k_share" else -r["effective_rank"]
           for r in res.rows]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    for r in res.rows:
        assert r["top_k_share"] == pytest.approx(share[r["feature"]], rel=1e-9, abs=1e-12)
        assert r["effective_rank"] == pytest.approx(eff[r["feature"]], rel=1e-9, abs=1e-12)
        assert r["method"] == "dense"
    c = res.certificate
    assert c["dense"] + c["excluded"] == c["features"] == len(E)


def test_planted_features_are_found_with_few_dense_checks():
    layer, E = _case("planted", 4)
    share, _ = _measures(_dense(layer, E), 2)
    res = rank_abs_share(layer, E, 2, top=3)
    assert [r["feature"] for r in res.rows] == list(np.argsort(-share, kind="stable")[:3])
    assert res.certificate["excluded"] > len(E) // 2


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 3), d=st.integers(3, 24),
       steps=st.integers(3, 9), with_p=st.booleans())
def test_the_bounds_hold_on_every_feature(seed, k, d, steps, with_p):
    """N- <= N <= N+, sum|lambda|- <= sum|lambda| (through the share and the effective rank:
    lower <= score <= upper) for random layers and Lanczos runs of any length."""
    layer = _layer(seed, d=d, h=2 * d + 1, o=6, with_p=with_p)
    E = np.random.default_rng(seed).standard_normal((20, layer.o if with_p else layer.h))
    lam = _dense(layer, E)
    share, eff = _measures(lam, k)
    H = lanczos(layer, E, steps, dtype=np.float64, seed=seed,
                P=None if layer.P is None else layer.P)
    theta, top_sq, mu = lanczos_bounds(H, k)
    S = frobenius_sq(layer, E)
    f = kw_factor(min(steps, d), d)
    a = np.abs(lam)
    parts = abs_parts(theta, mu, f, S, k, d)
    live = S > 0
    tol = 1e-9 * a.sum(1) + 1e-12
    N = a[:, :k].sum(1)
    assert np.all(parts["N_lo"][live] <= N[live] + tol[live])
    assert np.all(N[live] <= parts["N_up"][live] + tol[live])
    assert np.all(parts["A_lo"][live] <= a.sum(1)[live] + tol[live])
    assert np.all(a.sum(1)[live] <= (parts["N_up"] + parts["R_up"])[live] + tol[live])
    assert np.all(parts["R_lo"][live] <= a[:, k:].sum(1)[live] + tol[live])
    assert np.all(parts["L"][live] >= a[:, 0][live] - tol[live])
    for sort_by, score in (("top_k_share", share), ("effective_rank", -eff)):
        lo, up = abs_bounds(theta, mu, f, S, k, d, sort_by)
        live = S > 0
        assert np.all(lo[live] <= score[live] * (1 + 1e-9) + 1e-12)
        assert np.all(up[live] >= score[live] * (1 - 1e-9) - 1e-12)


def test_the_api_chooses_the_route_and_keeps_the_measure(monkeypatch, tmp_path):
    from conftest import write_transformer
    from test_sae import write_sae

    import bilin_cli as bilin
    from bilin_cli.analyses import lowrank_search
    write_transformer(tmp_path / "lm", d=8, h=16, vocab=11, n_layer=3)
    write_sae(tmp_path / "sae", 8, 40, "paper", 0)
    dense = bilin.rank_features(tmp_path / "lm", tmp_path / "sae", layer=1, top=6)
    assert dense.route == "dense" and dense.measure == "top_k_share"
    monkeypatch.setattr(lowrank_search, "AUTO_WORK", 1.0)
    cert = bilin.rank_features(tmp_path / "lm", tmp_path / "sae", layer=1, top=6)
    assert cert.route == "certified" and cert.measure == "top_k_share" and cert.certificate
    assert cert.features.tolist() == dense.features.tolist()
    np.testing.assert_allclose(cert.top_k_share, dense.top_k_share, rtol=1e-5)
    by_rank = bilin.rank_features(tmp_path / "lm", tmp_path / "sae", layer=1, top=6,
                                  sort="effective_rank", route="certified")
    ref = bilin.rank_features(tmp_path / "lm", tmp_path / "sae", layer=1, top=6,
                              sort="effective_rank", route="dense")
    assert by_rank.features.tolist() == ref.features.tolist()

"""Low-rank search at scale (bilin_cli/lowrank_search.py) against dense references."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_sae import write_sae

from bilin_cli.lowrank_search import frobenius_sq, krylov_top, rank_sq_share
from bilin_cli.model import BilinearLayer


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


def test_batched_krylov_equals_eigvalsh():
    layer = _layer(3)
    E = np.random.default_rng(4).standard_normal((7, layer.o))
    lam = _dense(layer, E)
    theta, resid = krylov_top(layer, E @ layer.P, 2, steps=3, block=4, batch=3,
                              dtype=np.float64)  # a 12-dim Krylov space spans R^12
    np.testing.assert_allclose(theta[:, :2], lam[:, :2], atol=1e-9)
    assert resid[:, :2].max() < 1e-8


def test_ranking_reports_the_dense_top_n_exactly():
    layer = _layer(5, d=24, h=48, o=16, planted=(3, 17, 30))
    r = np.random.default_rng(6)
    E = r.standard_normal((60, layer.o))
    E[[7, 21, 44]] = layer.P[:, [3, 17, 30]].T  # features reading the planted units
    lam = _dense(layer, E)
    share = (lam[:, :2] ** 2).sum(1) / (lam**2).sum(1)
    rows = rank_sq_share(layer, E, 2, top=3)
    assert [r_["feature"] for r_ in rows[:3]] == list(np.argsort(-share)[:3])
    for r_ in rows[:3]:
        assert r_["method"] == "dense"
        assert r_["sq_top_k_share"] == pytest.approx(share[r_["feature"]], rel=1e-9)
        np.testing.assert_allclose(r_["top_eigenvalues"], lam[r_["feature"], :2], rtol=1e-9)
    for r_ in rows[3:]:  # Krylov estimates are lower bounds
        assert r_["sq_top_k_share"] <= share[r_["feature"]] * (1 + 1e-5)
    every = rank_sq_share(layer, E, 2)  # no top: every feature exact
    np.testing.assert_allclose([r_["sq_top_k_share"] for r_ in every], np.sort(share)[::-1],
                               rtol=1e-9)


def test_torch_cpu_device_agrees_with_numpy():
    pytest.importorskip("torch")
    layer = _layer(7, d=24, h=48, o=16, planted=(2,))
    E = np.random.default_rng(8).standard_normal((20, layer.o))
    a, _ = krylov_top(layer, E @ layer.P, 2, dtype=np.float64)
    b, _ = krylov_top(layer, E @ layer.P, 2, dtype=np.float64, device="cpu")
    np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


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

"""The interaction math against the naive reference (materialized B) and the layer itself."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import Ref, reference_eigvals, reference_layer_output, reference_Q
from hypothesis import given, settings
from hypothesis import strategies as st

from bilin_cli.model.bilinear import BilinearLayer
from bilin_cli.model.interaction import interaction, interaction_operator
from bilin_cli.model.spectra import (
    effective_rank,
    eigh_sorted,
    fix_signs,
    rank_for_share,
    share_of_top,
    top_eigenpairs,
)


def random_layer(seed, d, h, o, with_p, bias, p_bias=False):
    r = np.random.default_rng(seed)
    ref = Ref(r.standard_normal((h, d)), r.standard_normal((h, d)),
              r.standard_normal((o, h)) if with_p else None)
    if bias:
        ref.b_w, ref.b_v = r.standard_normal(h), r.standard_normal(h)
    if p_bias:
        ref.b_p = r.standard_normal(o if with_p else h)
    layer = BilinearLayer(ref.W, ref.V, ref.P, ref.b_w, ref.b_v, ref.b_p)
    return ref, layer


layers = st.tuples(
    st.integers(0, 10_000),  # seed
    st.integers(1, 9),  # d
    st.integers(1, 12),  # h
    st.integers(1, 6),  # o
    st.booleans(),  # with P
    st.booleans(),  # bias
    st.booleans(),  # P bias
)


@settings(max_examples=60, deadline=None)
@given(layers)
def test_eigenvalues_equal_naive_reference(params):
    seed, d, h, o, with_p, bias, p_bias = params
    ref, layer = random_layer(seed, d, h, o, with_p, bias, p_bias)
    u = np.random.default_rng(seed + 1).standard_normal(layer.o)
    inter = interaction(layer, u)
    lam, vecs = eigh_sorted(inter.Q)
    expected = reference_eigvals(ref, u)
    scale = max(np.abs(expected).max(), 1e-300)
    np.testing.assert_allclose(lam, expected, rtol=0, atol=1e-9 * scale)
    # Q itself equals the reference's interaction block, and is exactly symmetric.
    np.testing.assert_allclose(inter.Q, reference_Q(ref, u)[:d, :d], atol=1e-10 * scale)
    assert np.array_equal(inter.Q, inter.Q.T)


@settings(max_examples=60, deadline=None)
@given(layers)
def test_sum_of_components_equals_layer_output(params):
    seed, d, h, o, with_p, bias, p_bias = params
    ref, layer = random_layer(seed, d, h, o, with_p, bias, p_bias)
    r = np.random.default_rng(seed + 2)
    u = r.standard_normal(layer.o)
    x = r.standard_normal((7, d))
    inter = interaction(layer, u)
    lam, vecs = eigh_sorted(inter.Q)
    quadratic = ((x @ vecs.T) ** 2 * lam).sum(axis=1)  # sum_i lambda_i (v_i . x)^2
    linear = 0.0 if inter.linear is None else x @ inter.linear
    total = quadratic + linear + inter.constant
    expected = reference_layer_output(ref, x) @ u
    np.testing.assert_allclose(total, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())
    np.testing.assert_allclose(inter.evaluate(x), expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(layer.forward(x) @ u, expected, rtol=1e-12, atol=1e-12)
    assert (inter.linear is None) == (not bias)


def test_bias_parts_are_the_augmented_blocks():
    ref, layer = random_layer(5, 6, 9, 4, True, True, True)
    u = np.arange(4.0) - 1.5
    inter = interaction(layer, u)
    Qa = reference_Q(ref, u)  # (d+1, d+1) augmented, from the naive B
    np.testing.assert_allclose(inter.linear, 2 * Qa[:6, 6], atol=1e-12)
    np.testing.assert_allclose(inter.constant, Qa[6, 6] + u @ ref.b_p, atol=1e-12)


def test_operator_matches_dense_and_arpack_matches_eigh():
    ref, layer = random_layer(7, 60, 80, 5, True, False)
    u = np.random.default_rng(0).standard_normal(5)
    Q = interaction(layer, u).Q
    op = interaction_operator(layer, u)
    v = np.random.default_rng(1).standard_normal(60)
    np.testing.assert_allclose(op.matvec(v), Q @ v, atol=1e-10)
    lam, vecs = eigh_sorted(Q)
    lam_k, vecs_k = top_eigenpairs(op, 6)
    np.testing.assert_allclose(lam_k, lam[:6], rtol=1e-8)
    np.testing.assert_allclose(np.abs((vecs_k * vecs[:6]).sum(1)), 1, atol=1e-6)
    np.testing.assert_allclose(vecs_k, vecs[:6], atol=1e-6)  # same sign rule


def test_order_and_sign_rule():
    # A diagonal Q with a known spectrum: -5, 5, 3, -1, 0.
    Q = np.diag([3.0, -5.0, 0.0, 5.0, -1.0])
    lam, vecs = eigh_sorted(Q)
    assert lam.tolist() == [5.0, -5.0, 3.0, -1.0, 0.0]  # |lambda| desc, positive first on ties
    assert (vecs.max(axis=1) == 1).all()  # largest-magnitude entry made positive
    flipped = fix_signs(-vecs)
    np.testing.assert_array_equal(flipped, vecs)
    np.testing.assert_allclose(vecs @ vecs.T, np.eye(5))


def test_spectrum_statistics():
    lam = np.array([4.0, -2.0, 1.0, 1.0])
    assert effective_rank(lam) == pytest.approx(8.0**2 / 22.0)
    assert effective_rank(np.ones(7)) == pytest.approx(7.0)
    assert effective_rank(np.zeros(3)) == 0.0
    assert share_of_top(lam, 1) == pytest.approx(0.5)
    assert share_of_top(lam, 2) == pytest.approx(0.75)
    assert rank_for_share(lam, 0.75) == 2
    assert rank_for_share(lam, 0.76) == 3
    assert rank_for_share(lam, 1.0) == 4

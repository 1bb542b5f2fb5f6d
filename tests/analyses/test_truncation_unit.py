"""Direct unit tests of ``bilin_cli.analyses.truncation`` (and ``api.truncate``), against an
independent float64 reference: the naive tensor ``B`` from conftest, ``numpy.linalg.eigh``
and a forward pass written out here from the tensors safetensors reads back."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import reference_B, reference_layer_output, write_image, write_toy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

import bilin_cli as bilin
from bilin_cli.analyses import truncation as tr
from bilin_cli.core.errors import BilinError

D, N_IN, N_CLS = 6, 9, 3


# ---------------------------------------------------------------------------- references


def ref_augmented_B(ref) -> np.ndarray:
    """The symmetrized (augmented, with biases) B of the layer, as the reference computes it."""
    return reference_B(ref)


def ref_topk(Qc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k eigenpairs of largest |lambda| by numpy.linalg.eigh: (lam (k,), vecs (d, k))."""
    lam, vecs = np.linalg.eigh(Qc)
    order = np.argsort(-np.abs(lam), kind="stable")[:k]
    return lam[order], vecs[:, order]


def ref_truncated_Q(Qc: np.ndarray, k: int) -> np.ndarray:
    lam, vecs = ref_topk(Qc, k)
    return (vecs * lam) @ vecs.T


def ref_layer_input(ref, x: np.ndarray) -> np.ndarray:
    h = x @ ref.E.T if ref.E is not None else x
    if ref.b_w is not None:
        h = np.concatenate([h, np.ones((h.shape[0], 1))], axis=1)
    return h


def ref_truncated_logits(ref, x: np.ndarray, k: int) -> np.ndarray:
    h = ref_layer_input(ref, x)
    B = ref_augmented_B(ref)
    return np.stack([np.einsum("ni,ij,nj->n", h, ref_truncated_Q(B[c], k), h)
                     for c in range(B.shape[0])], axis=1)


def forward_from_file(tensors: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The truncated checkpoint's logits, from its tensors alone (no bilin code)."""
    t = {k: v.astype(np.float64) for k, v in tensors.items()}
    if "left.weight" in t:  # toy layout
        W, V = t["left.weight"], t["right.weight"]
        bw, bv = t.get("left.bias"), t.get("right.bias")
        h = x
    else:
        WV = t["blocks.0.weight"]
        n = WV.shape[0] // 2
        W, V = WV[:n], WV[n:]
        b = t.get("blocks.0.bias")
        bw, bv = (None, None) if b is None else (b[:n], b[n:])
        h = x @ t["embed.weight"].T if "embed.weight" in t else x
    left, right = h @ W.T, h @ V.T
    if bw is not None:
        left, right = left + bw, right + bv
    y = (left * right) @ t["head.weight"].T
    return y + t["head.bias"] if "head.bias" in t else y


@pytest.fixture
def image(tmp_path):
    def make(bias=False, seed=21):
        path = tmp_path / f"img-{bias}-{seed}"
        (ref,) = write_image(path, d=D, n_in=N_IN, n_cls=N_CLS, bias=bias, seed=seed)
        return path, ref, bilin.load(path)

    return make


def inputs(n=40, seed=0, dim=N_IN):
    return np.random.default_rng(seed).standard_normal((n, dim))


# ---------------------------------------------------------------------------- class_spectra


@pytest.mark.parametrize("bias", [False, True])
def test_class_spectra_are_every_eigenpair_of_each_class_Q(image, bias):
    _, ref, model = image(bias)
    spectra = tr.class_spectra(model, np.float64)
    B = ref_augmented_B(ref)
    assert len(spectra) == N_CLS
    for c, s in enumerate(spectra):
        dim = D + bias
        assert s.lam.shape == (dim,) and s.vecs.shape == (dim, dim)
        # |lambda| descending, signs kept, the reference's spectrum
        assert np.all(np.diff(np.abs(s.lam)) <= 1e-12)
        np.testing.assert_allclose(np.sort(s.lam), np.linalg.eigvalsh(B[c]), atol=1e-10)
        # rows orthonormal, and they rebuild Q_c exactly
        np.testing.assert_allclose(s.vecs @ s.vecs.T, np.eye(dim), atol=1e-10)
        np.testing.assert_allclose((s.vecs.T * s.lam) @ s.vecs, B[c], atol=1e-10)


def test_class_spectra_advance_is_called_once_per_class(image):
    _, _, model = image()
    calls = []
    tr.class_spectra(model, np.float64, advance=lambda: calls.append(1))
    assert len(calls) == N_CLS


@pytest.mark.parametrize("k", [0, 1, 3, D])
def test_kept_eigenpairs_sum_to_the_reference_truncated_Q(image, k):
    _, ref, model = image()
    spectra = tr.class_spectra(model, np.float64)
    B = ref_augmented_B(ref)
    for c, s in enumerate(spectra):
        Qk = (s.vecs[:k].T * s.lam[:k]) @ s.vecs[:k]
        np.testing.assert_allclose(Qk, ref_truncated_Q(B[c], k), atol=1e-10)


# ---------------------------------------------------------------------------- choose_ranks


def test_choose_ranks_by_rank_clamps_to_the_dimension(image):
    _, _, model = image()
    spectra = tr.class_spectra(model, np.float64)
    assert tr.choose_ranks(spectra, rank=2) == [2] * N_CLS
    assert tr.choose_ranks(spectra, rank=0) == [0] * N_CLS
    assert tr.choose_ranks(spectra, rank=10 * D) == [D] * N_CLS


@pytest.mark.parametrize("energy", [0.2, 0.5, 0.9, 1.0])
def test_choose_ranks_by_energy_is_the_smallest_k_holding_it(image, energy):
    _, _, model = image()
    spectra = tr.class_spectra(model, np.float64)
    ranks = tr.choose_ranks(spectra, energy=energy)
    for s, k in zip(spectra, ranks, strict=True):
        a = np.sort(np.abs(s.lam))[::-1]
        share = np.cumsum(a) / a.sum()
        expected = int(np.argmax(share >= energy - 1e-12)) + 1
        assert k == expected
        assert share[k - 1] >= energy - 1e-12
        if k > 1:
            assert share[k - 2] < energy


@pytest.mark.parametrize("kwargs,says", [
    ({}, "exactly one of rank or energy"),
    ({"rank": 2, "energy": 0.5}, "exactly one of rank or energy"),
    ({"rank": -1}, "rank must be >= 0, got -1"),
    ({"energy": 0.0}, "energy must be in (0, 1], got 0.0"),
    ({"energy": 1.5}, "energy must be in (0, 1], got 1.5"),
])
def test_choose_ranks_errors(image, kwargs, says):
    _, _, model = image()
    spectra = tr.class_spectra(model, np.float64)
    with pytest.raises(BilinError) as exc:
        tr.choose_ranks(spectra, **kwargs)
    assert says in str(exc.value)


# ---------------------------------------------------------------------------- rank_report


def test_rank_report_share_and_bound_factor(image):
    _, _, model = image()
    spectra = tr.class_spectra(model, np.float64)
    ranks = [0, 2, D]
    rows = tr.rank_report(spectra, ranks, model.output_names)
    assert [r["class"] for r in rows] == list(range(N_CLS))
    assert [r["name"] for r in rows] == ["c0", "c1", "c2"]
    assert [r["k"] for r in rows] == ranks
    for r, s, k in zip(rows, spectra, ranks, strict=True):
        a = np.abs(s.lam)
        assert r["share_kept"] == pytest.approx(a[:k].sum() / a.sum())
        assert r["max_discarded_abs_eigenvalue"] == pytest.approx(a[k:].max() if k < D else 0)
    assert rows[0]["share_kept"] == 0.0 and rows[2]["share_kept"] == pytest.approx(1.0)
    # without names the class index is its name
    assert [r["name"] for r in tr.rank_report(spectra, ranks, None)] == ["0", "1", "2"]


# ---------------------------------------------------------------------------- truncated_tensors


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("k", [1, 3])
def test_truncated_tensors_encode_the_truncated_forms(image, bias, k):
    _, ref, model = image(bias)
    spectra = tr.class_spectra(model, np.float64)
    ranks = [k] * N_CLS
    t = tr.truncated_tensors(model, spectra, ranks)
    assert all(v.dtype == np.float32 for v in t.values())
    assert t["blocks.0.weight"].shape == (2 * k * N_CLS, D)
    assert t["head.weight"].shape == (N_CLS, k * N_CLS)
    np.testing.assert_array_equal(t["embed.weight"], ref.E.astype(np.float32))
    WV = t["blocks.0.weight"].astype(np.float64)
    U = WV[: k * N_CLS]
    np.testing.assert_array_equal(WV[: k * N_CLS], WV[k * N_CLS:])  # W = V = v_ci
    if bias:
        b = t["blocks.0.bias"].astype(np.float64)
        np.testing.assert_array_equal(b[: k * N_CLS], b[k * N_CLS:])
        U = np.concatenate([U, b[: k * N_CLS, None]], axis=1)
    else:
        assert "blocks.0.bias" not in t
    head = t["head.weight"].astype(np.float64)
    B = ref_augmented_B(ref)
    for c in range(N_CLS):
        # class c reads only its own k units, with its kept eigenvalues as weights
        own = np.zeros(k * N_CLS, bool)
        own[c * k:(c + 1) * k] = True
        assert np.all(head[c, ~own] == 0)
        Qc = (U.T * head[c]) @ U
        np.testing.assert_allclose(Qc, ref_truncated_Q(B[c], k), atol=1e-5)


def test_per_class_ranks_may_differ(image):
    _, ref, model = image()
    spectra = tr.class_spectra(model, np.float64)
    ranks = [0, 1, 4]
    t = tr.truncated_tensors(model, spectra, ranks)
    assert t["head.weight"].shape == (N_CLS, 5)
    x = inputs()
    got = forward_from_file(t, x)
    B = ref_augmented_B(ref)
    h = x @ ref.E.T
    for c, k in enumerate(ranks):
        want = np.einsum("ni,ij,nj->n", h, ref_truncated_Q(B[c], k), h)
        np.testing.assert_allclose(got[:, c], want, atol=1e-5 * max(1, np.abs(want).max()))
    np.testing.assert_array_equal(got[:, 0], 0)


def test_truncated_toy_keeps_its_own_layout_and_k_d_is_exact(tmp_path):
    ref = write_toy(tmp_path / "toy.safetensors", d=4, h=6, o=3, seed=4)
    model = bilin.load(tmp_path / "toy.safetensors")
    spectra = tr.class_spectra(model, np.float64)
    t = tr.truncated_tensors(model, spectra, [4, 4, 4])
    assert set(t) == {"left.weight", "right.weight", "head.weight"}
    np.testing.assert_array_equal(t["left.weight"], t["right.weight"])
    x = inputs(dim=4)
    want = reference_layer_output(ref, x)
    np.testing.assert_allclose(forward_from_file(t, x), want, atol=1e-5 * np.abs(want).max())
    t2 = tr.truncated_tensors(model, spectra, [2, 2, 2])
    np.testing.assert_allclose(forward_from_file(t2, x), ref_truncated_logits(ref, x, 2),
                               atol=1e-5 * np.abs(want).max())


# ---------------------------------------------------------------------------- the written file


@pytest.mark.parametrize("bias", [False, True])
def test_written_checkpoint_forward_equals_truncated_quadratic_forms(image, tmp_path, bias):
    path, ref, _ = image(bias)
    k = 2
    out = tmp_path / "k2.safetensors"
    result = bilin.truncate(path, rank=k, output=out, dtype=np.float64)
    assert result.output == str(out) and result.hidden_units == k * N_CLS
    assert result.augmented is bias
    x = inputs(seed=3)
    want = ref_truncated_logits(ref, x, k)
    tol = 1e-5 * np.abs(want).max()
    np.testing.assert_allclose(forward_from_file(load_file(str(out)), x), want, atol=tol)
    # and bilin reads it back as an ordinary checkpoint of the source's layout
    back = bilin.load(out)
    assert back.layout == "image classifier" and back.shapes[0].h == k * N_CLS
    np.testing.assert_allclose(back.forward(x, np.float64), want, atol=tol)


@pytest.mark.parametrize("bias", [False, True])
def test_full_rank_gives_back_the_full_model(image, tmp_path, bias):
    path, ref, _ = image(bias)
    full = D + bias  # augmented with biases: exact again at K = d + 1
    out = tmp_path / "full"
    bilin.truncate(path, rank=full, output=out, dtype=np.float64)
    x = inputs(seed=4)
    want = reference_layer_output(ref, x @ ref.E.T)
    got = bilin.load(out).forward(x, np.float64)
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())
    if bias:  # one short of d + 1 is not exact
        short = tr.truncated_tensors(bilin.load(path), tr.class_spectra(bilin.load(path),
                                                                         np.float64),
                                     [D] * N_CLS)
        assert np.abs(forward_from_file(short, x) - want).max() > 1e-3


def test_written_folder_carries_the_truncation_config(image, tmp_path):
    path, _, _ = image()
    out = tmp_path / "k3"
    bilin.truncate(path, energy=0.8, output=out)
    cfg = json.loads((out / "config.json").read_text())
    ranks = tr.choose_ranks(tr.class_spectra(bilin.load(path)), energy=0.8)
    assert cfg["classes"] == ["c0", "c1", "c2"]
    assert cfg["d_hidden"] == sum(ranks) and cfg["bias"] is False and cfg["residual"] is False
    assert cfg["truncation"]["ranks"] == ranks
    assert cfg["truncation"]["rule"] == "energy 0.8"
    assert cfg["truncation"]["source"] == str(path)


def test_truncate_refuses_an_existing_output_before_working(image, tmp_path):
    path, _, _ = image()
    out = tmp_path / "taken.safetensors"
    out.write_bytes(b"keep me")
    with pytest.raises(BilinError):
        bilin.truncate(path, rank=1, output=out)
    assert out.read_bytes() == b"keep me"


# ---------------------------------------------------------------------------- sweep and bound


@pytest.mark.parametrize("bias", [False, True])
def test_sweep_logits_equal_the_reference_for_every_k(image, bias):
    _, ref, model = image(bias)
    spectra = tr.class_spectra(model, np.float64)
    x = inputs(seed=5)
    ks = [0, 1, 3, D + bias, 50]
    out = tr.sweep_logits(model, spectra, x, ks, np.float64)
    assert sorted(out) == sorted(ks)
    np.testing.assert_array_equal(out[0], 0)
    for k in ks[1:]:
        np.testing.assert_allclose(out[k], ref_truncated_logits(ref, x, min(k, D + bias)),
                                   atol=1e-9)
    # K past the dimension is the full model
    np.testing.assert_allclose(out[50], reference_layer_output(ref, x @ ref.E.T), atol=1e-9)


def test_layer_inputs_are_E_x_with_a_constant_for_biases(image):
    _, ref, model = image(True)
    x = inputs(n=5)
    h = tr.layer_inputs(model, x, np.float64)
    np.testing.assert_allclose(h, ref_layer_input(ref, x), atol=1e-12)
    assert np.all(h[:, -1] == 1)


@settings(max_examples=15, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(k=st.integers(0, D), seed=st.integers(0, 2**16), scale=st.floats(0.01, 100))
def test_error_bound_holds(image, k, seed, scale):
    """|x^T Q x - x^T Q_k x| <= max_discarded |lambda| * ||x||^2 in the layer's input space."""
    _, ref, model = image(seed=7)
    spectra = tr.class_spectra(model, np.float64)
    rows = tr.rank_report(spectra, [k] * N_CLS, None)
    x = inputs(n=20, seed=seed) * scale
    full = tr.sweep_logits(model, spectra, x, [D], np.float64)[D]
    trunc = tr.sweep_logits(model, spectra, x, [k], np.float64)[k]
    h2 = (tr.layer_inputs(model, x, np.float64) ** 2).sum(1)
    for c, r in enumerate(rows):
        bound = r["max_discarded_abs_eigenvalue"] * h2
        assert np.all(np.abs(full[:, c] - trunc[:, c]) <= bound * (1 + 1e-9) + 1e-12)


def test_accuracy_sweep_on_labelled_data(image, tmp_path):
    path, ref, model = image()
    r = np.random.default_rng(9)
    x = r.integers(0, 256, size=(120, N_IN), dtype=np.uint8)
    xs = x / 255.0
    logits = reference_layer_output(ref, xs @ ref.E.T)
    y = logits.argmax(1)
    y[:30] = (y[:30] + 1) % N_CLS  # a quarter wrong: full accuracy 75%
    np.savez(tmp_path / "data.npz", x=x, y=y.astype(np.uint8))
    sweep = bilin.truncation_sweep(path, [0, 2, D], data=tmp_path / "data.npz",
                                   dtype=np.float64)
    assert sweep.ks.tolist() == [0, 2, D]
    assert sweep.full_accuracy == pytest.approx(0.75)
    assert sweep.accuracy[-1] == pytest.approx(0.75) and sweep.drop[-1] == pytest.approx(0)
    acc2 = (ref_truncated_logits(ref, xs, 2).argmax(1) == y).mean()
    assert sweep.accuracy[1] == pytest.approx(acc2)
    assert sweep.n_examples == 120
    # truncate's own evaluation agrees with the sweep at its K
    t = bilin.truncate(path, rank=2, data=tmp_path / "data.npz", dtype=np.float64)
    assert t.accuracy == pytest.approx(acc2) and t.full_accuracy == pytest.approx(0.75)


# ---------------------------------------------------------------------------- refusals


def test_only_single_layer_non_residual_classifiers_truncate(tmp_path):
    write_image(tmp_path / "deep", d=4, n_in=6, n_cls=2, n_layer=2)
    write_image(tmp_path / "res", d=4, n_in=6, n_cls=2, residual=True)
    (tmp_path / "llama").mkdir()  # the paper's transformer keys, one layer (numpy, no torch)
    r = np.random.default_rng(0)
    save_file({k: r.standard_normal(shape).astype(np.float32) for k, shape in (
        ("transformer.wte.weight", (5, 4)), ("lm_head.weight", (5, 4)),
        ("transformer.h.0.mlp.w.weight", (12, 4)), ("transformer.h.0.mlp.p.weight", (4, 6)))},
        str(tmp_path / "llama" / "model.safetensors"))
    cases = {"deep": "single-bilinear-layer models; this one has 2",
             "res": "truncation of residual models is not supported",
             "llama": "truncation needs a classifier"}
    for name, says in cases.items():
        model = bilin.load(tmp_path / name)
        with pytest.raises(BilinError) as exc:
            tr.check_truncatable(model)
        assert says in str(exc.value), name
        with pytest.raises(BilinError):
            tr.class_spectra(model)

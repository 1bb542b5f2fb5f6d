"""bilin compare: |cos| of matched eigenvectors and Quadratic Form Similarity (QFS)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import reference_B, write_image, write_toy, write_transformer
from safetensors.numpy import load_file, save_file

from bilin_cli.analyses.similarity import abs_cosines, qfs, quadratic_form_norm

D, N_IN, N_CLS = 10, 16, 4


def noisy_copy(src, dst, scale, seed=0):
    """The same checkpoint with Gaussian noise of relative size ``scale`` on every tensor."""
    r = np.random.default_rng(seed)
    t = load_file(str(src / "model.safetensors"))
    noisy = {k: (v + scale * v.std() * r.standard_normal(v.shape)).astype(np.float32)
             for k, v in t.items()}
    dst.mkdir()
    save_file(noisy, str(dst / "model.safetensors"))
    (dst / "config.json").write_text((src / "config.json").read_text())
    return {k: v.astype(np.float64) for k, v in noisy.items()}


def dense_qfs(lam_a, Xa, lam_b, Xb):
    """tr(A B) / (||A|| ||B||) with A, B formed as (n, n) matrices."""
    A = Xa.T @ np.diag(lam_a) @ Xa
    B = Xb.T @ np.diag(lam_b) @ Xb
    return np.trace(A @ B) / (np.linalg.norm(A) * np.linalg.norm(B))


def reference_top(E, W, V, head, c, k):
    """Top-k |lambda| eigenpairs of class c's naive B_c, vectors in pixels (E^T v) as rows."""
    from conftest import Ref

    B = reference_B(Ref(W, V, head))
    lam, vecs = np.linalg.eigh(B[c])
    order = np.argsort(-np.abs(lam), kind="stable")[:k]
    return lam[order], (vecs[:, order].T @ E)


def test_qfs_math():
    r = np.random.default_rng(0)
    lam_a, Xa = r.standard_normal(5), r.standard_normal((5, 9))
    lam_b, Xb = r.standard_normal(4), r.standard_normal((4, 9))
    got = qfs(lam_a, Xa, lam_b, Xb)
    assert got == pytest.approx(dense_qfs(lam_a, Xa, lam_b, Xb), rel=1e-12)
    assert -1 <= got <= 1
    assert qfs(lam_a, Xa, lam_a, Xa) == pytest.approx(1.0, rel=1e-12)
    assert quadratic_form_norm(lam_a, Xa) == pytest.approx(
        np.linalg.norm(Xa.T @ np.diag(lam_a) @ Xa), rel=1e-12)
    # Sign flips of any eigenvectors change nothing.
    sa, sb = r.choice([-1.0, 1.0], 5), r.choice([-1.0, 1.0], 4)
    assert qfs(lam_a, Xa * sa[:, None], lam_b, Xb * sb[:, None]) == pytest.approx(got, rel=1e-12)
    np.testing.assert_allclose(abs_cosines(Xa * sa[:, None], Xb), abs_cosines(Xa, Xb))
    assert qfs(np.zeros(5), Xa, lam_b, Xb) is None


@pytest.fixture
def pair(tmp_path):
    write_image(tmp_path / "a", d=D, n_in=N_IN, n_cls=N_CLS, seed=41)
    tensors = noisy_copy(tmp_path / "a", tmp_path / "b", 0.1)
    return tmp_path / "a", tmp_path / "b", tensors


def test_self_comparison_is_one(cli, pair):
    a, _, _ = pair
    code, out, err = cli("compare", a, a, "--json", "--float64", "--top", 5)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["space"] == "input" and doc["top_k"] == 5 and len(doc["classes"]) == N_CLS
    for row in doc["classes"]:
        np.testing.assert_allclose(row["rank_matched"], 1.0, atol=1e-10)
        assert row["hungarian_mean"] == pytest.approx(1.0, abs=1e-10)
        assert all(i == j for i, j, _ in row["hungarian"])
        assert row["qfs"] == pytest.approx(1.0, abs=1e-12)
        assert row["qfs_all"] == pytest.approx(1.0, abs=1e-12)
    assert doc["mean"]["qfs"] == pytest.approx(1.0, abs=1e-12)


def test_similar_models_against_reference(cli, pair):
    """A model and a noisy copy (two "trained" models that agree): 0 < QFS < 1.

    Two *independently* initialised models can give QFS <= 0; a perturbed copy is the
    deterministic stand-in for two training seeds that found similar features.
    """
    a, b, tb = pair
    k = 4
    code, out, err = cli("compare", a, b, "--json", "--float64", "--top", k)
    assert code == 0, err
    doc = json.loads(out)
    ta = {kk: v.astype(np.float64) for kk, v in load_file(str(a / "model.safetensors")).items()}
    for row in doc["classes"]:
        c = row["class"]
        tops = []
        for t in (ta, tb):
            WV = t["blocks.0.weight"]
            tops.append(reference_top(t["embed.weight"], WV[:D], WV[D:], t["head.weight"], c, k))
        (la, Xa), (lb, Xb) = tops
        assert row["qfs"] == pytest.approx(dense_qfs(la, Xa, lb, Xb), rel=1e-7)
        assert 0 < row["qfs"] < 1
        C = np.abs((Xa / np.linalg.norm(Xa, axis=1, keepdims=True))
                   @ (Xb / np.linalg.norm(Xb, axis=1, keepdims=True)).T)
        np.testing.assert_allclose(row["rank_matched"], np.diag(C), atol=1e-7)
        assert row["hungarian_mean"] >= row["rank_matched_mean"] - 1e-12
        # Brute force over all 4! pairings: the Hungarian mean is the best one.
        from itertools import permutations

        best = max(np.mean(C[np.arange(k), list(p)]) for p in permutations(range(k)))
        assert row["hungarian_mean"] == pytest.approx(best, rel=1e-9)
    assert 0 < doc["mean"]["qfs"] < 1


def test_unrelated_models(cli, tmp_path):
    write_image(tmp_path / "a", d=D, n_in=N_IN, n_cls=N_CLS, seed=1)
    write_image(tmp_path / "b", d=D, n_in=N_IN, n_cls=N_CLS, seed=2)
    code, out, err = cli("compare", tmp_path / "a", tmp_path / "b", "--json", "--class", 0,
                         "--class", 2)
    assert code == 0, err
    doc = json.loads(out)
    assert [r["class"] for r in doc["classes"]] == [0, 2]
    for row in doc["classes"]:
        assert -1 < row["qfs"] < 1 and row["rank_matched_mean"] < 1
        assert row["hungarian_mean"] >= row["rank_matched_mean"] - 1e-12


def test_hidden_space_and_table(cli, tmp_path):
    write_toy(tmp_path / "t1.safetensors", d=4, h=6, o=3, seed=1)
    write_toy(tmp_path / "t2.safetensors", d=4, h=8, o=3, seed=2)
    code, out, err = cli("compare", tmp_path / "t1.safetensors", tmp_path / "t2.safetensors",
                         "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["space"] == "hidden" and doc["top_k"] == 4
    code, out, _ = cli("compare", tmp_path / "t1.safetensors", tmp_path / "t2.safetensors")
    assert code == 0 and "QFS" in out and "qfs_all" in out
    assert "bilin compare" not in out  # no decorative title line in a pipe
    code, out, _ = cli("compare", tmp_path / "t1.safetensors", tmp_path / "t2.safetensors",
                       "--format", "csv")
    assert code == 0 and len(out.strip().splitlines()) == 4


def test_incompatible_models(cli, tmp_path):
    write_image(tmp_path / "a", d=D, n_in=N_IN, n_cls=N_CLS, seed=1)
    write_image(tmp_path / "b", d=D + 2, n_in=N_IN + 4, n_cls=N_CLS, seed=2)
    code, _, err = cli("compare", tmp_path / "a", tmp_path / "b")
    assert code == 1 and "cannot be compared" in err
    code, _, err = cli("compare", tmp_path / "a", tmp_path / "b", "--basis", "input")
    assert code == 1 and "input sizes differ" in err
    write_image(tmp_path / "c", d=D, n_in=N_IN, n_cls=N_CLS + 1, seed=3)
    code, _, err = cli("compare", tmp_path / "a", tmp_path / "c")
    assert code == 1 and "--class" in err
    code, _, err = cli("compare", tmp_path / "a", tmp_path / "c", "--class", N_CLS)
    assert code == 1 and "out of range" in err
    write_transformer(tmp_path / "lm", n_layer=1)
    code, _, err = cli("compare", tmp_path / "a", tmp_path / "lm")
    assert code == 1 and "classifiers" in err
    code, _, err = cli("compare", tmp_path / "a", tmp_path / "a", "--top", 0)
    assert code == 1 and "--top" in err

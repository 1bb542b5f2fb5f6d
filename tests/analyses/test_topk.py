"""The matrix-free top-K route (ARPACK) against dense eigh, and when ``auto`` takes it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_image

from bilin_cli.analyses import decompose as decompose_module
from bilin_cli.analyses.decompose import auto_method, decompose
from bilin_cli.analyses.directions import from_class
from bilin_cli.storage.containers import open_checkpoint
from bilin_cli.storage.layouts import recognise


def _model(tmp_path, bias: bool):
    write_image(tmp_path / "m", d=60, n_in=30, n_cls=4, bias=bias, seed=7)
    return recognise(open_checkpoint(tmp_path / "m"))


def _same_up_to_sign(a: np.ndarray, b: np.ndarray) -> None:
    """Rows of ``a`` and ``b`` are the same vectors up to sign."""
    signs = np.sign(np.sum(a * b, axis=1))
    np.testing.assert_allclose(a * signs[:, None], b, atol=1e-7)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("basis", ["hidden", "input"])
def test_arpack_top_k_equals_dense_eigh(tmp_path, bias, basis):
    model = _model(tmp_path, bias)
    u = from_class(model, 0, 2, np.float64)
    dense = decompose(model, 0, u, top=6, basis=basis, dtype=np.float64, method="dense")
    arpack = decompose(model, 0, u, top=6, basis=basis, dtype=np.float64, method="arpack")
    assert (dense.method, arpack.method) == ("dense", "arpack")
    np.testing.assert_allclose(arpack.eigenvalues, dense.eigenvalues, rtol=1e-9, atol=1e-12)
    _same_up_to_sign(arpack.eigenvectors, dense.eigenvectors)
    if bias:  # the linear and constant parts, from the factors, equal the dense ones
        np.testing.assert_allclose(arpack.linear, dense.linear, rtol=1e-10, atol=1e-12)
        assert arpack.constant == pytest.approx(dense.constant, rel=1e-10, abs=1e-12)
    else:
        assert arpack.linear is None and dense.linear is None
    # statistics of the whole spectrum: exact from dense, null with a note from ARPACK
    assert dense.sum_abs > 0 and dense.effective_rank > 0 and 0 < dense.top_share < 1
    assert (arpack.sum_abs, arpack.effective_rank, arpack.top_share) == (None, None, None)
    assert any("method arpack" in n and "--method dense" in n for n in arpack.notes)


def test_arpack_falls_back_to_dense_when_k_is_almost_d(tmp_path):
    model = _model(tmp_path, False)
    u = from_class(model, 0, 1, np.float64)
    dec = decompose(model, 0, u, top=59, dtype=np.float64, method="arpack")
    assert dec.method == "dense" and dec.sum_abs is not None


def test_auto_method_threshold():
    d = decompose_module.ARPACK_MIN_D
    small_k = d // decompose_module.ARPACK_MAX_FRACTION
    assert auto_method(d, small_k) == "arpack"
    assert auto_method(d, small_k + 1) == "dense"  # many eigenpairs: dense is faster
    assert auto_method(d - 1, 1) == "dense"  # small layer: dense in under a second
    assert auto_method(d, None) == "dense"  # all eigenpairs
    assert auto_method(decompose_module.DENSE_LIMIT + 1, 500) == "arpack"
    assert auto_method(4096, 10) == "arpack"


def test_eig_top_k_on_a_large_layer_takes_arpack_by_default(cli, tmp_path, monkeypatch):
    """A 'large' layer by a lowered threshold: eig --top K goes matrix-free and says so."""
    write_image(tmp_path / "m", d=60, n_in=30, n_cls=4, seed=7)
    monkeypatch.setattr(decompose_module, "ARPACK_MIN_D", 50)
    code, out, err = cli("eig", tmp_path / "m", "--class", "1", "--top", "1", "--json",
                         "--float64")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["method"] == "arpack" and doc["top_k"] == 1
    assert doc["sum_abs_eigenvalues"] is None and doc["effective_rank"] is None
    assert doc["top_k_share"] is None
    assert any("method arpack" in n for n in doc["notes"])
    code, out, err = cli("eig", tmp_path / "m", "--class", "1", "--top", "1", "--json",
                         "--float64", "--method", "dense")
    dense = json.loads(out)
    assert dense["method"] == "dense" and dense["effective_rank"] > 0
    np.testing.assert_allclose(doc["eigenvalues"], dense["eigenvalues"], rtol=1e-9)
    code, out, err = cli("eig", tmp_path / "m", "--class", "1", "--top", "1")
    assert code == 0 and "arpack" in out  # the table says which route too

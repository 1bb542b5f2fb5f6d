"""One numbering: eigenvector r (rank from 1, |lambda| descending, as `bilin eig` prints it)
is the same vector in eig, explain, hosvd and adversarial, on the shipped MNIST sample."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
MNIST = ROOT / "sample_checkpoints" / "mnist"
DATA = ROOT / "sample_checkpoints" / "data" / "mnist-test.npz"


def eig_hidden(cli, *direction) -> tuple[np.ndarray, np.ndarray]:
    """Every eigenpair of one direction in the hidden basis, float64, in eig's order."""
    code, out, err = cli("eig", MNIST, *direction, "--all", "--basis", "hidden", "--float64",
                         "--json")
    assert code == 0, err
    doc = json.loads(out)
    return np.array(doc["eigenvalues"]), np.array(doc["eigenvectors"])


def layer_input(index: int) -> np.ndarray:
    """h = E x for test image ``index``, computed here from the checkpoint's tensors."""
    from bilin_cli.api import load
    from bilin_cli.storage.data import load_dataset

    model = load(MNIST)
    x = load_dataset(DATA, np.float64).x[index]
    return model.embed(np.float64) @ x


def test_eig_table_ranks_from_one(cli):
    code, out, err = cli("eig", MNIST, "--class", 7, "--top", 5, "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4, 5]
    lam, _ = eig_hidden(cli, "--class", 7)
    np.testing.assert_allclose([float(r["eigenvalue"]) for r in rows], lam[:5], rtol=1e-5)


def test_explain_rank_r_is_eig_rank_r(cli):
    lam, vecs = eig_hidden(cli, "--class", 7)
    h = layer_input(0)  # a 7, predicted 7
    code, out, err = cli("explain", MNIST, "--input", f"{DATA}:0", "--classes", 1, "--top", 6,
                         "--float64", "--json")
    assert code == 0, err
    cd = json.loads(out)["classes"][0]
    assert cd["class"] == 7
    rows = cd["positive"] + cd["negative"]
    assert len(rows) == 12
    for r in rows:
        assert "index" not in r
        rank = r["rank"]
        assert 1 <= rank <= lam.size
        assert r["eigenvalue"] == pytest.approx(lam[rank - 1], rel=1e-9)
        # v . h with eig's own vector (same sign rule): the projection, not just its square
        assert r["projection"] == pytest.approx(vecs[rank - 1] @ h, rel=1e-7, abs=1e-9)
        assert r["contribution"] == pytest.approx(lam[rank - 1] * (vecs[rank - 1] @ h) ** 2,
                                                  rel=1e-7, abs=1e-12)
    # The table and CSV say the same rank as the JSON, under the JSON's key names.
    code, out, err = cli("explain", MNIST, "--input", f"{DATA}:0", "--classes", 1, "--top", 6,
                         "--float64", "--format", "csv")
    assert code == 0, err
    table = list(csv.DictReader(io.StringIO(out)))
    assert list(table[0]) == ["class", "name", "sign", "rank", "eigenvalue", "projection",
                              "contribution"]
    assert [int(t["rank"]) for t in table] == [r["rank"] for r in rows]


def test_adversarial_eig_r_is_the_r_th_positive_eigenvector_of_eig(cli):
    """`adversarial --eig r` counts the target's positive eigenvectors from 1 (1 = the top
    positive one): its eigenvalue is the r-th positive eigenvalue of eig's list."""
    lam, _ = eig_hidden(cli, "--class", 7)
    positive = lam[lam > 0]
    for r in (1, 2):
        code, out, err = cli("adversarial", MNIST, "--target", 7, "--eig", r, "--strength", 0.3,
                             "--json")
        assert code == 0, err
        doc = json.loads(out)
        assert doc["eig"] == r
        assert doc["eigenvalue"] == pytest.approx(positive[r - 1], rel=1e-4)
        # The number it prints for that vector is eig's own rank (|lambda| order, from 1).
        rank = doc["eig_rank"]
        assert lam[rank - 1] == pytest.approx(doc["eigenvalue"], rel=1e-4)
        assert f"eigenvector        #{rank} " in cli("adversarial", MNIST, "--target", 7,
                                                    "--eig", r, "--strength", 0.3)[1]
        leak_lam, _ = eig_hidden(cli, "--class", doc["leak_class"])
        assert leak_lam[doc["leak_eig_rank"] - 1] > 0


def test_hosvd_component_k_rank_r(cli, tmp_path):
    """Component k (from 1) has Q_k with Q(u_k) = sigma_k Q_k, so eig --direction u_k numbers
    the same eigenvectors the same way: eigenvalue r of eig = sigma_k * eigenvalue r of Q_k."""
    top = 4
    code, out, err = cli("hosvd", MNIST, "--components", 3, "--top", top, "--basis", "hidden",
                         "--float64", "--json")
    assert code == 0, err
    doc = json.loads(out)
    comps = doc["components"]
    assert [c["component"] for c in comps] == [1, 2, 3]
    for k, comp in enumerate(comps, start=1):
        assert comp["sigma"] == pytest.approx(doc["singular_values"][k - 1])
        assert comp["ranks"] == list(range(1, top + 1))
        mu = np.array(comp["eigenvalues"])
        assert np.all(np.diff(np.abs(mu)) <= 1e-12)  # |lambda| descending: rank 1 first
        np.save(tmp_path / f"u{k}.npy", np.array(comp["loadings"]))
        lam, vecs = eig_hidden(cli, "--direction", tmp_path / f"u{k}.npy")
        np.testing.assert_allclose(lam[:top], comp["sigma"] * mu, rtol=1e-6, atol=1e-9)
        # eigenvector r of Q_k is eig's eigenvector r, sign included (the same sign rule)
        np.testing.assert_allclose(np.array(comp["eigenvectors"]), vecs[:top], atol=1e-6)

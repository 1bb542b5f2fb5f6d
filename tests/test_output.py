"""The shared output machinery: formats, -o, --force, atomic writes."""

from __future__ import annotations

import csv
import io
import json
import os

import numpy as np
import pytest
from conftest import write_image

from bilin_cli.atomic import atomic_write
from bilin_cli.errors import BilinError


@pytest.fixture
def ckpt(tmp_path):
    write_image(tmp_path / "m")
    return tmp_path / "m"


def test_csv_and_tsv_rows_match_json(cli, ckpt):
    _, out, _ = cli("eig", ckpt, "--class", "0", "--top", "4", "--json")
    doc = json.loads(out)
    for fmt, delim in (("csv", ","), ("tsv", "\t")):
        code, out, _ = cli("eig", ckpt, "--class", "0", "--top", "4", "--format", fmt)
        assert code == 0
        rows = list(csv.reader(io.StringIO(out), delimiter=delim))
        assert rows[0] == ["rank", "eigenvalue", "share", "cumulative_share", "largest_entries"]
        assert [float(r[1]) for r in rows[1:]] == doc["eigenvalues"]
        shares = [float(r[2]) for r in rows[1:]]
        assert sum(shares) == pytest.approx(doc["top_k_share"])


def test_npz_output(cli, ckpt, tmp_path):
    target = tmp_path / "eig.npz"
    code, out, err = cli("eig", ckpt, "--class", "3", "--all", "--basis", "hidden",
                         "--format", "npz", "-o", target)
    assert code == 0 and out == "" and "wrote" in err
    with np.load(target) as z:
        lam, vecs = z["eigenvalues"], z["eigenvectors"]
    assert lam.shape == (12,) and vecs.shape == (12, 12)
    np.testing.assert_allclose(vecs @ vecs.T, np.eye(12), atol=1e-5)


def test_output_refuses_overwrite_without_force(cli, ckpt, tmp_path):
    target = tmp_path / "out.json"
    target.write_text("precious")
    code, out, err = cli("eig", ckpt, "--class", "1", "--json", "-o", target)
    assert code == 1 and "--force" in err
    assert target.read_text() == "precious"
    code, _, _ = cli("eig", ckpt, "--class", "1", "--json", "-o", target, "--force")
    assert code == 0
    assert json.loads(target.read_text())["direction"]["index"] == 1
    assert sorted(os.listdir(tmp_path)) == ["m", "out.json"]  # no temporary files left


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "half.bin"

    def write(fh):
        fh.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, write)
    assert os.listdir(tmp_path) == []
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, write, force=True)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["half.bin"]
    with pytest.raises(BilinError, match="no such directory"):
        atomic_write(tmp_path / "nodir" / "x", lambda fh: None)


def test_table_output_to_file(cli, ckpt, tmp_path):
    code, _, _ = cli("info", ckpt, "-o", tmp_path / "info.txt")
    assert code == 0
    text = (tmp_path / "info.txt").read_text()
    assert "image classifier" in text and "\x1b[" not in text  # no colour codes in files


def test_info_json_is_pipeable(cli, ckpt):
    code, out, err = cli("info", ckpt, "--format", "json")
    assert code == 0 and json.loads(out)["n_layers"] == 1

"""Hostile merge parts, deep pickles, npy 3.0, huge declared sizes: one line, nothing lost."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
MNIST = ROOT / "sample_checkpoints" / "mnist"


def one_error(code: int, err: str) -> None:
    assert code == 1, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err


@pytest.fixture
def parts(tmp_path, cli):
    out = []
    for i in (1, 2):
        target = tmp_path / f"p{i}"
        code, _, err = cli("eig", MNIST, "--class", "all", "--top", "3", "--json", "--shard",
                           f"{i}/2", "-o", target)
        assert code == 0, err
        out.append(target)
    return out


def _edit(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _set(key, value):
    def change(doc):
        doc[key] = value
    return change


@pytest.mark.parametrize("change, field", [
    (_set("shard", [1, 2]), "shard"),
    (_set("items", 7), "items"),
    (_set("shards", 10**12), "shards"),
    (_set("shards", 2**70), "shards"),
    (lambda d: d["items"].__setitem__(0, {}), "items[0]"),
    (lambda d: d["items"][0]["doc"].__setitem__("eigenvalues", ["a", "b", "c"]),
     "eigenvalues"),
])
def test_a_bad_part_is_one_line_naming_the_field(parts, cli, change, field):
    _edit(parts[0], change)
    code, out, err = cli("merge", *parts)
    one_error(code, err)
    assert "p1" in err and field.split("[")[0] in err, err


@pytest.mark.parametrize("dtype", [None, "evil"])
def test_a_spectrum_part_without_a_sane_dtype_is_one_line(tmp_path, cli, dtype):
    targets = []
    for i in (1, 2):
        targets.append(tmp_path / f"s{i}")
        code, _, err = cli("spectrum", MNIST, "--shard", f"{i}/2", "-o", targets[-1])
        assert code == 0, err
    text = targets[0].read_text()
    assert '"_dtype"' in text
    doc = json.loads(text)
    head = doc["head"] if "head" in doc and "_dtype" in doc["head"] else doc
    if dtype is None:
        head.pop("_dtype")
    else:
        head["_dtype"] = dtype
    targets[0].write_text(json.dumps(doc))
    code, out, err = cli("merge", *targets)
    one_error(code, err)
    assert "_dtype" in err and "s1" in err


def test_good_parts_still_merge(parts, cli):
    code, out, err = cli("merge", *parts, "--json")
    assert code == 0, err
    assert len([line for line in out.splitlines() if line.strip()]) == 10


def test_a_deeply_nested_pickle_is_one_line(tmp_path, cli):
    torch = pytest.importorskip("torch")
    nested: dict = {"w": torch.zeros(2, 2)}
    for _ in range(20_000):
        nested = {"x": nested}
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        torch.save(nested, tmp_path / "deep.pt")
    finally:
        sys.setrecursionlimit(limit)
    code, out, err = cli("info", tmp_path / "deep.pt")
    one_error(code, err)
    assert "nested" in err


def test_a_version_3_npy_direction_is_read(tmp_path, cli):
    u = np.zeros(10)
    u[3] = 1.0
    with open(tmp_path / "u.npy", "wb") as fh:
        np.lib.format.write_array(fh, u, version=(3, 0))
    code, out, err = cli("eig", MNIST, "--direction", tmp_path / "u.npy", "--top", "3", "--json")
    assert code == 0, err
    by_class = cli("eig", MNIST, "--class", "3", "--top", "3", "--json")[1]
    assert json.loads(out)["eigenvalues"] == json.loads(by_class)["eigenvalues"]


def test_hosvd_takes_any_finite_memory_limit(cli):
    code, out, err = cli("hosvd", MNIST, "--components", "2", "--top", "1", "--max-memory",
                         "1e308", "--json")
    assert code == 0, err
    assert len(json.loads(out)["components"]) == 2


def test_a_sparse_terabyte_checkpoint_is_refused_before_reading(tmp_path, cli):
    header = json.dumps({"w": {"dtype": "F32", "shape": [2**20, 2**20],
                               "data_offsets": [0, 4 * 2**40]}}).encode()
    path = tmp_path / "huge.safetensors"
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
        fh.truncate(8 + len(header) + 4 * 2**40)  # sparse: no disk used
    for command in ("info", "eig"):
        code, out, err = cli(command, path, *(["--class", "0"] if command == "eig" else []))
        one_error(code, err)

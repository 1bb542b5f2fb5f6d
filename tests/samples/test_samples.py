"""The shipped sample checkpoints: they load, bilin runs on them, and their READMEs are true."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

SAMPLES = Path(__file__).resolve().parents[2] / "sample_checkpoints"
IMAGE = {"mnist": 0.975, "fmnist": 0.85, "mnist-bias": 0.975}  # minimum accuracy per issue


def numpy_logits(t: dict, x: np.ndarray) -> np.ndarray:
    """The image classifier written out independently: embed -> (Wx+b)(Vx+b) -> head."""
    h = x @ t["embed.weight"].T.astype(np.float64)
    z = h @ t["blocks.0.weight"].T.astype(np.float64)
    if "blocks.0.bias" in t:
        z = z + t["blocks.0.bias"]
    left, right = np.split(z, 2, axis=1)
    return (left * right) @ t["head.weight"].T.astype(np.float64)


@pytest.mark.parametrize("name", ["mnist", "fmnist", "mnist-bias", "toy", "shakespeare",
                                  "shakespeare-bilinear"])
def test_sample_loads_and_decomposes(cli, name):
    path = SAMPLES / name
    code, out, err = cli("info", path, "--json")
    assert code == 0, err
    info = json.loads(out)
    direction = ["--token", "1"] if info["outputs"]["kind"] == "vocabulary" else ["--class", "1"]
    code, out, err = cli("eig", path, *direction, "--top", "5", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert len(doc["eigenvalues"]) == min(5, info["layers"][-1]["d"])
    assert doc["effective_rank"] >= 1
    assert (path / "README.md").is_file()


@pytest.mark.parametrize("name", sorted(IMAGE))
def test_image_accuracy_matches_readme(cli, name):
    cfg = json.loads((SAMPLES / name / "config.json").read_text())
    data = np.load(SAMPLES / name / cfg["test_split"])
    x = data["x"].reshape(len(data["x"]), -1) / 255.0
    acc = float(np.mean(numpy_logits(load_file(SAMPLES / name / "model.safetensors"), x).argmax(1)
                        == data["y"]))
    assert len(data["y"]) == 10_000
    assert acc >= IMAGE[name]
    assert acc == pytest.approx(cfg["test_accuracy"], abs=1e-4)
    assert f"{100 * acc:.2f}%" in (SAMPLES / name / "README.md").read_text()
    code, out, err = cli("eval", SAMPLES / name, "--json")  # the shipped split by default
    assert code == 0, err
    assert json.loads(out)["accuracy"] == pytest.approx(acc, abs=1e-4)


@pytest.mark.parametrize("name", sorted(IMAGE))
def test_readme_truncation_claim(cli, name):
    text = (SAMPLES / name / "README.md").read_text()
    k = int(re.search(r"within 1 percentage point of the full model at \*\*K = (\d+)\*\*", text)[1])
    code, out, err = cli("truncate", SAMPLES / name, "--sweep", f"{k - 1},{k}", "--json")
    assert code == 0, err
    rows = {r["k"]: r for r in json.loads(out)["sweep"]}
    assert rows[k]["drop"] < 0.01 <= rows[k - 1]["drop"]


def test_toy_sample_computes_its_truth_table(cli):
    from bilin_cli.storage.containers import open_checkpoint
    from bilin_cli.storage.layouts import recognise

    model = recognise(open_checkpoint(SAMPLES / "toy"))
    cfg = json.loads((SAMPLES / "toy" / "config.json").read_text())
    x = np.array([[(i >> b) & 1 for b in range(4)] for i in range(16)], dtype=np.float64)
    y = model.forward(x, np.float64)
    for o, name in enumerate(cfg["outputs"]):
        op, pair = name.split("(")
        i, j = (int(t) for t in pair.rstrip(")").split(","))
        truth = x[:, i] * x[:, j] if op == "AND" else (x[:, i] + x[:, j]) % 2
        assert np.all((y[:, o] > 0.5) == (truth > 0.5)), name

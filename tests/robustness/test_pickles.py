"""Pickled config objects beside a state dict are read without running the file's code; a
pickle that needs code is refused in one line that never advises weights_only=False."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")


@dataclasses.dataclass
class TrainConfig:
    d: int = 4
    lr: float = 0.01
    name: str = "toy-run"


class Tracker:
    def __init__(self):
        self.steps = 10


class Payload:
    def __reduce__(self):
        return (os.system, ("echo PWNED > /dev/null",))


def _toy_state(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"left.weight": torch.randn(6, 4, generator=g),
            "right.weight": torch.randn(6, 4, generator=g),
            "head.weight": torch.randn(3, 6, generator=g)}


def test_a_config_dataclass_beside_the_state_dict_is_read_inertly(tmp_path, cli):
    sd = _toy_state()
    import argparse

    torch.save({"config": TrainConfig(), "tracker": Tracker(), "model": sd,
                "args": argparse.Namespace(lr=0.1)}, tmp_path / "ck.pt")
    torch.save(sd, tmp_path / "plain.pt")
    code, out, err = cli("info", tmp_path / "ck.pt", "--json")
    assert code == 0 and err == "", err
    doc = json.loads(out)
    assert doc["layout"] == "toy model"
    assert "TrainConfig" in doc["extras"]["config"] and "toy-run" in doc["extras"]["config"]
    assert "lr=0.1" in doc["extras"]["args"]
    a = cli("eig", tmp_path / "ck.pt", "--class", "1", "--json")
    b = cli("eig", tmp_path / "plain.pt", "--class", "1", "--json")
    assert a[0] == 0 and json.loads(a[1])["eigenvalues"] == json.loads(b[1])["eigenvalues"]


@pytest.mark.parametrize("what", ["payload", "list"])
def test_unsafe_or_wrong_pickles_are_one_line_without_unsafe_advice(tmp_path, cli, what):
    obj = {"w": Payload()} if what == "payload" else [np.zeros(3).tolist()]
    torch.save(obj, tmp_path / "bad.pt")
    for command in (["info"], ["eig", "--class", "0"]):
        code, out, err = cli(command[0], tmp_path / "bad.pt", *command[1:])
        assert code == 1 and err.startswith("error: ") and err.count("\n") == 1, err
        assert "weights_only" not in err and "False" not in err and "\x1b" not in err
    if what == "payload":
        assert "posix.system" in err and "runs no code" in err
    else:
        assert "list" in err

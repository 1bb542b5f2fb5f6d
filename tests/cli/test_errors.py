"""Every error a user can cause: one ``error:`` line on stderr, exit 1, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import write_image, write_transformer


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("err")
    write_image(root / "img")
    write_transformer(root / "lm")
    np.save(root / "u3.npy", np.ones(3))
    np.save(root / "u2d.npy", np.ones((2, 5)))
    (root / "notes.txt").write_text("just text, not weights\n")
    (root / "fake.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    good = (root / "img" / "model.safetensors").read_bytes()
    (root / "trunc").mkdir()
    (root / "trunc" / "model.safetensors").write_bytes(good[: len(good) - 100])
    (root / "empty").mkdir()
    (root / "bad.pt").write_bytes(b"PK\x03\x04 this is not a torch zip")
    import torch

    torch.save({"w": torch.zeros(2), "epoch": 3}, root / "mixed.pt")

    import argparse

    # An arbitrary (non-tensor) object: weights_only=True must refuse to unpickle it.
    torch.save({"obj": argparse.Namespace(cmd="rm -rf")}, root / "evil.pt")
    (root / "badmap.json").write_text("{not json")
    return root


CASES = [
    ("missing file", ["eig", "{r}/nope.safetensors", "--class", "1"], "no such file"),
    ("not a checkpoint", ["info", "{r}/notes.txt"], "not a checkpoint"),
    ("garbage safetensors", ["info", "{r}/fake.safetensors"], "not a valid safetensors"),
    ("truncated safetensors", ["eig", "{r}/trunc", "--class", "0"], "truncated"),
    ("empty directory", ["info", "{r}/empty"], "no weights found"),
    ("corrupt .pt", ["info", "{r}/bad.pt"], "cannot be read"),
    ("unrecognised .pt", ["eig", "{r}/mixed.pt", "--class", "0"], "no known bilinear layout"),
    ("pickled object", ["info", "{r}/evil.pt"], "holds no tensors"),
    ("class out of range", ["eig", "{r}/img", "--class", "5"], "class 5 is out of range"),
    ("negative class", ["eig", "{r}/img", "--class", "-1"], "out of range"),
    ("token out of range", ["eig", "{r}/lm", "--token", "99"], "token 99 is out of range"),
    ("token on classifier", ["eig", "{r}/img", "--token", "1"], "--class"),
    ("class on LM", ["eig", "{r}/lm", "--class", "1"], "--token"),
    ("direction wrong length", ["eig", "{r}/img", "--direction", "{r}/u3.npy"],
     "needs a vector of 5"),
    ("direction not 1-D", ["eig", "{r}/img", "--direction", "{r}/u2d.npy"], "shape (2, 5)"),
    ("direction missing", ["eig", "{r}/img", "--direction", "{r}/none.npy"],
     "no such direction"),
    ("layer out of range", ["eig", "{r}/lm", "--layer", "3", "--token", "1"],
     "layer 3 is out of range"),
    ("top not positive", ["eig", "{r}/img", "--class", "1", "--top", "0"],
     "--top must be a positive"),
    ("input basis on LM", ["eig", "{r}/lm", "--token", "1", "--basis", "input"], "--basis input"),
    ("bad map", ["info", "{r}/img", "--map", "{r}/badmap.json"], "not valid JSON"),
    ("existing output", ["eig", "{r}/img", "--class", "1", "--json", "-o", "{r}/notes.txt"],
     "already exists"),
]


@pytest.mark.parametrize("name,args,message", CASES, ids=[c[0] for c in CASES])
def test_user_error_is_one_line(cli, ckpts, name, args, message):
    code, out, err = cli(*(a.format(r=ckpts) for a in args))
    assert code == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert "Traceback" not in err and out == ""


@pytest.mark.parametrize("args", [
    ["eig", "{r}/img"],  # no direction
    ["eig", "{r}/img", "--class", "1", "--token", "2"],  # two directions
    ["eig", "{r}/img", "--class", "one"],  # not an int
    ["eig", "{r}/img", "--class", "1", "--format", "xml"],
    ["eig", "{r}/img", "--class", "1", "--format", "npz"],  # npz without -o
    ["eig", "{r}/img", "--class", "1", "--json", "--format", "csv"],
    ["frobnicate"],
])
def test_usage_errors_exit_2(cli, ckpts, args):
    code, out, err = cli(*(a.format(r=ckpts) for a in args))
    assert code == 2, err
    assert "Traceback" not in err


def test_errors_through_the_installed_entry_point(ckpts):
    """The real process: exit code, one line, no traceback (not just the in-process runner)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bilin_cli", "eig", str(ckpts / "img"), "--class", "9"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: class 9 is out of range: this model has 5 classes (0..4)"]
    assert proc.stdout == ""
    ok = subprocess.run([sys.executable, "-m", "bilin_cli", "--version"],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("bilin ")


def test_json_goes_to_stdout_only(cli, ckpts):
    code, out, err = cli("eig", ckpts / "img", "--class", "1", "--json")
    assert code == 0 and err == ""
    json.loads(out)


def test_pt_without_torch_says_how_to_install(ckpts):
    """A .pt state dict on a machine without torch: one clear line, not an ImportError."""
    script = (
        "import sys\n"
        "sys.modules['torch'] = None  # make `import torch` fail as if it were not installed\n"
        "from bilin_cli.cli.app import main\n"
        f"sys.argv = ['bilin', 'info', {str(ckpts / 'mixed.pt')!r}]\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "bilin[torch]" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1

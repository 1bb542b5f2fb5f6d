"""Outputs and names: no output replaces an input, a failed write leaves the old output and
nothing else, and every name from a file is escaped before it reaches a terminal or a file.

Each test runs the real command (in-process, through the ``cli`` fixture of
tests/conftest.py, or as a subprocess where the real stdout matters) on copies of the
shipped samples in ``tmp_path``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bilin_cli.storage import atomic

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_checkpoints"
ESC_NAME = "\x1b[31mred"
SURROGATE_NAME = "\ud800x"
ESCAPED = {ESC_NAME: "\\x1b[31mred", SURROGATE_NAME: "\\ud800x"}


# ---- helpers ----------------------------------------------------------------------------

def _copy(sample: str, dest: Path, readme: bool = False) -> Path:
    """A copy of a shipped sample (model.safetensors + config.json; README.md if asked)."""
    dest.mkdir(parents=True)
    for name in ("model.safetensors", "config.json") + (("README.md",) if readme else ()):
        shutil.copy(SAMPLES / sample / name, dest / name)
    return dest


def _digest(path: Path) -> dict[str, str]:
    """Every file under ``path`` (or ``path`` itself) by relative name -> sha256."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files}


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _temps(folder: Path) -> list[str]:
    return [n for n in _tree(folder) if Path(n).name.startswith(".")]


def _refused(result, says: str = "") -> str:
    """Exit 1, exactly one ``error:`` line on stderr and nothing else, no traceback."""
    code, out, err = result
    assert code == 1, (code, out, err)
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err and out == ""
    assert says in err, err
    return err


def _is_an_input(result, target) -> str:
    err = _refused(result, "an input of this command")
    assert err.startswith(f"error: -o {target} ") and "choose another output" in err, err
    return err


# ---- 1. the input is never the output ---------------------------------------------------

@pytest.mark.parametrize("given", ["folder", "file"])
def test_eig_onto_its_checkpoint_file_is_refused(tmp_path, cli, given):
    ck = _copy("mnist", tmp_path / "ck")
    before = _digest(ck)
    weights = ck / "model.safetensors"
    source = ck if given == "folder" else weights
    err = _is_an_input(cli("eig", source, "--class", "0", "--format", "npz", "-o", weights,
                           "--force"), weights)
    assert "model.safetensors" in err.split("(")[-1]
    assert _digest(ck) == before and _tree(tmp_path) == ["ck", "ck/config.json",
                                                         "ck/model.safetensors"]


def test_an_input_spelled_otherwise_is_still_an_input(tmp_path, cli, monkeypatch):
    ck = _copy("mnist", tmp_path / "ck")
    before = _digest(ck)
    monkeypatch.chdir(tmp_path)
    _is_an_input(cli("eig", "ck", "--class", "0", "--json", "-o", "ck/../ck/config.json",
                     "--force"), "ck/../ck/config.json")
    os.link(ck / "config.json", tmp_path / "hard.json")  # the same file by another name
    _is_an_input(cli("eig", "ck", "--class", "0", "--json", "-o", "hard.json", "--force"),
                 "hard.json")
    assert _digest(ck) == before


def test_truncate_onto_its_own_folder_is_refused(tmp_path, cli):
    ck = _copy("mnist", tmp_path / "ck")  # only the files bilin writes: --force would swap
    before = _digest(ck)
    _is_an_input(cli("truncate", ck, "--rank", "3", "-o", ck, "--force"), ck)
    assert (ck / "config.json").is_file() and _digest(ck) == before
    assert _temps(tmp_path) == []
    # A folder bilin wrote itself, read and then named as the output.
    k3 = tmp_path / "k3"
    assert cli("truncate", ck, "--rank", "3", "-o", k3)[0] == 0
    before = _digest(k3)
    _is_an_input(cli("truncate", k3, "--rank", "2", "-o", k3, "--force"), k3)
    _is_an_input(cli("truncate", k3 / "model.safetensors", "--rank", "2", "-o",
                     k3 / "model.safetensors", "--force"), k3 / "model.safetensors")
    assert _digest(k3) == before and _temps(tmp_path) == []


def test_output_through_a_symlink_to_the_input_is_refused(tmp_path, cli):
    ck = _copy("mnist", tmp_path / "ck")
    before = _digest(ck)
    link = tmp_path / "link.safetensors"
    link.symlink_to(ck / "model.safetensors")
    _is_an_input(cli("eig", ck, "--class", "0", "--format", "npz", "-o", link, "--force"), link)
    assert link.is_symlink() and _digest(ck) == before
    # The input read through a link, the output named by the real path.
    alias = tmp_path / "alias"
    alias.symlink_to(ck, target_is_directory=True)
    _is_an_input(cli("truncate", alias, "--rank", "3", "-o", ck, "--force"), ck)
    assert _digest(ck) == before and _temps(tmp_path) == []


def test_output_folder_holding_the_input_is_refused(tmp_path, cli):
    k3 = tmp_path / "k3"
    assert cli("truncate", SAMPLES / "mnist", "--rank", "3", "-o", k3)[0] == 0
    before = _digest(k3)
    # The input is a file inside k3, so k3 itself looks like a checkpoint --force replaces.
    err = _refused(cli("truncate", k3 / "model.safetensors", "--rank", "2", "-o", k3,
                       "--force"), "holds an input of this command")
    assert err.startswith(f"error: -o {k3} ")
    assert _digest(k3) == before and _temps(tmp_path) == []


def test_output_inside_an_input_folder_is_refused(tmp_path, cli):
    ck = _copy("toy", tmp_path / "ck")
    before = _digest(ck)
    _refused(cli("eig", ck, "--class", "0", "--json", "-o", ck / "eig.json"),
             "is inside an input of this command")
    _refused(cli("report", ck, "--classes", "0", "--top", "1", "-o", ck / "report"),
             "is inside an input of this command")
    assert _digest(ck) == before and _tree(ck) == ["config.json", "model.safetensors"]


def test_a_data_file_is_an_input(tmp_path, cli):
    data = tmp_path / "test.npz"
    shutil.copy(SAMPLES / "data" / "mnist-test.npz", data)
    before = _digest(data)
    _is_an_input(cli("eval", SAMPLES / "mnist", "--data", data, "--json", "-o", data,
                     "--force"), data)
    assert _digest(data) == before


def test_the_inputs_of_one_run_do_not_bind_the_next(tmp_path, cli):
    """The registry belongs to one command: in-process, a later run may write there."""
    ck = _copy("toy", tmp_path / "ck")
    assert cli("info", ck)[0] == 0
    out = ck / "eig.json"
    code, _, err = cli("eig", SAMPLES / "toy", "--class", "0", "--json", "-o", out)
    assert code == 0, err
    assert json.loads(out.read_text())["eigenvalues"]


# ---- 2. a failed write leaves the old output and nothing else ----------------------------

def _report(cli, target: Path, *extra) -> None:
    code, _, err = cli("report", SAMPLES / "toy", "--classes", "0", "--top", "1", "-o",
                       target, *extra)
    assert code == 0, err


def _read_only(monkeypatch, folder: Path) -> None:
    """``folder`` as a user who may not delete its files sees it (root ignores modes)."""
    real = os.access

    def access(path, mode, *args, **kwargs):
        if os.path.abspath(path) == str(folder) and mode & os.W_OK:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "access", access)


@pytest.mark.parametrize("command", ["report", "truncate"])
def test_force_into_a_read_only_folder_leaves_the_old_output_only(tmp_path, cli, monkeypatch,
                                                                  command):
    target = tmp_path / "out"
    if command == "report":
        _report(cli, target)
        args = ["report", SAMPLES / "toy", "--classes", "1", "-o", target, "--force"]
    else:
        assert cli("truncate", SAMPLES / "toy", "--rank", "1", "-o", target)[0] == 0
        args = ["truncate", SAMPLES / "toy", "--rank", "2", "-o", target, "--force"]
    before = _digest(target)
    _read_only(monkeypatch, target)
    _refused(cli(*args), "read-only")
    assert _digest(target) == before and _temps(tmp_path) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root may delete files in a read-only folder")
@pytest.mark.parametrize("command", ["report", "truncate"])
def test_force_into_a_really_read_only_folder(tmp_path, cli, command):
    target = tmp_path / "out"
    if command == "report":
        _report(cli, target)
        args = ["report", SAMPLES / "toy", "--classes", "1", "-o", target, "--force"]
    else:
        assert cli("truncate", SAMPLES / "toy", "--rank", "1", "-o", target)[0] == 0
        args = ["truncate", SAMPLES / "toy", "--rank", "2", "-o", target, "--force"]
    before = _digest(target)
    target.chmod(0o555)
    try:
        _refused(cli(*args))
        assert _digest(target) == before and _temps(tmp_path) == []
    finally:
        target.chmod(0o755)


@pytest.mark.parametrize("command", ["report", "truncate"])
def test_a_swap_that_fails_half_way_puts_the_old_output_back(tmp_path, cli, monkeypatch,
                                                             command):
    """Without renameat2 a folder is replaced by two renames; the second one fails."""
    target = tmp_path / "out"
    if command == "report":
        _report(cli, target)
        args = ["report", SAMPLES / "toy", "--classes", "1", "-o", target, "--force"]
    else:
        assert cli("truncate", SAMPLES / "toy", "--rank", "1", "-o", target)[0] == 0
        args = ["truncate", SAMPLES / "toy", "--rank", "2", "-o", target, "--force"]
    before = _digest(target)
    monkeypatch.setattr(atomic, "_renameat2_fn", False)
    real = os.rename

    def rename(src, dst, *a, **k):
        if Path(dst) == target and Path(src).name.endswith(".tmp"):
            raise OSError(30, "Read-only file system", str(dst))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(atomic.os, "rename", rename)
    _refused(cli(*args), "cannot replace")
    assert _digest(target) == before and _temps(tmp_path) == []


def test_report_force_refuses_a_folder_with_a_user_file(tmp_path, cli):
    target = tmp_path / "rep"
    _report(cli, target)
    (target / "notes.txt").write_text("mine")
    before = _digest(target)
    _refused(cli("report", SAMPLES / "toy", "--classes", "1", "-o", target, "--force"),
             "notes.txt")
    assert _digest(target) == before and _temps(tmp_path) == []


def test_report_force_refuses_a_page_name_that_is_a_user_folder(tmp_path, cli):
    target = tmp_path / "rep"
    _report(cli, target)
    (target / "class-0.html").unlink()
    (target / "class-0.html").mkdir()
    (target / "class-0.html" / "thesis.tex").write_text("years of work")
    before = _digest(target)
    _refused(cli("report", SAMPLES / "toy", "--classes", "0", "-o", target, "--force"),
             "class-0.html")
    assert _digest(target) == before and _temps(tmp_path) == []


@pytest.mark.parametrize("files", [["about.html"], ["class-0.html", "report.css"]])
def test_report_force_refuses_a_folder_that_is_not_a_report(tmp_path, cli, files):
    """Page names alone do not make a report: it has its index.html."""
    target = tmp_path / "site"
    target.mkdir()
    for name in files:
        (target / name).write_text(f"my {name}")
    _refused(cli("report", SAMPLES / "toy", "--classes", "0", "-o", target, "--force"))
    assert all((target / n).read_text() == f"my {n}" for n in files)
    assert _tree(tmp_path) == ["site", *(f"site/{n}" for n in sorted(files))]


def test_checkpoint_force_refuses_a_weights_name_that_is_a_user_folder(tmp_path, cli):
    target = tmp_path / "out"
    (target / "model.safetensors").mkdir(parents=True)
    (target / "model.safetensors" / "data.bin").write_bytes(b"mine")
    _refused(cli("truncate", SAMPLES / "toy", "--rank", "1", "-o", target, "--force"),
             "model.safetensors")
    assert (target / "model.safetensors" / "data.bin").read_bytes() == b"mine"
    assert _temps(tmp_path) == []


# ---- 3. names ---------------------------------------------------------------------------

def _named(tmp_path: Path, sample: str, name: str) -> Path:
    """A copy of ``sample`` whose first class / output is called ``name``."""
    ck = _copy(sample, tmp_path / sample)
    config = json.loads((ck / "config.json").read_text())
    key = "classes" if "classes" in config else "outputs"
    config[key][0] = name
    (ck / "config.json").write_text(json.dumps(config))  # "\ud800" stays an escape: legal
    return ck


def _holds(doc, name: str) -> bool:
    if isinstance(doc, str):
        return name in doc
    if isinstance(doc, dict):
        return any(_holds(v, name) for v in doc.values())
    if isinstance(doc, list):
        return any(_holds(v, name) for v in doc)
    return False


NAMED = [(s, n) for s in ("mnist", "toy") for n in (ESC_NAME, SURROGATE_NAME)]


@pytest.mark.parametrize("sample, name", NAMED)
@pytest.mark.parametrize("command", [["info"], ["eig", "--class", "0"], ["spectrum"]])
def test_hostile_class_names_are_escaped_on_the_terminal(tmp_path, cli, sample, name,
                                                         command):
    ck = _named(tmp_path, sample, name)
    code, out, err = cli(command[0], ck, *command[1:])
    assert code == 0, err
    assert ESCAPED[name] in out and name not in out and "\x1b" not in out + err
    out.encode("utf-8")  # strict: no lone surrogate left


@pytest.mark.parametrize("sample, name", NAMED)
@pytest.mark.parametrize("command", [["info"], ["eig", "--class", "0"], ["spectrum"]])
def test_hostile_class_names_make_valid_json(tmp_path, cli, sample, name, command):
    ck = _named(tmp_path, sample, name)
    code, out, err = cli(command[0], ck, *command[1:], "--json")
    assert code == 0, err
    assert "\x1b" not in out and out.isascii()  # escaped as JSON escapes
    assert _holds(json.loads(out), name)  # and they read back as the name


@pytest.mark.parametrize("name", [ESC_NAME, SURROGATE_NAME])
def test_hostile_class_names_in_a_report(tmp_path, cli, name):
    ck = _named(tmp_path, "toy", name)
    code, out, err = cli("report", ck, "--classes", "0,1", "--top", "1", "-o", tmp_path / "r")
    assert code == 0, err
    assert out == f"{tmp_path / 'r' / 'index.html'}\n"
    for page in ("index.html", "class-0.html", "class-1.html"):
        raw = (tmp_path / "r" / page).read_bytes()
        text = raw.decode("utf-8")  # strict: valid UTF-8
        assert "\x1b" not in text and ESCAPED[name] in text
    code, out, err = cli("report", ck, "--classes", "0", "--top", "1", "-o", tmp_path / "j",
                         "--json")
    assert code == 0, err
    assert json.loads(out)["index"] == str(tmp_path / "j" / "index.html")


def test_a_surrogate_name_on_the_real_stdout(tmp_path):
    """The console script's own stdout (strict UTF-8), not a test's capture."""
    ck = _named(tmp_path, "toy", SURROGATE_NAME)
    for args in (["info", ck], ["spectrum", ck, "--json"]):
        proc = subprocess.run([sys.executable, "-m", "bilin_cli", *map(str, args)],
                              capture_output=True, cwd=tmp_path, timeout=120)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        assert b"Traceback" not in proc.stderr and b"\\ud800x" in proc.stdout
        if "--json" in args:
            assert _holds(json.loads(proc.stdout), SURROGATE_NAME)


def test_output_paths_are_escaped_in_wrote_lines(tmp_path, cli):
    out = tmp_path / "k\x1b[31m"
    code, stdout, err = cli("truncate", SAMPLES / "toy", "--rank", "1", "-o", out)
    assert code == 0, err
    assert "\x1b" not in stdout + err
    assert f"wrote {tmp_path}/k\\x1b[31m (" in err
    rep = tmp_path / "r\x1b[31m"
    code, stdout, err = cli("report", SAMPLES / "toy", "--classes", "0", "--top", "1",
                            "-o", rep)
    assert code == 0, err
    assert stdout == f"{tmp_path}/r\\x1b[31m/index.html\n" and "\x1b" not in err


def test_truncate_says_wrote_once_on_stderr(tmp_path, cli):
    code, out, err = cli("truncate", SAMPLES / "toy", "--rank", "1", "-o", tmp_path / "k1")
    assert code == 0, err
    said = [line for line in (out + err).splitlines() if line.lstrip().startswith("wrote")]
    assert said == [f"wrote {tmp_path / 'k1'} (12 hidden units)"], said
    assert said[0] in err.splitlines()

"""Faults: signals at any moment, racing writers, the umask, and terminal-safe errors.

The signal tests run the real console script (or ``python -m bilin_cli``) as a subprocess
on a shipped sample checkpoint. "Right after start" is the first moment bilin's handlers
are in place (read from /proc/PID/status), "during work" and "during a write" are made
exact by a small driver that pauses the run inside ``numpy.linalg.eigh`` or ``os.fsync``
(fault injection at a seam; the code under test is the real one) and says so with a
marker file.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from bilin_cli.core import interrupts
from bilin_cli.core.errors import BilinError
from bilin_cli.storage import atomic, writing

ROOT = Path(__file__).resolve().parents[2]
MNIST = ROOT / "sample_checkpoints" / "mnist"
SCRIPT = Path(sys.executable).with_name("bilin")
BILIN = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "bilin_cli"]
HAS_PROC = Path("/proc/self/status").exists()

# Runs bilin through its real entry point, pausing inside HOOK (``eigh``: the computation;
# ``fsync``: a write, after the data went to the temporary file) after touching MARK, until
# the file GO exists (or for a minute).
DRIVER = textwrap.dedent("""
    import os, sys, time
    from bilin_cli.cli import entry
    entry.install()
    hook, mark = os.environ["BILIN_TEST_HOOK"], os.environ["BILIN_TEST_MARK"]
    go = os.environ.get("BILIN_TEST_GO", "")

    def pausing(real):
        def wrapper(*args, **kwargs):
            open(mark, "w").close()
            deadline = time.monotonic() + 60
            while not os.path.exists(go) and time.monotonic() < deadline:
                time.sleep(0.01)
            return real(*args, **kwargs)
        return wrapper

    if hook == "eigh":
        import numpy.linalg
        numpy.linalg.eigh = pausing(numpy.linalg.eigh)
    else:
        os.fsync = pausing(os.fsync)
    sys.argv = ["bilin", *sys.argv[1:]]
    entry.main()
""")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"bilin ended (code {proc.returncode}) before the moment: {err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the moment never came")
        time.sleep(0.002)


def _handlers_installed(pid: int) -> bool:
    """Whether the process catches SIGTERM: bilin's handlers are in place."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(next(line for line in text.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
    return bool(caught >> (signal.SIGTERM - 1) & 1)


def _assert_interrupted(proc: subprocess.Popen, folder: Path, expected: list[str]) -> None:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err == "error: interrupted\n"
    assert "Traceback" not in out + err
    assert _leftovers(folder) == expected


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc to see when the handlers are in place")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_right_after_start_up(tmp_path, sig):
    """The first moment the handlers exist: the slow imports (numpy, typer) are still ahead."""
    proc = subprocess.Popen([*BILIN, "truncate", MNIST, "--rank", "10", "-o", "out.safetensors"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: _handlers_installed(proc.pid), proc)
    proc.send_signal(sig)
    _assert_interrupted(proc, tmp_path, [])


def _driven(tmp_path: Path, hook: str, *args, go: Path | None = None, tag: str = ""
            ) -> tuple[subprocess.Popen, Path, Path]:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    mark = tmp_path / f"mark{tag}"
    env = {**os.environ, "BILIN_TEST_HOOK": hook, "BILIN_TEST_MARK": str(mark),
           "BILIN_TEST_GO": str(go or "")}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, *map(str, args)], cwd=out, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, out, mark


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_computation(tmp_path, sig):
    proc, out, mark = _driven(tmp_path, "eigh", "eig", MNIST, "--class", "3", "--json",
                              "-o", "eig.json")
    _wait_for(mark.exists, proc)
    proc.send_signal(sig)
    _assert_interrupted(proc, out, [])


@pytest.mark.parametrize("sig, args", [
    (signal.SIGTERM, ["truncate", MNIST, "--rank", "10", "-o", "small.safetensors"]),
    (signal.SIGINT, ["truncate", MNIST, "--rank", "10", "-o", "small"]),  # a directory
    (signal.SIGTERM, ["eig", MNIST, "--class", "3", "--json", "-o", "eig.json"]),
])
def test_signal_during_a_write_leaves_nothing(tmp_path, sig, args):
    """Data written to the temporary file, not yet published: no temporary, no target."""
    proc, out, mark = _driven(tmp_path, "fsync", *args)
    _wait_for(mark.exists, proc)
    assert any(name.endswith(".tmp") for name in _leftovers(out))  # it was mid-write
    proc.send_signal(sig)
    _assert_interrupted(proc, out, [])


def test_signal_during_a_write_keeps_the_old_file(tmp_path):
    """With --force, an interrupted write leaves the previous output as it was."""
    proc, out, mark = _driven(tmp_path, "fsync", "eig", MNIST, "--class", "3", "--json",
                              "-o", "eig.json", "--force")
    (out / "eig.json").write_text("old\n")
    _wait_for(mark.exists, proc)
    proc.send_signal(signal.SIGTERM)
    _assert_interrupted(proc, out, ["eig.json"])
    assert (out / "eig.json").read_text() == "old\n"


def test_python_m_entry_point_handles_signals(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "bilin_cli", "truncate", MNIST, "--rank", "10",
                             "-o", "out.safetensors"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if HAS_PROC:
        _wait_for(lambda: _handlers_installed(proc.pid), proc)
    else:
        time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _assert_interrupted(proc, tmp_path, [])


# ---- the machinery in-process ---------------------------------------------------------------

@pytest.fixture
def handlers():
    assert interrupts.install()
    try:
        yield
    finally:
        interrupts.uninstall()


def test_interrupt_inside_a_writer_removes_the_temporary_file(tmp_path, handlers):
    def write(fh):
        fh.write(b"partial")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises out of here
        fh.write(b"never")

    with pytest.raises(interrupts.Interrupted):
        atomic.atomic_write(tmp_path / "x.bin", write)
    assert _leftovers(tmp_path) == []


def test_deferred_holds_a_signal_until_the_block_ends(handlers):
    reached = []
    with pytest.raises(interrupts.Interrupted):
        with interrupts.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
            reached.append("end of block")
            os.kill(os.getpid(), signal.SIGTERM)  # a second signal changes nothing
            time.sleep(0.01)
            reached.append("still running")
    assert reached == ["end of block", "still running"]


def test_a_swallowed_interrupt_still_stops_publishing(tmp_path, handlers):
    def write(fh):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except BaseException:  # some library's overly broad except
            pass
        fh.write(b"data")

    with pytest.raises(interrupts.Interrupted):
        atomic.atomic_write(tmp_path / "x.bin", write)
    assert _leftovers(tmp_path) == []


def test_main_reports_an_interrupt_in_process(cli, monkeypatch):
    from bilin_cli.cli import app

    def interrupted(**kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    monkeypatch.setattr(app, "app", interrupted)
    code, out, err = cli("eig", MNIST)
    assert (code, err) == (130, "error: interrupted\n")
    assert signal.getsignal(signal.SIGTERM) is not interrupts._handler  # put back afterwards


# ---- racing writers -------------------------------------------------------------------------

def _race(n: int, work) -> list:
    """Run ``work(i)`` in n threads at once; each result is a value or the exception."""
    results: list = [None] * n

    def run(i):
        try:
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _one_winner(results: list) -> int:
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == len(results) - 1, results
    for exc in errors:
        assert isinstance(exc, BilinError) and "already exists; pass force=True" in str(exc)
    return next(i for i, r in enumerate(results) if not isinstance(r, BaseException))


def _file_race(target: Path, n: int = 3) -> None:
    barrier = threading.Barrier(n)
    payloads = [bytes([i]) * 300_000 for i in range(n)]

    def write(fh, i):
        fh.write(payloads[i][:1000])
        barrier.wait()  # all have passed the existence check and hold a temporary file
        fh.write(payloads[i][1000:])

    results = _race(n, lambda i: atomic.atomic_write(target, lambda fh: write(fh, i)))
    assert target.read_bytes() == payloads[_one_winner(results)]


@pytest.mark.parametrize("fallback", ["link", "no hard links", "no hard links, no renameat2"])
def test_racing_file_writers_one_wins_whole(tmp_path, monkeypatch, fallback):
    if fallback != "link":
        def no_link(src, dst):
            raise OSError(errno.EPERM, "Operation not permitted")
        monkeypatch.setattr(atomic.os, "link", no_link)
    if fallback.endswith("no renameat2"):
        monkeypatch.setattr(atomic, "_renameat2_fn", False)
    for round_ in range(5):
        _file_race(tmp_path / f"out{round_}.bin")
    assert _leftovers(tmp_path) == [f"out{r}.bin" for r in range(5)]


@pytest.mark.parametrize("renameat2", [True, False])
def test_racing_directory_writers_one_wins_whole(tmp_path, monkeypatch, renameat2):
    if not renameat2:
        monkeypatch.setattr(atomic, "_renameat2_fn", False)
    target = tmp_path / "ckpt"
    barrier = threading.Barrier(2)
    real_save = writing.save

    def save(tensors, metadata=None):
        barrier.wait()  # both have passed the existence check
        return real_save(tensors, metadata)

    monkeypatch.setattr(writing, "save", save)
    results = _race(2, lambda i: writing.save_checkpoint(
        target, {"w": np.full((50, 50), i, np.float32)}, {"writer": i}))
    winner = _one_winner(results)
    assert json.loads((target / "config.json").read_text()) == {"writer": winner}
    assert (load_file(str(target / "model.safetensors"))["w"] == winner).all()
    assert _leftovers(tmp_path) == ["ckpt"]


@pytest.mark.parametrize("renameat2", [True, False])
def test_an_empty_directory_that_appears_late_is_not_replaced(tmp_path, monkeypatch, renameat2):
    """rename(2) would silently replace it: the publish must refuse instead."""
    if not renameat2:
        monkeypatch.setattr(atomic, "_renameat2_fn", False)
    target = tmp_path / "ckpt"
    real_save = writing.save

    def save(tensors, metadata=None):
        target.mkdir()  # another process claims the name after our check
        return real_save(tensors, metadata)

    monkeypatch.setattr(writing, "save", save)
    with pytest.raises(BilinError, match="already exists; pass force=True"):
        writing.save_checkpoint(target, {"w": np.ones(3, np.float32)}, {})
    assert _leftovers(tmp_path) == ["ckpt"] and _leftovers(target) == []


@pytest.mark.parametrize("renameat2", [True, False])
def test_force_replaces_only_a_checkpoint_directory(tmp_path, monkeypatch, renameat2):
    if not renameat2:
        monkeypatch.setattr(atomic, "_renameat2_fn", False)
    target = tmp_path / "ckpt"
    writing.save_checkpoint(target, {"w": np.zeros(3, np.float32)}, {"v": 1})
    writing.save_checkpoint(target, {"w": np.ones(3, np.float32)}, {"v": 2}, force=True)
    assert json.loads((target / "config.json").read_text()) == {"v": 2}
    assert (load_file(str(target / "model.safetensors"))["w"] == 1).all()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(BilinError, match="bilin did not write"):
        writing.save_checkpoint(target, {"w": np.ones(3, np.float32)}, {"v": 3}, force=True)
    assert sorted(_leftovers(target)) == ["config.json", "model.safetensors", "notes.txt"]
    assert _leftovers(tmp_path) == ["ckpt"]


def test_two_bilin_processes_racing_for_one_output(tmp_path):
    """Both pass the existence check and hold a finished temporary file, then both publish."""
    go = tmp_path / "go"
    args = ["eig", MNIST, "--class", "3", "--json", "-o", "out.json"]
    runs = [_driven(tmp_path, "fsync", *args, go=go, tag=str(i)) for i in range(2)]
    for proc, _, mark in runs:
        _wait_for(mark.exists, proc)
    go.touch()
    results = sorted((proc.wait(timeout=60), proc.communicate()[1]) for proc, _, _ in runs)
    assert [code for code, _ in results] == [0, 1]
    assert results[0][1] == "wrote out.json\n"
    assert results[1][1] == "error: out.json already exists; pass --force to overwrite it\n"
    out = runs[0][1]
    assert _leftovers(out) == ["out.json"]
    assert json.loads((out / "out.json").read_text())  # complete and readable


# ---- permissions -----------------------------------------------------------------------------

def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o027])
def test_outputs_follow_the_umask_in_process(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic.atomic_write(tmp_path / "a.bin", lambda fh: fh.write(b"x"))
        writing.save_checkpoint(tmp_path / "ckpt", {"w": np.ones(2, np.float32)}, {})
        writing.save_checkpoint(tmp_path / "c.safetensors", {"w": np.ones(2, np.float32)}, {})
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.bin") == 0o666 & ~umask
    assert _mode(tmp_path / "c.safetensors") == 0o666 & ~umask
    assert _mode(tmp_path / "ckpt") == 0o777 & ~umask
    for name in ("model.safetensors", "config.json"):
        assert _mode(tmp_path / "ckpt" / name) == 0o666 & ~umask


@pytest.mark.parametrize("umask, args, outputs", [
    (0o027, ["truncate", MNIST, "--rank", "5", "-o", "ckpt"], ["ckpt"]),
    (0o002, ["eig", MNIST, "--class", "3", "--json", "-o", "eig.json"], ["eig.json"]),
])
def test_outputs_follow_the_umask_of_the_bilin_process(tmp_path, umask, args, outputs):
    proc = subprocess.run([*BILIN, *map(str, args)], cwd=tmp_path, capture_output=True,
                          text=True, preexec_fn=lambda: os.umask(umask), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert _leftovers(tmp_path) == outputs
    for name in outputs:
        path = tmp_path / name
        assert _mode(path) == (0o777 if path.is_dir() else 0o666) & ~umask
        for inner in path.iterdir() if path.is_dir() else []:
            assert _mode(inner) == 0o666 & ~umask


# ---- error messages --------------------------------------------------------------------------

def test_error_messages_are_terminal_safe_and_bounded(cli, tmp_path):
    code, out, err = cli("eig", tmp_path / "no\x1b[2Jsuch\x07", "--class", "3")
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1
    assert "\x1b" not in err and "\x07" not in err and "\\x1b[2J" in err
    code, out, err = cli("eig", tmp_path / ("n" * 200) / ("m" * 200) / ("o" * 200) / ("p" * 200) / "q", "--class", "3")
    assert code == 1 and err.count("\n") == 1 and len(err) <= len("error: ") + 1001


def test_main_still_turns_user_errors_into_one_line(cli, tmp_path):
    (tmp_path / "out.json").write_text("{}")
    code, out, err = cli("eig", MNIST, "--class", "3", "--json", "-o", tmp_path / "out.json")
    assert code == 1
    assert err == f"error: {tmp_path / 'out.json'} already exists; pass --force to overwrite it\n"

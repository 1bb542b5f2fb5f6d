"""Replay of the atheris fuzz harnesses' inputs: every crash they ever found, every seed.

``tests/robustness/fuzz/`` holds one harness per target (``fuzz_<target>.py``: the loader
on safetensors files, on PyTorch files, every JSON document bilin reads, the CLI), its
seed corpus (``corpus/<target>/``) and the minimized reproducer of every crash found
(``crashes/<target>-<short-name>``, described in ``crashes/README.md``). Each input goes
through the harness' own ``one_input``, without atheris, so the contract it checks is the
same: success or ``BilinError`` (for the CLI: exit 0, 1 or 2, at most one ``error:`` line,
exactly one on exit 1, no traceback), Python warnings raised as errors. A reproducer fails
here until the bug it found is fixed; none is marked xfail.

Memory is bounded while an input runs (the address space, as the fuzzers ran with), so a
regression that allocates without bound fails with MemoryError instead of taking the
machine down; and time too: an input still running after :data:`DEADLINE` seconds fails
(the fuzzers' own limit was 20 s; every seed takes well under one).
"""

from __future__ import annotations

import importlib
import resource
import signal
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent / "fuzz"
TARGETS = ("safetensors", "torch_zip", "json_docs", "cli")
HEADROOM = 3 * 1024**3  # bytes of address space an input may add to what pytest holds
DEADLINE = 4.0  # seconds one input may take


class ReplayTimeout(BaseException):
    """An input ran past DEADLINE (a BaseException, so no ``except Exception`` in bilin
    turns it into a BilinError and lets a hang pass)."""

if str(FUZZ) not in sys.path:
    sys.path.insert(0, str(FUZZ))


def _cases():
    for target in TARGETS:
        for path in sorted((FUZZ / "corpus" / target).iterdir()):
            if path.is_file():
                yield pytest.param(target, path, id=f"corpus/{target}/{path.name}")
    for path in sorted((FUZZ / "crashes").iterdir()):
        if path.is_file() and path.name != "README.md":
            target = path.name.split("-", 1)[0]
            yield pytest.param(target, path, id=f"crashes/{path.name}")


def test_every_input_belongs_to_a_target():
    for path in (FUZZ / "crashes").iterdir():
        if path.name != "README.md":
            assert path.name.split("-", 1)[0] in TARGETS, path.name
    for folder in (FUZZ / "corpus").iterdir():
        assert folder.name in TARGETS, folder.name


@pytest.fixture(scope="module", autouse=True)
def built_fixtures():
    """The harnesses' fixed checkpoints, written once, outside any input's deadline."""
    importlib.import_module("fuzz_common").fixtures()


def _vm_size() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


@pytest.fixture
def bounded_memory():
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    try:
        limit = _vm_size() + HEADROOM
    except OSError:  # no /proc: run unbounded
        yield
        return
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft != resource.RLIM_INFINITY:
        limit = min(limit, soft)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture
def deadline():
    def expire(signum, frame):
        raise ReplayTimeout(f"still running after {DEADLINE} s: a hang")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, DEADLINE)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("target, path", list(_cases()))
def test_replay(target, path, bounded_memory, deadline):
    harness = importlib.import_module(f"fuzz_{target}")
    harness.one_input(path.read_bytes())

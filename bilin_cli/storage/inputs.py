"""What the running command reads, so that no output ever replaces one of its inputs.

The storage openers (checkpoints: the file or folder and every file read from it;
data files and idx folders; SAE folders; map files) call :func:`register_input` with
what they open. Every writer (:func:`bilin_cli.storage.atomic.check_writable` and so
:func:`~bilin_cli.storage.atomic.atomic_write`, the checkpoint and report folder
writers) calls :func:`check_output` on its target before it writes: a target that *is*
an input, *holds* one (a folder above it) or *is inside* an input folder is refused,
with or without ``--force``, as one error line. Files are compared by identity
(``st_dev``/``st_ino``, symbolic links followed, every folder above resolved), never by
spelling: ``ck/./model.safetensors``, a symbolic link to it and a hard link all count.

The registry is process-wide and belongs to one command run: the CLI opens it with
:func:`command_run` around each command (a worker thread of that command shares it), and
it starts empty with the next command. Outside a command (the Python API called
directly) nothing is recorded and nothing is checked.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bilin_cli.core.errors import BilinError
from bilin_cli.core.printable import printable


@dataclass(frozen=True)
class _Input:
    shown: str  # as the opener was given it
    ident: tuple[int, int]
    is_dir: bool
    above: frozenset[tuple[int, int]]  # identities of every folder that holds it


_lock = threading.Lock()
_owner: object | None = None  # the token of the command run these belong to
_inputs: list[_Input] = []


@contextmanager
def command_run() -> Iterator[None]:
    """One command's run: what it opens is recorded until the block ends."""
    global _owner, _inputs
    token = object()
    with _lock:
        _owner, _inputs = token, []
    try:
        yield
    finally:
        with _lock:
            if _owner is token:
                _owner, _inputs = None, []


def _bucket() -> list[_Input] | None:
    """The running command's inputs (its worker threads share them), or None when no
    command is running. Call with ``_lock`` held."""
    return _inputs if _owner is not None else None


def _ident(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _folders_above(path: str | os.PathLike) -> list[tuple[str, tuple[int, int]]]:
    """(path, identity) of every existing folder above ``path``, symlinks resolved."""
    out = []
    try:
        real = os.path.realpath(path)
    except (OSError, ValueError):  # a NUL in the name: nothing there to protect
        return out
    for parent in Path(real).parents:
        try:
            out.append((str(parent), _ident(os.stat(parent))))
        except OSError:
            continue
    return out


def register_input(path: str | os.PathLike) -> None:
    """Record that the running command reads ``path`` (a file or a folder)."""
    try:
        with _lock:
            bucket = _bucket()
            if bucket is None:
                return
        st = os.stat(path)  # follows symbolic links: the file itself is what counts
        item = _Input(str(path), _ident(st), os.path.isdir(path),
                      frozenset(i for _, i in _folders_above(path)))
    except (OSError, ValueError):  # unreadable: the opener says so in its own words
        return
    with _lock:
        if _bucket() is bucket and all(x.ident != item.ident for x in bucket):
            bucket.append(item)


def registered() -> list[str]:
    """The inputs of the running command, as their openers were given them."""
    with _lock:
        bucket = _bucket()
        return [x.shown for x in bucket] if bucket else []


def _refuse(target: str | os.PathLike, how: str, item: _Input, option: str) -> BilinError:
    return BilinError(f"{option} {printable(target, limit=None)} {how} an input of this "
                      f"command ({printable(item.shown, limit=None)}); choose another output")


def check_output(target: str | os.PathLike, option: str = "-o") -> None:
    """Refuse ``target`` if it is, holds or is inside an input of the running command."""
    with _lock:
        bucket = _bucket()
        items = list(bucket) if bucket else []
    if not items:
        return
    try:
        st = os.stat(target)
    except (OSError, ValueError):
        st = None
    if st is not None:
        ident = _ident(st)
        for item in items:
            if item.ident == ident:
                raise _refuse(target, "is", item, option)
        if os.path.isdir(target):
            for item in items:
                if ident in item.above:
                    raise _refuse(target, "holds", item, option)
    folders = {item.ident: item for item in items if item.is_dir}
    if folders:
        for _, ident in _folders_above(target):
            if ident in folders:
                raise _refuse(target, "is inside", folders[ident], option)

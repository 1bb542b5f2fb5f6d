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

The registry is process-wide and belongs to one command run: it is tied to the root
click context of the command that is running (a worker thread of that command shares
it), and starts empty with the next command. Outside a command (the Python API called
directly) nothing is recorded and nothing is checked.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

from bilin_cli.errors import BilinError
from bilin_cli.render.printable import printable


@dataclass(frozen=True)
class _Input:
    shown: str  # as the opener was given it
    ident: tuple[int, int]
    is_dir: bool
    above: frozenset[tuple[int, int]]  # identities of every folder that holds it


_lock = threading.Lock()
_owner: weakref.ref | None = None  # the root click context of the command these belong to
_owner_thread: int | None = None
_inputs: list[_Input] = []


def _root_context():
    """The root context of the click command running in this thread, or None."""
    for name in ("typer._click.globals", "click.globals"):
        mod = sys.modules.get(name)  # not imported: no command can be running
        if mod is None:
            continue
        try:
            ctx = mod.get_current_context(silent=True)
        except Exception:  # noqa: BLE001 - a foreign click: no context to tie to
            ctx = None
        if ctx is not None:
            return ctx.find_root()
    return None


def _bucket() -> list[_Input] | None:
    """The running command's inputs (a new, empty list for a new command), or None when
    no command is running. Call with ``_lock`` held."""
    global _owner, _owner_thread, _inputs
    root = _root_context()
    if root is not None:
        if _owner is None or _owner() is not root:
            try:
                _owner = weakref.ref(root)
            except TypeError:  # a context that takes no weak reference
                return None
            _owner_thread, _inputs = threading.get_ident(), []
        return _inputs
    # No command in this thread: a worker thread of a running command shares its list.
    if _owner is not None and _owner() is not None and threading.get_ident() != _owner_thread:
        return _inputs
    return None


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

"""Writing checkpoints that bilin (and PyTorch users) read back: atomically, never half-done.

``-o NAME.safetensors`` writes one file with the config embedded in the safetensors
metadata (key ``bilin_config``); any other ``-o DIR`` writes a Hugging Face style
directory (``model.safetensors`` + ``config.json``).

A directory is built under a temporary name beside the target and published with
``renameat2(RENAME_NOREPLACE)`` (or, where that is missing, an exclusive ``mkdir`` of the
name followed by a rename over that empty claim): plain ``rename(2)`` would silently
replace an empty directory another process had just created. ``--force`` replaces an
existing directory only if it is a checkpoint bilin wrote (a regular ``model.safetensors``,
perhaps a ``config.json``, nothing else) and this process may delete its files, so a
mistyped ``-o`` cannot wipe a folder of other work and a failed replacement leaves the
old checkpoint and nothing else. No target that is, holds or is inside an input of the
running command is ever written (:mod:`bilin_cli.storage.inputs`).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
from safetensors.numpy import save

from bilin_cli.core.errors import BilinError, option
from bilin_cli.core.interrupts import check, deferred
from bilin_cli.core.printable import printable
from bilin_cli.storage.atomic import (
    atomic_write,
    check_removable,
    check_writable,
    create_temp,
    exists_error,
    named_folder,
    publish,
    remove_temp,
    swap_directory,
    write_new,
)
from bilin_cli.storage.inputs import check_output

CHECKPOINT_FILES = ("model.safetensors", "config.json")


def _check_replaceable(p: Path) -> None:
    """Refuse to replace anything but a directory of the files bilin writes."""
    if p.is_symlink():
        raise BilinError(f"{p} is a symbolic link; remove it or give another name")
    if not p.is_dir():
        raise BilinError(f"{p} is a file; give a directory name or NAME.safetensors")
    names = os.listdir(p)
    # By name and kind: a directory called model.safetensors is someone's folder.
    others = sorted(n for n in names if n not in CHECKPOINT_FILES or not _regular(p / n))
    if others:
        shown = ", ".join(printable(n, limit=60) for n in others[:3])
        more = f" and {len(others) - 3} more" if len(others) > 3 else ""
        raise BilinError(f"{p} holds files bilin did not write ({shown}{more}); "
                         f"{option('--force', 'force=True')} only replaces a checkpoint directory: "
                         f"remove them or "
                         "give another name")
    if names and "model.safetensors" not in names:
        raise BilinError(f"{p} is not a checkpoint bilin wrote (no model.safetensors); "
                         f"{option('--force', 'force=True')} only replaces a checkpoint directory: "
                         f"give another name")
    check_removable(p)


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def check_checkpoint_target(path: str | os.PathLike, force: bool) -> Path:
    """Fail early (before any work) if :func:`save_checkpoint` could not write ``path``."""
    p = Path(path)
    if p.suffix == ".safetensors":
        return check_writable(p, force)
    p = named_folder(p)
    check_output(p)
    if os.path.lexists(p):
        if not force:
            raise exists_error(p)
        _check_replaceable(p)
    if not p.parent.exists():
        raise BilinError(f"{p.parent}: no such directory")
    return p


def _replace_directory(tmp: Path, p: Path) -> None:
    """Swap the finished ``tmp`` in for the existing checkpoint directory ``p``."""
    _check_replaceable(p)
    swap_directory(tmp, p)


def save_checkpoint(
    path: str | os.PathLike, tensors: dict[str, np.ndarray], config: dict, force: bool = False
) -> Path:
    p = Path(path)
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    if p.suffix == ".safetensors":
        blob = save(tensors, metadata={"bilin_config": json.dumps(config)})
        return atomic_write(p, lambda fh: fh.write(blob), force)
    check_checkpoint_target(p, force)
    model = save(tensors)
    conf = (json.dumps(config, indent=2) + "\n").encode("utf-8")
    tmp = None
    try:
        with deferred():
            tmp, _ = create_temp(p, directory=True)
        write_new(tmp / "model.safetensors", model)
        write_new(tmp / "config.json", conf)
        with deferred():
            check()
            try:
                publish(tmp, p, directory=True)
            except BilinError:
                if not force:
                    raise
                _replace_directory(tmp, p)
            tmp = None
    except BaseException:
        with deferred():
            remove_temp(tmp)
        raise
    return p

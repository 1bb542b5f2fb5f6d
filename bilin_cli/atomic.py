"""Atomic file output: write to a temporary file beside the target, then rename.

A failure or Ctrl-C never leaves a half-written file, and an existing file is
only replaced when the caller says ``force``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from bilin_cli.errors import BilinError


def check_writable(path: str | os.PathLike, force: bool) -> Path:
    """Fail early (before any work) if ``path`` exists without ``force`` or has no folder."""
    p = Path(path)
    if p.exists() and not force:
        raise BilinError(f"{p} already exists; pass --force to overwrite it")
    if p.is_dir():
        raise BilinError(f"{p} is a directory; give a file name")
    if not p.parent.exists():
        raise BilinError(f"{p.parent}: no such directory")
    return p


def atomic_write(
    path: str | os.PathLike, write: Callable[[IO[bytes]], None], force: bool = False
) -> Path:
    """Call ``write(fh)`` on a temporary file, then rename it onto ``path``."""
    p = check_writable(path, force)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        # Includes KeyboardInterrupt: the target is untouched and no temp file remains.
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return p

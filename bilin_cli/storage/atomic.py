"""Atomic file output: write a temporary file beside the target, then publish it whole.

A failure, Ctrl-C or SIGTERM never leaves a half-written file or a temporary one, and an
existing file is only replaced when the caller says ``force``: even when another process
creates the target while this one works, because publishing is ``link(2)`` (or
``renameat2(RENAME_NOREPLACE)``), which fails if the name is taken, not a check followed by
a rename. Outputs get the permissions the umask gives any new file (temporary files are
created 0666 & ~umask, not mkstemp's 0600), so collaborators on shared storage can read
them.
"""

from __future__ import annotations

import errno
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

from bilin_cli.core.errors import BilinError, option
from bilin_cli.core.interrupts import check, deferred
from bilin_cli.core.printable import printable
from bilin_cli.storage.inputs import check_output

# link(2) errors that mean "this file system has no hard links", not "the name is taken".
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV,
                  errno.EMLINK}
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_renameat2_fn: object = None  # the libc function once looked up; False where there is none


def exists_error(path: str | os.PathLike) -> BilinError:
    return BilinError(f"{path} already exists; pass {option('--force', 'force=True')} to overwrite "
                      f"it")


def check_writable(path: str | os.PathLike, force: bool) -> Path:
    """Fail early (before any work) if ``path`` exists without ``force`` or has no folder,
    or (whatever ``force`` says) is, holds or is inside an input of the running command
    (checked again when the file is written: inputs opened later count then)."""
    p = Path(path)
    check_output(p)
    if os.path.lexists(p) and not force:
        raise exists_error(p)
    if p.is_dir():
        raise BilinError(f"{p} is a directory; give a file name")
    if not p.parent.exists():
        raise BilinError(f"{p.parent}: no such directory")
    return p


def named_folder(path: str | os.PathLike) -> Path:
    """``path`` as a folder bilin may write: it must have a name of its own (not ``.``,
    ``..`` or empty), since the folder is built beside it and then moved into place."""
    p = Path(path)
    if p.name in ("", ".", "..") or os.fspath(path) in ("", ".", ".."):
        raise BilinError(f"-o {printable(os.fspath(path) or repr(''), limit=None)}: give the "
                         "output folder a name of its own (it is built beside that name and "
                         "then moved into place)")
    return p


def temp_name(target: Path, kind: str = "tmp") -> Path:
    """A hidden name beside ``target``: ``.NAME.RANDOM.tmp`` (NAME cut so it stays legal)."""
    if target.name in ("", ".", ".."):
        target = Path(os.path.abspath(target))
    return target.with_name(f".{target.name[:64]}.{secrets.token_hex(4)}.{kind}")


def create_temp(target: Path, directory: bool = False) -> tuple[Path, int | None]:
    """Create a new temporary file (open for writing: its fd) or directory beside ``target``.

    The mode is 0666 / 0777 as for any new file, so the umask (and a default ACL) decides
    the permissions the published output will have. Call it under :func:`deferred` and
    keep the name in the same block, so an interrupt cannot strand the file.
    """
    for _ in range(100):
        tmp = temp_name(target)
        try:
            if directory:
                os.mkdir(tmp, 0o777)
                return tmp, None
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:  # a read-only folder, a full disk: name the output, not tmp
            raise BilinError(f"cannot write {printable(target, limit=None)} "
                             f"({exc.strerror or exc})") from None
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(target.parent))


def remove_temp(tmp: Path | None) -> None:
    """Remove a temporary file or directory; missing is fine (best effort, never raises)."""
    if tmp is None:
        return
    import shutil

    try:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    except OSError:
        pass


def _renameat2():
    global _renameat2_fn
    if _renameat2_fn is None:
        _renameat2_fn = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                fn = ctypes.CDLL(None, use_errno=True).renameat2
            except (OSError, AttributeError):  # no such libc function (old glibc, musl)
                pass
            else:
                fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                               ctypes.c_uint]
                fn.restype = ctypes.c_int
                _renameat2_fn = fn
    return _renameat2_fn


def renameat2(src: str | os.PathLike, dst: str | os.PathLike, flags: int) -> bool:
    """``renameat2(2)`` with ``flags``; False where the system or file system lacks it.

    Raises :class:`OSError` for every other failure (``FileExistsError`` when
    ``RENAME_NOREPLACE`` finds ``dst`` taken).
    """
    fn = _renameat2()
    if not fn:
        return False
    import ctypes

    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(src), None, str(dst))


def _publish_noreplace(tmp: Path, target: Path, directory: bool) -> None:
    try:
        if renameat2(tmp, target, RENAME_NOREPLACE):
            return
    except FileExistsError:
        raise exists_error(target) from None
    # No renameat2 here: claim the name with an exclusive create, then rename over our own
    # (empty) claim. Other writers see the name taken from the first step on.
    try:
        if directory:
            os.mkdir(target, 0o700)
        else:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        raise exists_error(target) from None
    try:
        os.replace(tmp, target)
    except BaseException:
        (os.rmdir if directory else os.unlink)(target)
        raise


def write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, which must not exist yet (inside a fresh temporary
    folder), and flush it to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def check_removable(p: Path) -> None:
    """Refuse to replace the folder ``p`` whose files this process could not delete (a
    read-only folder): the swap would succeed and strand the old files under a temporary
    name. (Root may delete anyway; an immutable folder then fails the swap itself.) An
    empty folder needs no such right."""
    if not os.access(p, os.W_OK | os.X_OK) and os.listdir(p):
        raise BilinError(f"{printable(p, limit=None)} is read-only: bilin cannot replace it; "
                         "make it writable or give another name")


def _remove_tree(path: Path) -> None:
    """Remove a folder bilin wrote (regular files only), making it (never the folder that
    holds it) writable if need be."""
    import shutil
    import stat

    top = os.path.abspath(path)

    def retry(func, name, _exc):
        folder = os.path.dirname(os.path.abspath(name))
        if folder != top and not folder.startswith(top + os.sep):
            return
        try:
            os.chmod(folder, stat.S_IRWXU)
            func(name)
        except OSError:
            pass

    try:
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=retry)
        else:
            shutil.rmtree(path, onerror=retry)
    except OSError:
        pass


def swap_directory(tmp: Path, p: Path) -> None:
    """Put the finished folder ``tmp`` in place of the existing folder ``p`` (the caller has
    checked that ``p`` may be replaced): atomically where the kernel can exchange the two,
    else by two renames that put ``p`` back if the second fails; the old folder is removed.

    A failure leaves ``p`` as it was (the caller removes ``tmp``)."""
    check_removable(p)
    try:
        if renameat2(tmp, p, RENAME_EXCHANGE):  # atomic: p is never missing
            old = tmp
        else:
            old = temp_name(p, "old")
            os.rename(p, old)
            try:
                os.rename(tmp, p)
            except BaseException:
                os.rename(old, p)
                raise
    except OSError as exc:
        raise BilinError(f"cannot replace {printable(p, limit=None)} "
                         f"({exc.strerror or exc})") from None
    _remove_tree(old)


def publish(tmp: Path, target: Path, force: bool = False, directory: bool = False) -> None:
    """Put the finished ``tmp`` in place as ``target``; without ``force``, never over another.

    Raises :class:`BilinError` (``already exists``) if ``target`` exists, however late it
    appeared. A directory is only published where nothing exists (``force`` is the
    caller's business there, see :func:`bilin_cli.storage.writing.save_checkpoint`). Call it under
    :func:`deferred`.
    """
    if directory:
        _publish_noreplace(tmp, target, directory=True)
        return
    if force:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise exists_error(target) from None
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        _publish_noreplace(tmp, target, directory=False)
        return
    os.unlink(tmp)


def atomic_write(
    path: str | os.PathLike, write: Callable[[IO[bytes]], None], force: bool = False
) -> Path:
    """Call ``write(fh)`` on a temporary file, then publish it as ``path``.

    Without ``force`` an existing ``path`` is an error, checked first and again at the
    moment of publishing. On any exception, SIGINT and SIGTERM included, the temporary
    file is removed and ``path`` is left as it was.
    """
    p = check_writable(path, force)
    tmp = fh = None
    try:
        with deferred():
            tmp, fd = create_temp(p)
            fh = os.fdopen(fd, "wb")
        with fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        with deferred():
            check()
            publish(tmp, p, force)
            tmp = None
    except BaseException:
        with deferred():
            if fh is not None:
                try:
                    fh.close()
                except OSError:
                    pass
            remove_temp(tmp)
        raise
    return p

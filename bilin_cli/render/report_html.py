"""Writing ``bilin report``'s static site: ``index.html``, one page per direction,
``plotly.min.js`` (once, loaded by every page with a relative ``<script src>``) and
``report.css``. Opens from disk: no server, no network, no external link.

The folder is built under a temporary name beside the target and published whole
(:mod:`bilin_cli.storage.atomic`); an existing non-empty target is refused without
``--force``, and ``--force`` replaces only a report folder (an ``index.html``, pages and
assets by their names, all regular files, nothing else) that this process may delete:
a failed write leaves the old report and nothing else. A target that is, holds or is
inside an input of the command is refused (:mod:`bilin_cli.storage.inputs`). Pages go
through :func:`~bilin_cli.core.printable.file_text`: no terminal escape, no lone
surrogate (which UTF-8 cannot encode) reaches a file.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from bilin_cli.analyses.report import Report
from bilin_cli.core.errors import BilinError
from bilin_cli.core.interrupts import check, deferred
from bilin_cli.core.printable import file_text, printable
from bilin_cli.render import report_pages as pages
from bilin_cli.storage.atomic import (
    check_removable,
    create_temp,
    exists_error,
    named_folder,
    publish,
    remove_temp,
    swap_directory,
    write_new,
)
from bilin_cli.storage.inputs import check_output

ASSETS = ("plotly.min.js", "report.css")
_PAGE_NAME = re.compile(r"(index|(class|token|feature)-\d+)\.html")


def _report_file(folder: Path, name: str) -> bool:
    """A file bilin report writes: by its name, and a regular file (a folder or a link
    named class-3.html is someone else's)."""
    if name not in ASSETS and _PAGE_NAME.fullmatch(name) is None:
        return False
    try:
        return stat.S_ISREG(os.lstat(folder / name).st_mode)
    except OSError:
        return False


def _check_replaceable(p: Path) -> None:
    """``--force`` replaces a folder of report files only, never other work."""
    names = os.listdir(p)
    others = sorted(n for n in names if not _report_file(p, n))
    if others:
        shown = ", ".join(printable(n, limit=60) for n in others[:3])
        more = f" and {len(others) - 3} more" if len(others) > 3 else ""
        raise BilinError(f"{p} holds files bilin report did not write ({shown}{more}); "
                         "--force only replaces a report folder: give another name")
    if names and "index.html" not in names:
        raise BilinError(f"{p} is not a report bilin wrote (no index.html); --force only "
                         "replaces a report folder: give another name")
    check_removable(p)


def check_target(path: str | os.PathLike, force: bool) -> Path:
    """Fail early (before any work) if the report could not be written to ``path``."""
    p = named_folder(path)
    check_output(p)
    shown = printable(p, limit=None)
    if p.is_symlink():
        raise BilinError(f"{shown} is a symbolic link; remove it or give another name")
    if os.path.lexists(p):
        if not p.is_dir():
            raise BilinError(f"{shown} is a file; give a folder name for the report")
        if os.listdir(p):
            if not force:
                raise BilinError(f"{shown} already exists and is not empty; pass --force to "
                                 "replace it")
            _check_replaceable(p)
    if not p.parent.exists():
        raise BilinError(f"{printable(p.parent, limit=None)}: no such directory")
    return p


def _replace(tmp: Path, p: Path) -> None:
    """Swap the finished ``tmp`` in for the existing folder ``p`` (checked replaceable)."""
    if not p.is_dir() or p.is_symlink():
        raise exists_error(p)
    _check_replaceable(p)
    swap_directory(tmp, p)


def render(report: Report) -> dict[str, str]:
    """Every page of the report as ``{file name: HTML}`` (assets not included)."""
    out = {"index.html": pages.index_page(report)}
    for i, page in enumerate(report.pages):
        out[f"{page.key}.html"] = pages.direction_page(report, i)
    return out


def _write(path: Path, text: str) -> None:
    write_new(path, file_text(text).encode("utf-8"))


def write_report(report: Report, target: str | os.PathLike, force: bool = False,
                 advance=None) -> Path:
    """Write the site to the folder ``target`` atomically; returns its ``index.html``."""
    from plotly.offline import get_plotlyjs

    p = check_target(target, force)
    tmp = None
    try:
        with deferred():
            tmp, _ = create_temp(p, directory=True)
        write_new(tmp / "plotly.min.js", get_plotlyjs().encode("utf-8"))
        _write(tmp / "report.css", pages.CSS)
        _write(tmp / "index.html", pages.index_page(report))
        for i, page in enumerate(report.pages):
            _write(tmp / f"{page.key}.html", pages.direction_page(report, i))
            if advance:
                advance()
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        with deferred():
            check()
            try:
                publish(tmp, p, directory=True)
            except BilinError:
                if os.listdir(p) and not force:
                    raise
                _replace(tmp, p)
            tmp = None
    except BaseException:
        with deferred():
            remove_temp(tmp)
        raise
    return p / "index.html"

"""Writing ``bilin report``'s static site: ``index.html``, one page per direction,
``plotly.min.js`` (once, loaded by every page with a relative ``<script src>``) and
``report.css``. Opens from disk: no server, no network, no external link.

The folder is built under a temporary name beside the target and published whole
(:mod:`bilin_cli.storage.atomic`); an existing non-empty target is refused without
``--force``, and ``--force`` replaces only a folder that holds nothing but report files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from bilin_cli.cli.entry import check, deferred
from bilin_cli.errors import BilinError
from bilin_cli.render import report_pages as pages
from bilin_cli.render.printable import printable
from bilin_cli.report import Report
from bilin_cli.storage.atomic import (
    create_temp,
    exists_error,
    publish,
    remove_temp,
    swap_directory,
    write_new,
)

ASSETS = ("plotly.min.js", "report.css")
_PAGE_NAME = re.compile(r"[a-z]+(-\d+)?\.html")


def _report_file(name: str) -> bool:
    return name in ASSETS or _PAGE_NAME.fullmatch(name) is not None


def _check_replaceable(p: Path) -> None:
    """``--force`` replaces a folder of report files only, never other work."""
    others = sorted(n for n in os.listdir(p) if not _report_file(n))
    if others:
        shown = ", ".join(printable(n, limit=60) for n in others[:3])
        more = f" and {len(others) - 3} more" if len(others) > 3 else ""
        raise BilinError(f"{p} holds files bilin report did not write ({shown}{more}); "
                         "--force only replaces a report folder: give another name")


def check_target(path: str | os.PathLike, force: bool) -> Path:
    """Fail early (before any work) if the report could not be written to ``path``."""
    p = Path(path)
    if p.is_symlink():
        raise BilinError(f"{p} is a symbolic link; remove it or give another name")
    if os.path.lexists(p):
        if not p.is_dir():
            raise BilinError(f"{p} is a file; give a folder name for the report")
        if os.listdir(p):
            if not force:
                raise BilinError(f"{p} already exists and is not empty; pass --force to "
                                 "replace it")
            _check_replaceable(p)
    if not p.parent.exists():
        raise BilinError(f"{p.parent}: no such directory")
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
    write_new(path, text.encode("utf-8"))


def write_report(report: Report, target: str | os.PathLike, force: bool = False,
                 advance=None) -> Path:
    """Write the site to the folder ``target`` atomically; returns its ``index.html``."""
    from plotly.offline import get_plotlyjs

    p = check_target(target, force)
    tmp = None
    try:
        with deferred():
            tmp, _ = create_temp(p, directory=True)
        _write(tmp / "plotly.min.js", get_plotlyjs())
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

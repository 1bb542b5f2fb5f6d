"""Saving a matplotlib figure in the format its file name asks for (``.png``, ``.pdf``, ``.svg``).

Shared by every command that draws (``--plot``, ``--images``, ...): the format comes from
the extension, an unknown extension is a one-line error (check it with
:func:`figure_format` before any work is done), and the file is written atomically
through :func:`bilin_cli.storage.atomic.atomic_write` (no half-written figure, no overwrite
without ``force``).
"""

from __future__ import annotations

import io
from pathlib import Path

from bilin_cli.core.errors import BilinError
from bilin_cli.core.printable import printable
from bilin_cli.storage.atomic import atomic_write

FIGURE_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}
PNG_DPI = 120


def figure_format(path: str | Path) -> str:
    """The matplotlib format for ``path`` from its extension (case-insensitive), or a
    :class:`BilinError` naming the extensions that work."""
    ext = Path(path).suffix.lower()
    if ext not in FIGURE_FORMATS:
        known = ", ".join(FIGURE_FORMATS)
        what = f"extension {printable(ext, 20)!s}" if ext else "no extension"
        raise BilinError(f"{printable(path)}: {what}; a figure is written as one of {known}")
    return FIGURE_FORMATS[ext]


def save_figure(fig, path: str | Path, force: bool) -> Path:
    """Render ``fig`` in the format ``path`` names, close it, and write it atomically.

    Saved under the shared style's rc (:func:`bilin_cli.render.style.matplotlib_rc`):
    text stays text in vector formats (TrueType fonts in PDF, ``<text>`` in SVG). A
    spinner on stderr (a terminal only) says what is being rendered meanwhile."""
    from bilin_cli.render.progress import status
    from bilin_cli.render.style import matplotlib_rc, pyplot

    fmt = figure_format(path)
    buf = io.BytesIO()
    plt = pyplot()
    try:
        with status(f"rendering {printable(Path(path).name, 80)} ({fmt})"), \
                plt.rc_context(matplotlib_rc()):
            fig.savefig(buf, format=fmt, dpi=PNG_DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return atomic_write(path, lambda fh: fh.write(buf.getvalue()), force)

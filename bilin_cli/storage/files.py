"""Opening files a user names, defensively: regular files only, bounded JSON.

Every reader in bilin goes through :func:`regular_file` before it opens anything, so
a FIFO, a device or a directory given where a file is expected is one error line
instead of a hang, and through :func:`read_json` for JSON, so a deeply nested,
huge or wrongly typed document is one error line instead of a ``RecursionError``.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from bilin_cli.core.errors import BilinError
from bilin_cli.core.printable import printable

MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_JSON_DEPTH = 32


def regular_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` if it is an existing regular file (symlinks followed), else a BilinError."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise BilinError(f"{printable(p)}: no such {what}") from None
    except OSError as exc:
        raise BilinError(f"{printable(p)}: cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise BilinError(f"{printable(p)} is a directory, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise BilinError(f"{printable(p)}: not a regular file (a pipe, socket or device); "
                         f"give a {what}")
    return p


def json_depth(obj: object) -> int:
    """Nesting depth of a parsed JSON value (scalars are 0), without recursion."""
    depth, stack = 0, [(obj, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            depth = max(depth, level)
            stack.extend((v, level + 1) for v in node.values())
        elif isinstance(node, list):
            depth = max(depth, level)
            stack.extend((v, level + 1) for v in node)
    return depth


def parse_json(text: str | bytes, source: str, max_depth: int = MAX_JSON_DEPTH) -> object:
    """Parse JSON text; too deep, invalid or non-finite-number documents are BilinErrors."""

    def no_constants(name: str) -> float:
        raise ValueError(f"{name} is not valid JSON")

    try:
        data = json.loads(text, parse_constant=no_constants)
    except RecursionError:
        raise BilinError(f"{source}: JSON nested too deeply (more than {max_depth} levels)"
                         ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise BilinError(f"{source}: not valid JSON ({printable(str(exc))})") from None
    if json_depth(data) > max_depth:
        raise BilinError(f"{source}: JSON nested too deeply (more than {max_depth} levels)")
    return data


def read_json(path: str | os.PathLike, what: str = "JSON file",
              max_bytes: int = MAX_JSON_BYTES) -> dict:
    """A JSON object from a regular file of at most ``max_bytes``."""
    p = regular_file(path, what)
    size = p.stat().st_size
    if size > max_bytes:
        raise BilinError(f"{printable(p)}: {size} bytes is too large for a {what} "
                         f"(at most {max_bytes})")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise BilinError(f"{printable(p)}: cannot read ({exc.strerror})") from None
    data = parse_json(raw, printable(p))
    if not isinstance(data, dict):
        raise BilinError(f"{printable(p)}: expected a JSON object, found "
                         f"{type(data).__name__}")
    return data


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` from an image file's header; no pixel is decoded.

    PIL warns (``DecompressionBombWarning``) about a header that claims a huge image; the
    callers compare the size with the model's input before decoding anything, so the
    warning says nothing they do not, and it is held back. Errors are PIL's own.
    """
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            return im.size

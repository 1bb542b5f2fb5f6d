"""Vectors drawn in the terminal as coloured blocks (blue > 0, red < 0, white ~ 0).

The colours follow matplotlib's RdBu, as in bilin's PNG figures.

Each character cell shows two pixels stacked ("▀": foreground = upper pixel,
background = lower pixel), so a 28x28 image takes 28 columns and 14 rows.
"""

from __future__ import annotations

import numpy as np


def _rgb(t: float) -> tuple[int, int, int]:
    """Diverging colour for ``t`` in [-1, 1]: red (-1), white (0), blue (+1), as RdBu."""
    t = float(np.clip(t, -1, 1))
    if t >= 0:
        return int(255 * (1 - t)), int(255 * (1 - t)), 255
    return 255, int(255 * (1 + t)), int(255 * (1 + t))


def image_text(vec: np.ndarray, shape: tuple[int, int]):
    """A rich Text drawing of ``vec`` reshaped to ``shape``, scaled by its max |value|."""
    from rich.color import Color
    from rich.style import Style
    from rich.text import Text

    img = np.asarray(vec, dtype=np.float64).reshape(shape)
    scale = np.abs(img).max() or 1.0
    img = img / scale
    if img.shape[0] % 2:
        img = np.vstack([img, np.zeros((1, img.shape[1]))])
    text = Text()
    for r in range(0, img.shape[0], 2):
        for c in range(img.shape[1]):
            top, bottom = _rgb(img[r, c]), _rgb(img[r + 1, c])
            text.append(
                "▀", style=Style(color=Color.from_rgb(*top), bgcolor=Color.from_rgb(*bottom))
            )
        text.append("\n")
    return text


def vector_gallery(pictures: list[tuple[str, np.ndarray]], shape: tuple[int, ...] | None):
    """A row of labelled pictures (images when ``shape`` is 2-D, else 1-row strips)."""
    from rich.columns import Columns
    from rich.console import Group
    from rich.text import Text

    items = []
    for label, vec in pictures:
        vec = np.asarray(vec)
        if shape is not None and len(shape) == 2 and int(np.prod(shape)) == vec.size:
            pic = image_text(vec, shape)
        else:
            width = min(vec.size, 64)
            pic = image_text(vec[:width], (1, width))
        items.append(Group(Text(label, style="bold"), pic))
    return Columns(items, padding=(0, 2))

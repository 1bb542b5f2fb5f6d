"""Vectors drawn in the terminal as coloured blocks (blue > 0, red < 0, white ~ 0).

The colours follow matplotlib's RdBu, as in bilin's PNG figures.

Each character cell shows two pixels stacked ("▀": foreground = upper pixel,
background = lower pixel), so a 28x28 image takes 28 columns and 14 rows.

Without colour (a pipe, a file, or ``NO_COLOR``) the same cells are drawn in plain
characters, with no escape sequence: of the two pixels a cell stacks, the one of larger
magnitude picks the character, ``#`` / ``+`` strongly / weakly positive, ``=`` / ``-``
strongly / weakly negative, blank about zero (see :data:`LEGEND`).
"""

from __future__ import annotations

import numpy as np


def _rgb(t: float) -> tuple[int, int, int]:
    """Diverging colour for ``t`` in [-1, 1]: red (-1), white (0), blue (+1), as RdBu."""
    t = float(np.clip(t, -1, 1))
    if t >= 0:
        return int(255 * (1 - t)), int(255 * (1 - t)), 255
    return 255, int(255 * (1 + t)), int(255 * (1 + t))


# Plain characters by scaled value t in [-1, 1]: |t| < WEAK is blank, |t| >= STRONG strong.
WEAK, STRONG = 0.15, 0.5
LEGEND = "# + positive, = - negative (strong, weak), blank ~ 0"


def _char(t: float) -> str:
    if abs(t) < WEAK:
        return " "
    if t > 0:
        return "#" if t >= STRONG else "+"
    return "=" if t <= -STRONG else "-"


def image_text(vec: np.ndarray, shape: tuple[int, int], color: bool = True):
    """A rich Text drawing of ``vec`` reshaped to ``shape``, scaled by its max |value|:
    coloured half blocks, or with ``color=False`` plain characters (no styles at all)."""
    from rich.color import Color
    from rich.style import Style
    from rich.text import Text

    img = np.asarray(vec, dtype=np.float64).reshape(shape)
    scale = np.abs(img).max() or 1.0
    img = np.nan_to_num(img / scale)
    if img.shape[0] % 2:
        img = np.vstack([img, np.zeros((1, img.shape[1]))])
    if not color:
        top, bottom = img[0::2], img[1::2]
        cells = np.where(np.abs(top) >= np.abs(bottom), top, bottom)
        return Text("".join("".join(_char(t) for t in row) + "\n" for row in cells),
                    no_wrap=True, overflow="fold")
    text = Text()
    for r in range(0, img.shape[0], 2):
        for c in range(img.shape[1]):
            top, bottom = _rgb(img[r, c]), _rgb(img[r + 1, c])
            text.append(
                "▀", style=Style(color=Color.from_rgb(*top), bgcolor=Color.from_rgb(*bottom))
            )
        text.append("\n")
    return text


def vector_gallery(pictures: list[tuple[str, np.ndarray]], shape: tuple[int, ...] | None,
                   color: bool = True):
    """A row of labelled pictures (images when ``shape`` is 2-D, else 1-row strips);
    ``color=False`` draws them in plain characters, under a one-line legend."""
    from rich.columns import Columns
    from rich.console import Group
    from rich.text import Text

    items = []
    for label, vec in pictures:
        vec = np.asarray(vec)
        if shape is not None and len(shape) == 2 and int(np.prod(shape)) == vec.size:
            pic = image_text(vec, shape, color)
        else:
            width = min(vec.size, 64)
            pic = image_text(vec[:width], (1, width), color)
        items.append(Group(Text(label, style="bold"), pic))
    gallery = Columns(items, padding=(0, 2))
    return gallery if color else Group(Text(f"pictures: {LEGEND}"), gallery)

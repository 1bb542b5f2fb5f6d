"""One visual style for every figure bilin draws: matplotlib figures (``plot``,
``explain``, ``adversarial``, ``hosvd``) and the HTML report's interactive charts.

No heavy imports here: the report and the matplotlib code both read these constants.
"""

from __future__ import annotations

import math

import numpy as np

# Signed images (eigenvectors, masks, loadings): a diverging map centred on zero, the same
# name in matplotlib and plotly. Negative entries red, positive blue, zero white.
DIVERGING_CMAP = "RdBu"
# Unsigned images (inputs, perturbed inputs).
GREY_CMAP = "gray"
# Curves: positive eigenvalues, negative eigenvalues, anything else.
POSITIVE_COLOR = "#1f77b4"
NEGATIVE_COLOR = "#d62728"
NEUTRAL_COLOR = "#444444"
FONT_FAMILY = "DejaVu Sans"
TITLE_SIZE = 9
LABEL_SIZE = 8
TICK_SIZE = 7
# Eigenvalues are printed with this many significant digits in every figure and page.
EIGENVALUE_DIGITS = 4


def eigenvalue_text(lam: float) -> str:
    """An eigenvalue as every figure prints it: sign always shown, EIGENVALUE_DIGITS
    significant digits (``+0.1459``, ``-1.312e-05``)."""
    return f"{lam:+.{EIGENVALUE_DIGITS}g}"


def symmetric_limit(values) -> float:
    """The colour limit ``L`` for a signed image drawn on ``[-L, L]`` (centred on zero):
    the largest finite absolute value, or 1.0 for an all-zero or empty array."""
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    lim = float(np.abs(a).max()) if a.size else 0.0
    return lim if lim > 0 and math.isfinite(lim) else 1.0


# --- matplotlib ------------------------------------------------------------------------
# Everything below imports matplotlib lazily (inside functions): this module stays cheap
# for the report and for commands that draw nothing.

# Bars and curves that are neither sign (singular values not shown, baselines).
MUTED_COLOR = "#bbbbbb"
# Figure-level title (the suptitle): one step above panel titles.
SUPTITLE_SIZE = TITLE_SIZE + 1
# Titles of the small image panels of a grid (eigenvectors, masks, examples).
PANEL_TITLE_SIZE = LABEL_SIZE
# Other numbers in figures (logits, contributions, colorbar ends): significant digits.
VALUE_DIGITS = 3
# The eigenvalue symbol in every figure title.
LAMBDA = "λ"


def value_text(x: float, signed: bool = True) -> str:
    """A number other than an eigenvalue as figures print it (VALUE_DIGITS significant
    digits, sign shown unless ``signed`` is false): ``+0.123``, ``-4.56e-05``."""
    return f"{x:+.{VALUE_DIGITS}g}" if signed else f"{x:.{VALUE_DIGITS}g}"


def lambda_text(lam: float) -> str:
    """``λ = +0.1459``: the eigenvalue label of a panel."""
    return f"{LAMBDA} = {eigenvalue_text(lam)}"


def matplotlib_rc() -> dict:
    """rcParams for every matplotlib figure: fonts and sizes from this module, text kept
    as text in vector formats (TrueType in PDF, which journals ask for, not Type 3; real
    text in SVG), no image smoothing of pixel images."""
    return {
        "font.family": FONT_FAMILY,
        "font.size": LABEL_SIZE,
        "axes.titlesize": TITLE_SIZE,
        "axes.labelsize": LABEL_SIZE,
        "xtick.labelsize": TICK_SIZE,
        "ytick.labelsize": TICK_SIZE,
        "legend.fontsize": TICK_SIZE,
        "legend.frameon": False,
        "figure.titlesize": SUPTITLE_SIZE,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": False,
        "grid.alpha": 0.3,
        "lines.linewidth": 1.2,
        "image.interpolation": "nearest",
        "image.cmap": DIVERGING_CMAP,
        "pdf.fonttype": 42,
        "ps.fonttype": 42,
        "svg.fonttype": "none",
    }


def pyplot():
    """matplotlib.pyplot on the headless Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def styled(build):
    """Decorator: run a function that builds a figure under :func:`matplotlib_rc`, so
    every text and line it creates takes the shared style (fonts are fixed when the text
    is made; the vector-format settings are applied again when the figure is saved)."""
    import functools

    @functools.wraps(build)
    def wrapper(*args, **kwargs):
        plt = pyplot()
        with plt.rc_context(matplotlib_rc()):
            fig = build(*args, **kwargs)
            apply(fig)
            return fig

    return wrapper


def apply(fig, title: str | None = None):
    """Give ``fig`` the shared look after it is drawn: the suptitle (``title`` if given)
    at SUPTITLE_SIZE; returns ``fig``."""
    if title is not None:
        fig.suptitle(title)
    sup = getattr(fig, "_suptitle", None)  # matplotlib keeps no public handle on it
    if sup is not None:
        sup.set_fontsize(SUPTITLE_SIZE)
        sup.set_fontfamily(FONT_FAMILY)
    return fig


def integer_axis(ax, which: str = "x"):
    """Ticks at whole numbers only on ``which`` axis (ranks, K, component numbers)."""
    from matplotlib.ticker import MaxNLocator

    (ax.xaxis if which == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))
    return ax


def bare(ax):
    """An image panel: no ticks and no frame (every pixel picture is drawn tick-free; its
    title says what it is and the colorbar gives its scale)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    return ax


def colorbar(fig, im, ax, label: str | None = None, symmetric: bool = True, **kw):
    """A colorbar for ``im`` next to ``ax`` (one axes or a list that shares it); a
    symmetric one has ticks at ``-L, 0, +L``. Returns the colorbar."""
    kw.setdefault("fraction", 0.046)
    kw.setdefault("pad", 0.03)
    cb = fig.colorbar(im, ax=ax, **kw)
    if symmetric:
        lo, hi = im.get_clim()
        cb.set_ticks([lo, 0.0, hi])
        cb.set_ticklabels([value_text(lo), "0", value_text(hi)])
    cb.ax.tick_params(labelsize=TICK_SIZE, length=2, pad=1)
    cb.outline.set_linewidth(0.5)
    if label:
        cb.set_label(label, fontsize=TICK_SIZE, labelpad=1)
    return cb


def signed_image(ax, img, fig=None, label: str | None = None, limit: float | None = None,
                 colorbar_kw: dict | None = None, **imshow_kw):
    """Draw a signed image on ``ax`` with DIVERGING_CMAP on ``[-L, L]`` (white = 0; ``L``
    is ``limit`` or :func:`symmetric_limit` of ``img``), tick-free unless ``imshow_kw``
    says ``aspect="auto"`` (a matrix whose axes the caller labels); with ``fig``, a
    colorbar centred on zero, titled ``label``. Returns the AxesImage."""
    lim = symmetric_limit(img) if limit is None else float(limit)
    imshow_kw.setdefault("interpolation", "nearest")
    im = ax.imshow(img, cmap=DIVERGING_CMAP, vmin=-lim, vmax=lim, **imshow_kw)
    if imshow_kw.get("aspect") != "auto":
        bare(ax)
    if fig is not None:
        colorbar(fig, im, ax, label, **(colorbar_kw or {}))
    return im


def grey_image(ax, img, vmin: float = 0.0, vmax: float = 1.0):
    """Draw an unsigned image (an input) in GREY_CMAP on ``[vmin, vmax]``, tick-free."""
    im = ax.imshow(img, cmap=GREY_CMAP, vmin=vmin, vmax=vmax, interpolation="nearest")
    bare(ax)
    return im

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

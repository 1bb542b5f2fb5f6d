"""bilin: weight-based interpretability for bilinear networks.

A bilinear layer ``y = P((W x) * (V x))`` is a quadratic form in ``x``; for any
output direction ``u`` the symmetric matrix ``Q(u)`` explains it exactly.  The
library modules compute; :mod:`bilin_cli.cli` only parses options and renders.
"""

__version__ = "0.1.0"

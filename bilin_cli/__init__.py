"""bilin: weight-based interpretability for bilinear networks.

A bilinear layer ``y = P((W x) * (V x))`` is a quadratic form in ``x``; for any
output direction ``u`` the symmetric matrix ``Q(u)`` explains it exactly.  The
library modules compute; :mod:`bilin_cli.cli` only parses options and renders.

The Python API (:mod:`bilin_cli.api`) is available from the package itself and is
imported on first use, so ``import bilin_cli`` stays cheap (no numpy)::

    import bilin_cli as bilin
    m = bilin.load("sample_checkpoints/mnist")
    d = bilin.eig(m, cls=3, top=10)        # d.eigenvalues (10,), d.eigenvectors (10, 784)
"""

import sys
import types

__version__ = "0.1.0"

# Names served lazily from bilin_cli.api (PEP 562): the console script imports this package
# before it installs its signal handlers, and `bilin --version` must not pay for numpy.
_API = (
    "Adversarial",
    "BilinError",
    "BilinearModel",
    "Comparison",
    "Decomposition",
    "Evaluation",
    "FeatureRanking",
    "Interaction",
    "NetworkSimilarity",
    "Spectra",
    "Sweep",
    "Truncation",
    "adversarial_masks",
    "attention",
    "chain",
    "compare",
    "eig",
    "evaluate",
    "explain",
    "hosvd",
    "info",
    "interact",
    "load",
    "network_similarity",
    "output_directions",
    "rank_features",
    "spectrum",
    "suggest_map",
    "truncate",
    "truncation_sweep",
)

__all__ = ["__version__", *_API]

# Three API functions share their names with library modules (bilin_cli.attention,
# bilin_cli.hosvd,
# bilin_cli.explain). Importing such a module would normally bind the module to the
# package attribute of the same name; the package keeps the function instead, so
# `bilin_cli.hosvd` is always the API function (the modules stay importable as
# `from bilin_cli.hosvd import ...`, through sys.modules).
_SHADOWED = ("attention", "explain", "hosvd")


class _Package(types.ModuleType):
    def __setattr__(self, name, value):
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return  # a submodule being bound by the import system: keep the API name
        super().__setattr__(name, value)


def __getattr__(name: str):
    if name in _API:
        from bilin_cli import api

        value = getattr(api, name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})


sys.modules[__name__].__class__ = _Package

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

import importlib.abc
import importlib.util
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
    "Report",
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
    "report",
    "spectrum",
    "suggest_map",
    "truncate",
    "truncation_sweep",
)

__all__ = ["__version__", *_API]

# Modules that lived in the package root before the layers became folders (core/, model/,
# analyses/; shards went to cli/). Their old import paths keep working for scripts and
# notebooks written against them: ``import bilin_cli.decompose`` gives the module
# ``bilin_cli.analyses.decompose`` itself (one module object, not a copy).
_MOVED = {
    "accel": "core.accel", "errors": "core.errors",
    "attention": "model.attention", "interaction": "model.interaction",
    "spectra": "model.spectra",
    **{name: f"analyses.{name}" for name in (
        "adversarial", "attention_circuits", "decompose", "directions", "evaluation",
        "explain", "features", "hosvd", "lowrank_search", "network_moments", "report",
        "similarity", "token_reading", "truncation")},
    "shards": "cli.shards", "render.printable": "core.printable",
}

# Four API functions share their names with old module paths (``bilin_cli.attention``,
# ``bilin_cli.hosvd``, ``bilin_cli.explain``, ``bilin_cli.report``). Importing such a path
# would normally bind the module to the package attribute of the same name; the package
# keeps the function instead, so ``bilin_cli.hosvd`` is always the API function.
_SHADOWED = ("attention", "explain", "hosvd", "report")


class _Package(types.ModuleType):
    def __setattr__(self, name, value):
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return  # a submodule being bound by the import system: keep the API name
        super().__setattr__(name, value)


class _OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``bilin_cli.<old path>`` and hands out the module at its new path."""

    def find_spec(self, fullname, path=None, target=None):
        old = fullname.removeprefix(f"{__name__}.")
        if old == fullname or old not in _MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    specs: dict = {}  # new name -> its own spec, which the import system overwrites

    def create_module(self, spec):
        old = spec.name.removeprefix(f"{__name__}.")
        module = importlib.import_module(f"{__name__}.{_MOVED[old]}")
        self.specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module):
        # Already executed at its new path; put back the spec the import system replaced.
        module.__spec__ = self.specs.pop(module.__name__, module.__spec__)


sys.meta_path.append(_OldPaths())


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

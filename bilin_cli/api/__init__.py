"""The Python API: the CLI's commands as functions that return plain data.

``import bilin_cli as bilin`` gives these functions (loaded on first use, so the import
itself stays cheap)::

    >>> import bilin_cli as bilin
    >>> m = bilin.load("sample_checkpoints/mnist")
    >>> d = bilin.eig(m, cls=3, top=5)
    >>> d.eigenvalues.shape, d.eigenvectors.shape      # (k,), (k, 784) pixels
    ((5,), (5, 784))

Each function is a thin layer over the library module the matching ``bilin`` command
calls, and returns the object that command renders:
:class:`~bilin_cli.analyses.decompose.Decomposition` for ``eig``,
:class:`~bilin_cli.analyses.hosvd.HOSVD`, :class:`~bilin_cli.analyses.explain.Explanation`, and
the small dataclasses below for ``spectrum``, ``truncate`` and ``rank_features``. Arrays are
NumPy arrays; eigenpairs are ordered by ``|lambda|`` descending (signs kept), and index
``r - 1`` is the eigenvector the CLI numbers ``r``. Wherever a function takes a model it also
takes a checkpoint path (it is then loaded with :func:`load`). Errors a user can cause raise
:class:`bilin_cli.core.errors.BilinError` with the message the CLI prints.
"""

from __future__ import annotations

import importlib

from bilin_cli import _API
from bilin_cli.api._types import PathLike  # noqa: F401
from bilin_cli.core.errors import BilinError  # noqa: F401

# Each name and the submodule that defines it. Submodules load on first use, so a command
# imports only the API it calls (``bilin eig`` skips adversarial masks, networks, ...).
_WHERE = {
    "Adversarial": "adversarial", "adversarial_masks": "adversarial",
    "output_directions": "directions",
    "Comparison": "features", "FeatureRanking": "features", "Interaction": "features",
    "compare": "features", "explain": "features", "hosvd": "features", "interact": "features",
    "rank_features": "features",
    "info": "loading", "load": "loading", "suggest_map": "loading",
    "NetworkSimilarity": "network", "attention": "network", "network_similarity": "network",
    "Spectra": "spectra", "chain": "spectra", "eig": "spectra", "parse_head": "spectra",
    "spectrum": "spectra", "token_reading": "spectra",
    "Report": "reporting", "report": "reporting",
    "Evaluation": "truncation", "Sweep": "truncation", "Truncation": "truncation",
    "evaluate": "truncation", "truncate": "truncation", "truncation_sweep": "truncation",
}
_OTHERS = {"Decomposition": "bilin_cli.analyses.decompose",
           "BilinearModel": "bilin_cli.model.bilinear"}

# The one list of API names lives in the package, which serves them lazily.
__all__ = list(_API)


def __getattr__(name: str):
    if name in _WHERE:
        module = importlib.import_module(f"bilin_cli.api.{_WHERE[name]}")
    elif name in _OTHERS:
        module = importlib.import_module(_OTHERS[name])
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE, *_OTHERS})

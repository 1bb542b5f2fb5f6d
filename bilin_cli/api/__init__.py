"""The Python API: the CLI's commands as functions that return plain data.

``import bilin_cli as bilin`` gives these functions (loaded on first use, so the import
itself stays cheap)::

    >>> import bilin_cli as bilin
    >>> m = bilin.load("sample_checkpoints/mnist")
    >>> d = bilin.eig(m, cls=3, top=5)
    >>> d.eigenvalues.shape, d.eigenvectors.shape      # (k,), (k, 784) pixels
    ((5,), (5, 784))

Each function is a thin layer over the library module the matching ``bilin`` command
calls, and returns the object that command renders: :class:`~bilin_cli.decompose.Decomposition`
for ``eig``, :class:`~bilin_cli.hosvd.HOSVD`, :class:`~bilin_cli.explain.Explanation`, and
the small dataclasses below for ``spectrum``, ``truncate`` and ``rank_features``. Arrays are
NumPy arrays; eigenpairs are ordered by ``|lambda|`` descending (signs kept), and index
``r - 1`` is the eigenvector the CLI numbers ``r``. Wherever a function takes a model it also
takes a checkpoint path (it is then loaded with :func:`load`). Errors a user can cause raise
:class:`bilin_cli.errors.BilinError` with the message the CLI prints.
"""

from __future__ import annotations

from bilin_cli import _API
from bilin_cli.api._types import PathLike  # noqa: F401
from bilin_cli.api.adversarial import Adversarial, adversarial_masks  # noqa: F401
from bilin_cli.api.directions import output_directions  # noqa: F401
from bilin_cli.api.features import (  # noqa: F401
    Comparison,
    FeatureRanking,
    Interaction,
    compare,
    explain,
    hosvd,
    interact,
    rank_features,
)
from bilin_cli.api.loading import info, load, suggest_map  # noqa: F401
from bilin_cli.api.network import (  # noqa: F401
    NetworkSimilarity,
    attention,
    network_similarity,
)
from bilin_cli.api.spectra import (  # noqa: F401
    Spectra,
    chain,
    eig,
    parse_head,
    spectrum,
    token_reading,
)
from bilin_cli.api.truncation import (  # noqa: F401
    Evaluation,
    Sweep,
    Truncation,
    evaluate,
    truncate,
    truncation_sweep,
)
from bilin_cli.decompose import Decomposition  # noqa: F401
from bilin_cli.errors import BilinError  # noqa: F401
from bilin_cli.model import BilinearModel  # noqa: F401

# The one list of API names lives in the package, which serves them lazily.
__all__ = list(_API)

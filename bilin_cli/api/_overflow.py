"""Weights near float32's limit, for the API functions whose library code has no float64
redo of its own.

The library's main routes (``eig``, ``spectrum``, ``hosvd``, ``truncate``, ``eval``) check
their own intermediate results. Everything else built on products of the weights (feature
rankings, explanations, comparisons, adversarial masks, SAE interactions, attention forms)
runs under :func:`float64_on_overflow`: a float32 overflow anywhere in it is caught
(numpy's floating-point error, or the eigendecomposition that then fails to converge) and
the whole call is redone in float64, said once in the model's warnings; an overflow in
float64 too is one error line. Never a numpy warning, never an infinite number.
"""

from __future__ import annotations

import functools
import inspect

import numpy as np

from bilin_cli.model.spectra import add_warning, float64_warning, is_float64, overflow_error

# What an overflow looks like from outside: numpy's error (np.errstate(over="raise")), a
# warning turned into an error, or LAPACK failing on the inf it produced (worker threads
# do not share the caller's errstate).
_SYMPTOMS = (FloatingPointError, RuntimeWarning, np.linalg.LinAlgError)


def float64_on_overflow(what: str, *model_args: str):
    """Decorate an API function that takes ``dtype`` and the models named ``model_args``
    (loaded first, so both tries share them and their warnings)."""

    def decorate(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args, **kwargs):
            from bilin_cli.api.loading import _model

            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            models = []
            for name in model_args:
                bound.arguments[name] = _model(bound.arguments[name])
                models.append(bound.arguments[name])
            dtype = bound.arguments.get("dtype", np.float32)
            try:
                with np.errstate(over="raise"):
                    return fn(*bound.args, **bound.kwargs)
            except _SYMPTOMS:
                if is_float64(dtype):
                    raise overflow_error(what) from None
            bound.arguments["dtype"] = np.float64
            try:
                with np.errstate(over="raise"):
                    result = fn(*bound.args, **bound.kwargs)
            except _SYMPTOMS:
                raise overflow_error(what) from None
            for m in models:
                add_warning(m.warnings, float64_warning(what))
            return result

        return run

    return decorate

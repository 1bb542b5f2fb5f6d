"""Low-rank truncation of a bilinear classifier, and the accuracy-versus-rank sweep.

Per class ``c`` keep the ``K_c`` eigenpairs of largest ``|lambda|`` of ``Q(e_c)``:

    logit_c(x) ~= sum_{i < K_c} lambda_ci (v_ci . x)^2,
    |error| <= max_{discarded} |lambda_ci| * ||x||^2      (x in the layer's input space)

The truncated model is itself bilinear: hidden unit ``(c, i)`` has ``W = V = v_ci``
and head weight ``lambda_ci`` on class ``c``. Models with biases are truncated in
the augmented form (input ``[x; 1]``), so the linear and constant parts are
eigen-components like the rest; unit ``(c, i)`` then gets the bias ``v_ci[d]`` on
both sides and the model is exact again at ``K = d + 1``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from bilin_cli.core.errors import BilinError, option
from bilin_cli.core.printable import with_article
from bilin_cli.model.bilinear import BilinearModel
from bilin_cli.model.interaction import hidden_coefficients, symmetric_form
from bilin_cli.model.spectra import (
    add_warning,
    all_finite,
    eigh_sorted,
    float64_warning,
    is_float64,
    largest_magnitude,
    layer_magnitude,
    overflow_error,
    rank_for_share,
)


@dataclass
class ClassSpectrum:
    """All eigenpairs of one class's (possibly augmented) Q, ``|lambda|`` descending."""

    lam: np.ndarray  # (d',)
    vecs: np.ndarray  # (d', d') rows; d' = d + 1 when augmented


def check_truncatable(model: BilinearModel) -> None:
    if model.kind == "lm":
        raise BilinError(
            "truncation needs a classifier (its head defines the output directions); this is "
            f"{with_article(model.layout)}"
        )
    if model.n_layers != 1:
        raise BilinError(
            f"truncation supports single-bilinear-layer models; this one has {model.n_layers}"
        )
    if model.residual:
        raise BilinError(
            "truncation of residual models is not supported: the linear skip path has no "
            "eigendecomposition to truncate"
        )


def class_spectra(
    model: BilinearModel, dtype: type = np.float32, advance: Callable[[], None] | None = None
) -> list[ClassSpectrum]:
    """Eigendecompose every class's Q (augmented with biases), one ``eigh`` per class."""
    check_truncatable(model)
    factors = _factors(model.layer(0, dtype))
    wide = None  # the float64 factors, read the first time a class overflows float32
    out = []
    for c in range(factors[0].o):
        spectrum = _class_spectrum(factors, c, dtype)
        if spectrum is None:
            # Weights near float32's limit: Q_c overflowed. Redo it from the float64 layer.
            what = f"the interaction matrix of class {c}"
            if is_float64(dtype):
                raise overflow_error(what, layer_magnitude(factors[0]))
            wide = wide or _factors(model.layer(0, np.float64))
            spectrum = _class_spectrum(wide, c, np.float64)
            if spectrum is None:
                raise overflow_error(what, layer_magnitude(wide[0]))
            add_warning(model.warnings, float64_warning("the classes' interaction matrices"))
        out.append(spectrum)
        if advance:
            advance()
    return out


def _factors(L):
    """``(L, W, V)`` with ``W, V`` augmented by the biases (input ``[x; 1]``) where L has them."""
    W, V = L.W, L.V
    if L.has_bias:
        W = np.concatenate([W, L.b_w[:, None]], axis=1)
        V = np.concatenate([V, L.b_v[:, None]], axis=1)
    return L, W, V


def _class_spectrum(factors, c: int, dtype: type) -> ClassSpectrum | None:
    """Class ``c``'s eigenpairs, or None where its Q or spectrum is infinite or NaN."""
    L, W, V = factors
    u = np.zeros(L.o, dtype)
    u[c] = 1
    with np.errstate(over="ignore", invalid="ignore"):
        Q = symmetric_form(W, V, hidden_coefficients(L, u))
        if not all_finite(Q):  # before LAPACK, which fails or returns NaN on inf
            return None
        try:
            lam, vecs = eigh_sorted(Q)
        except np.linalg.LinAlgError:
            return None
    return ClassSpectrum(lam, vecs) if all_finite(lam) else None


def choose_ranks(
    spectra: list[ClassSpectrum], rank: int | None = None, energy: float | None = None
) -> list[int]:
    """``K`` per class: ``rank``, or the smallest ``K`` holding ``energy`` of sum|lambda|."""
    if (rank is None) == (energy is None):
        raise BilinError(f"give exactly one of {option('--rank', 'rank')} or "
                         f"{option('--energy', 'energy')}")
    if rank is not None:
        if rank < 0:
            raise BilinError(f"{option('--rank', 'rank')} must be >= 0, got {rank}")
        return [min(rank, s.lam.size) for s in spectra]
    if not 0 < energy <= 1:
        raise BilinError(f"{option('--energy', 'energy')} must be in (0, 1], got {energy}")
    return [rank_for_share(s.lam, energy) for s in spectra]


def rank_report(
    spectra: list[ClassSpectrum], ranks: list[int], names: list[str] | None
) -> list[dict]:
    """Per class: K, share of ``sum|lambda|`` kept, and the error bound factor."""
    rows = []
    for c, (s, k) in enumerate(zip(spectra, ranks, strict=True)):
        a = np.abs(s.lam.astype(np.float64))
        total = a.sum()
        rows.append({
            "class": c,
            "name": names[c] if names else str(c),
            "k": int(k),
            "share_kept": float(a[:k].sum() / total) if total else 1.0,
            "max_discarded_abs_eigenvalue": float(a[k:].max()) if k < a.size else 0.0,
        })
    return rows


def truncated_tensors(
    model: BilinearModel, spectra: list[ClassSpectrum], ranks: list[int], dtype: type = np.float32
) -> dict[str, np.ndarray]:
    """The truncated model's tensors, in the source's own layout (image or toy)."""
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused below
        return _truncated_tensors(model, spectra, ranks, dtype)


def _truncated_tensors(model, spectra, ranks, dtype) -> dict[str, np.ndarray]:
    L = model.layer(0, dtype)
    d = L.d
    n_cls = len(spectra)
    units = [s.vecs[:k] for s, k in zip(spectra, ranks, strict=True)]
    U = np.concatenate(units, axis=0) if sum(ranks) else np.zeros((0, spectra[0].vecs.shape[1]))
    head = np.zeros((n_cls, U.shape[0]), dtype)
    start = 0
    for c, (s, k) in enumerate(zip(spectra, ranks, strict=True)):
        head[c, start : start + k] = s.lam[:k]
        start += k
    Wt = np.ascontiguousarray(U[:, :d], dtype=np.float32)
    tensors: dict[str, np.ndarray] = {}
    bias = np.ascontiguousarray(U[:, d], dtype=np.float32) if L.has_bias else None
    if model.kind == "toy":
        tensors["left.weight"], tensors["right.weight"] = Wt, Wt.copy()
        if bias is not None:
            tensors["left.bias"], tensors["right.bias"] = bias, bias.copy()
    else:
        if model.embed_key:
            tensors["embed.weight"] = np.ascontiguousarray(model.embed(np.float32))
        tensors["blocks.0.weight"] = np.concatenate([Wt, Wt], axis=0)
        if bias is not None:
            tensors["blocks.0.bias"] = np.concatenate([bias, bias])
    tensors["head.weight"] = np.ascontiguousarray(head, dtype=np.float32)
    if L.b_p is not None:
        tensors["head.bias"] = np.ascontiguousarray(L.b_p, dtype=np.float32)
    if not all(all_finite(t) for key, t in tensors.items() if key != "embed.weight"):
        # Eigenvalues recomputed in float64 (weights near float32's limit) beyond float32.
        top = largest_magnitude([s.lam[:k] for s, k in zip(spectra, ranks, strict=True)])
        raise BilinError(f"the truncated model does not fit in float32, in which it is written: "
                         f"its head weights (the kept eigenvalues) reach {top:.2g}; rescale "
                         "the checkpoint")
    return tensors


def truncated_config(config: dict, source, ranks, rank: int | None, energy: float | None,
                     augmented: bool) -> dict:
    """The config.json of a truncated checkpoint: what it keeps of the source's config (class
    names, input shape, its own test split) and how it was truncated."""
    from bilin_cli.storage.data import default_data_path

    cfg = {k: v for k, v in config.items()
           if k in ("classes", "outputs", "input_shape", "input_scale", "dataset")}
    split = default_data_path(source, config) if source is not None else None
    if split is not None:
        cfg["test_split"] = str(split)
    cfg.update({
        "d_hidden": int(sum(ranks)),
        "bias": bool(augmented),
        "residual": False,
        "truncation": {"source": str(source), "ranks": [int(r) for r in ranks],
                       "rule": "rank" if rank is not None else f"energy {energy}",
                       "augmented": bool(augmented)},
    })
    return cfg


def layer_inputs(model: BilinearModel, x: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """The bilinear layer's input for data ``x``: ``E x`` (plus a constant 1 with biases)."""
    E = model.embed(dtype)
    h = x.astype(dtype) if E is None else x.astype(dtype) @ E.T
    if model.shapes[0].bias:
        h = np.concatenate([h, np.ones((h.shape[0], 1), dtype)], axis=1)
    return h


def sweep_logits(
    model: BilinearModel,
    spectra: list[ClassSpectrum],
    x: np.ndarray,
    ks: Iterable[int],
    dtype: type = np.float32,
    advance: Callable[[], None] | None = None,
) -> dict[int, np.ndarray]:
    """Logits of the rank-``K`` model for every ``K`` in ``ks``, from one projection per class.

    ``cumsum_i lambda_ci (v_ci . x)^2`` gives every ``K`` at once.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        out = _sweep_logits(model, spectra, x, ks, dtype, advance)
        if all(all_finite(v) for v in out.values()):
            return out
        what = "the truncated model's logits"
        if is_float64(dtype):
            raise overflow_error(what, largest_magnitude([s.lam for s in spectra]),
                                 "eigenvalues")
        out = _sweep_logits(model, spectra, x, ks, np.float64)
    if not all(all_finite(v) for v in out.values()):
        raise overflow_error(what, largest_magnitude([s.lam for s in spectra]), "eigenvalues")
    add_warning(model.warnings, float64_warning(what))
    return out


def _sweep_logits(model, spectra, x, ks, dtype, advance=None) -> dict[int, np.ndarray]:
    ks = sorted(set(int(k) for k in ks))
    H = layer_inputs(model, x, dtype)  # (N, d')
    b_p = model.layer(0, dtype).b_p
    k_max = min(max(ks), H.shape[1])
    out = {k: np.zeros((H.shape[0], len(spectra)), dtype) for k in ks}
    for c, s in enumerate(spectra):
        Z = H @ s.vecs[:k_max].T.astype(dtype)  # (N, k_max)
        cum = np.cumsum(s.lam[:k_max].astype(dtype) * Z * Z, axis=1)
        for k in ks:
            if k > 0:
                out[k][:, c] = cum[:, min(k, k_max) - 1]
        if advance:
            advance()
    if b_p is not None:
        for k in ks:
            out[k] += b_p
    return out


def accuracy_sweep(
    model: BilinearModel,
    spectra: list[ClassSpectrum],
    data,
    ks: Iterable[int],
    dtype: type = np.float32,
    advance: Callable[[], None] | None = None,
) -> dict:
    """Accuracy of the rank-``K`` model for each ``K``, and its drop from the full model.

    ``data`` is a :class:`bilin_cli.storage.data.Dataset`; returns the JSON document of
    ``bilin truncate --sweep``.
    """
    from bilin_cli.analyses.evaluation import model_logits, scores

    full = scores(model_logits(model, data, dtype), data.y)["accuracy"]
    logits = sweep_logits(model, spectra, data.x, ks, dtype, advance)
    rows = []
    for k in sorted(logits):
        acc = scores(logits[k], data.y)["accuracy"]
        rows.append({"k": k, "accuracy": acc, "drop": full - acc})
    return {"full_accuracy": full, "n": int(data.y.size), "data": data.source, "sweep": rows,
            "augmented": bool(model.shapes[0].bias)}

"""How alike two models' features are: the library behind ``bilin compare``.

Per class, each model gives eigenpairs ``(lambda_i, x_i)`` of ``Q(e_c)``, ordered by
``|lambda|`` and expressed in a shared space (pixels ``x_i = E^T v_i`` where both
models embed the same input; else the hidden space, ``x_i = v_i``). Measures:

* rank-matched ``|cos|``: the i-th vector of A against the i-th of B;
* Hungarian-matched ``|cos|``: the one-to-one pairing of the top-K vectors that
  maximizes the summed ``|cos|`` (so its mean is never below the rank-matched mean);
* Quadratic Form Similarity ``QFS(A, B) = tr(A B) / (||A||_F ||B||_F)`` with
  ``A = sum_{i<K} lambda_i x_i x_i^T``. It is computed factored,
  ``tr(A B) = sum_ij lambda_i mu_j (x_i . y_j)^2``, so the ``(n, n)`` matrices are never
  formed; it does not depend on eigenvector signs. QFS is 1 for identical top-K
  forms, lies in [-1, 1], and is near 0 for unrelated ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bilin_cli.core.errors import BilinError, option
from bilin_cli.core.printable import with_article
from bilin_cli.model.bilinear import BilinearModel
from bilin_cli.model.spectra import check_top


def _unit_rows(X: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(n > 0, n, 1.0)


def abs_cosines(Xa: np.ndarray, Xb: np.ndarray) -> np.ndarray:
    """``|cos(x_i, y_j)| : (ka, kb)`` for rows ``Xa : (ka, n)``, ``Xb : (kb, n)``."""
    return np.abs(_unit_rows(Xa.astype(np.float64)) @ _unit_rows(Xb.astype(np.float64)).T)


def hungarian(C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the one-to-one matching that maximizes ``sum C[i, j]``."""
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(C, maximize=True)


def quadratic_form_norm(lam: np.ndarray, X: np.ndarray) -> float:
    """``||sum_i lam_i x_i x_i^T||_F`` from ``lam : (k,)`` and rows ``X : (k, n)``."""
    G = X.astype(np.float64) @ X.T.astype(np.float64)
    return float(np.sqrt(max(lam @ (G * G) @ lam, 0.0)))


def qfs(lam_a: np.ndarray, Xa: np.ndarray, lam_b: np.ndarray, Xb: np.ndarray) -> float | None:
    """``tr(A B) / (||A||_F ||B||_F)`` for ``A = sum lam_a_i x_i x_i^T`` (rows of ``Xa``), etc.

    None when either form is zero.
    """
    lam_a, lam_b = np.asarray(lam_a, np.float64), np.asarray(lam_b, np.float64)
    C = Xa.astype(np.float64) @ Xb.T.astype(np.float64)
    na, nb = quadratic_form_norm(lam_a, Xa), quadratic_form_norm(lam_b, Xb)
    if na == 0 or nb == 0:
        return None
    return float(lam_a @ (C * C) @ lam_b / (na * nb))


@dataclass
class Spectrum:
    """All eigenpairs of one class of one model, vectors in the comparison space (rows)."""

    lam: np.ndarray  # (d,)
    X: np.ndarray  # (d, n)


def compare_spectra(a: Spectrum, b: Spectrum, k: int) -> dict:
    """The measures of the module docstring for the top ``k`` of each spectrum."""
    k = min(k, a.lam.size, b.lam.size)
    C = abs_cosines(a.X[:k], b.X[:k])
    ranked = np.diag(C).copy()
    rows, cols = hungarian(C)
    matched = C[rows, cols]
    return {
        "k": int(k),
        "rank_matched": ranked.tolist(),
        "rank_matched_mean": float(ranked.mean()),
        # [rank in A, rank in B, |cos|], ranks from 1 as bilin eig numbers eigenvectors
        "hungarian": [[int(i) + 1, int(j) + 1, float(v)] for i, j, v in zip(rows, cols, matched,
                                                                             strict=True)],
        "hungarian_mean": float(matched.mean()),
        "qfs": qfs(a.lam[:k], a.X[:k], b.lam[:k], b.X[:k]),
        "qfs_all": qfs(a.lam, a.X, b.lam, b.X),
    }


def comparison_space(ma: BilinearModel, mb: BilinearModel, basis: str = "auto") -> str:
    """"input" where both last layers read ``E x`` with the same input size; else "hidden"."""
    from bilin_cli.analyses.decompose import input_basis_available

    for m in (ma, mb):
        if m.kind == "lm":
            raise BilinError(
                f"bilin compare works on classifiers (per class); this is {with_article(m.layout)}"
            )
    la, lb = ma.n_layers - 1, mb.n_layers - 1
    both_input = input_basis_available(ma, la) and input_basis_available(mb, lb)
    same_in = both_input and ma.embed_shape[1] == mb.embed_shape[1]
    if basis == "input" and not same_in:
        why = ("both need an embedding right before their (last) bilinear layer"
               if not both_input else
               f"their input sizes differ ({ma.embed_shape[1]} vs {mb.embed_shape[1]})")
        raise BilinError(f"{option('--basis input', 'basis=input')}: {why}; use "
                         f"{option('--basis hidden', 'basis=hidden')}")
    space = "input" if basis == "input" or (basis == "auto" and same_in) else "hidden"
    if space == "hidden" and ma.shapes[la].d != mb.shapes[lb].d:
        raise BilinError(
            f"the models cannot be compared: no shared input space, and their hidden spaces "
            f"differ (d = {ma.shapes[la].d} vs {mb.shapes[lb].d})"
        )
    return space


def class_spectrum(model: BilinearModel, c: int, space: str, dtype: type) -> Spectrum:
    """Eigenpairs of class ``c`` at the model's last layer, in ``space``."""
    from bilin_cli.analyses.directions import from_class
    from bilin_cli.model.interaction import interaction
    from bilin_cli.model.spectra import eigh_sorted

    layer = model.n_layers - 1
    Q = interaction(model.layer(layer, dtype), from_class(model, layer, c, dtype).u).Q
    lam, vecs = eigh_sorted(Q)
    return Spectrum(lam, vecs @ model.embed(dtype) if space == "input" else vecs)


def compare(
    ma: BilinearModel,
    mb: BilinearModel,
    classes: list[int] | None = None,
    k: int = 10,
    basis: str = "auto",
    dtype: type = np.float32,
    advance=None,
) -> dict:
    """Per-class similarity of two classifiers' features and the mean over the classes."""
    check_top(k)
    space = comparison_space(ma, mb, basis)
    na, nb = ma.shapes[-1].o, mb.shapes[-1].o
    if classes is None:
        if na != nb:
            raise BilinError(f"the models have {na} and {nb} classes; choose classes with "
                             f"{option('--class', 'cls')}")
        classes = list(range(na))
    rows = []
    for c in classes:
        res = compare_spectra(class_spectrum(ma, c, space, dtype),
                              class_spectrum(mb, c, space, dtype), k)
        name = ma.output_names[c] if ma.output_names else str(c)
        rows.append({"class": int(c), "name": name, **res})
        if advance:
            advance()
    keys = ("rank_matched_mean", "hungarian_mean", "qfs", "qfs_all")
    mean = {}
    for key in keys:
        vals = [r[key] for r in rows if r[key] is not None]
        mean[key] = float(np.mean(vals)) if vals else None
    notes = []
    if ma.residual or mb.residual:
        notes.append("residual model: only the bilinear branch (Q) is compared, not the skip path")
    if ma.shapes[-1].bias or mb.shapes[-1].bias:
        notes.append("biases: only the interaction (quadratic) part is compared")
    return {
        "space": space,
        "top_k": int(rows[0]["k"]) if rows else int(k),
        "dtype": np.dtype(dtype).name,
        "classes": rows,
        "mean": mean,
        "notes": notes,
    }

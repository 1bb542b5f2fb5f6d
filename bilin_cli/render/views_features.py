"""Presentation of ``hosvd``, ``explain`` and ``compare`` results as Reports (no math here)."""

from __future__ import annotations

import numpy as np

from bilin_cli.analyses.explain import Explanation
from bilin_cli.analyses.hosvd import HOSVD
from bilin_cli.render.output import Report
from bilin_cli.render.views import _basis_note, _size, _top_entries


def _largest_loadings(res: HOSVD, k: int, n: int = 3) -> list[dict]:
    """The ``n`` largest-magnitude loadings of component ``k`` (0-based here, shown from 1)."""
    u = res.U[:, k]
    idx = np.argsort(-np.abs(u), kind="stable")[:n]
    names = res.output_names
    return [{"output": int(i), "name": names[i] if names else None, "loading": float(u[i])}
            for i in idx]


def _largest_entries(vec: np.ndarray, shape: tuple[int, ...] | None, n: int = 3) -> list[dict]:
    """The ``n`` largest-magnitude entries of ``vec``; ``pixel`` (row, col) where it is an image."""
    out = []
    for i in np.argsort(-np.abs(vec), kind="stable")[:n]:
        entry = {"entry": int(i), "value": float(vec[i])}
        if shape:
            entry["pixel"] = [int(j) for j in np.unravel_index(i, shape)]
        out.append(entry)
    return out


def _hosvd_shape(res: HOSVD) -> tuple[int, ...] | None:
    shape = res.input_shape
    return shape if shape and int(np.prod(shape)) == res.eigenvectors.shape[-1] else None


HOSVD_COLUMNS = ["component", "sigma", "energy_share", "largest_loadings", "effective_rank",
                 "eigenvalues", "largest_entries"]


def hosvd_doc(res: HOSVD) -> dict:
    share = res.energy_share
    shape = _hosvd_shape(res)
    comps = []
    for k in range(res.sigma.size):
        n_eig = res.eigenvalues.shape[1]
        comps.append({
            "component": k + 1,
            "sigma": float(res.sigma[k]),
            "energy_share": float(share[k]),
            "loadings": res.U[:, k].tolist(),
            "largest_loadings": _largest_loadings(res, k),
            "effective_rank": float(res.effective_ranks[k]),
            "ranks": list(range(1, n_eig + 1)),
            "eigenvalues": res.eigenvalues[k].tolist(),
            "eigenvectors": res.eigenvectors[k].tolist(),
            "largest_entries": _largest_entries(res.eigenvectors[k, 0], shape),
        })
    doc = {
        "layout": res.layout,
        "layer": res.layer,
        "basis": res.basis,
        "method": res.method,
        "dtype": res.dtype,
        "d": res.d,
        "o": res.o,
        "rank": res.rank,
        "rank_tolerance": res.rank_tolerance,
        "n_components": int(res.sigma.size),
        "singular_values": res.sigma.tolist(),
        "all_singular_values": res.sigma_all.tolist(),
        "output_names": res.output_names,
        "components": comps,
        "memory": {"estimated_bytes": res.bytes_needed, "unfolding_bytes": res.unfolding_bytes},
        "conventions": {
            "decomposition": "B = sum_k sigma_k u_k (x) Q_k, ||u_k|| = ||Q_k||_F = 1",
            "numbering": "components count from 1 (component 1 has the largest sigma; "
                         "singular_values[k-1] is sigma_k), and so do each Q_k's eigenpairs "
                         "(ranks; eigenvalues[r-1], eigenvectors[r-1] are rank r, |lambda| "
                         "descending), as bilin eig numbers eigenvectors; output and entry "
                         "numbers are 0-based positions in the vector",
            "loadings": "u_k[c]: how much output c uses component k",
            "largest_loadings": "the 3 largest |u_k[c]|: output c, its name, u_k[c]",
            "largest_entries": "the 3 largest-magnitude entries of Q_k's eigenvector 1 "
                               "(entry: 0-based position; pixel: [row, col] in input_shape)",
            "sign": "each u_k's largest-magnitude entry is positive (Q_k follows); eigenvectors "
                    "of Q_k as in bilin eig",
            "energy_share": "sigma_k^2 / sum of all sigma^2 (share of ||B||_F^2, a fraction "
                            "of 1)",
            "rank": "singular values above rank_tolerance; the others are numerically zero "
                    "(reported as 0 in all_singular_values). unfold: sigma_1 * max(o, d^2) * "
                    "eps; gram: sigma_1 * sqrt((o + h + d) * eps), as sigma is recovered from "
                    "sigma^2 (eps of float64, in which both methods compute)",
        },
        "notes": res.notes,
    }
    if res.input_shape:
        doc["input_shape"] = list(res.input_shape)
    return doc


def hosvd_report(res: HOSVD, warnings: list[str] | None = None) -> Report:
    doc = hosvd_doc(res)
    shape = _hosvd_shape(res)
    summary = [
        ("layout", res.layout),
        ("layer", str(res.layer)),
        ("unfolding", f"({res.o}, {res.d}^2): {_size(res.unfolding_bytes)} in float64"),
        ("method", f"{res.method} (about {_size(res.bytes_needed)}, {res.dtype})"),
        ("basis", res.basis + _basis_note(res.basis, shape, res.eigenvectors.shape[-1])),
        ("rank", f"{res.rank} of {res.sigma_all.size} singular values are nonzero "
                 f"(above {res.rank_tolerance:.3g})"),
        ("components", f"{res.sigma.size}, numbered from 1; energy share "
                       f"{100 * float(res.energy_share.sum()):.4g}% of ||B||_F^2"),
    ]
    rows = []
    for k, comp in enumerate(doc["components"]):
        loadings = " ".join(f"{e['name'] if e['name'] is not None else e['output']}:"
                            f"{e['loading']:+.2f}" for e in comp["largest_loadings"])
        rows.append([
            comp["component"], comp["sigma"], comp["energy_share"], loadings,
            comp["effective_rank"],
            " ".join(f"{v:+.4g}" for v in res.eigenvalues[k]),
            _top_entries(res.eigenvectors[k, 0], shape),
        ])
    arrays = {"sigma": res.sigma, "U": res.U, "eigenvalues": res.eigenvalues,
              "eigenvectors": res.eigenvectors, "all_singular_values": res.sigma_all}
    return Report(
        "bilin hosvd", doc, summary, list(HOSVD_COLUMNS), rows, arrays,
        notes=res.notes + [
            "component k and eigenvalue rank r count from 1; energy_share: sigma_k^2 / "
            "||B||_F^2; largest_loadings: output:u_k; largest_entries: of Q_k's eigenvector 1"],
        warnings=warnings or [],
        percent=("energy_share",),
    )


def _contrib_rows(ce, idx: np.ndarray) -> list[dict]:
    # ``rank`` counts from 1 in |lambda|-descending order: eigenvector r here is row r of
    # 'bilin eig --all' (and 'adversarial --eig r', 'eig --chain r', hosvd's ranks).
    return [{"rank": int(i) + 1, "eigenvalue": float(ce.eigenvalues[i]),
             "projection": float(ce.projections[i]),
             "contribution": float(ce.contributions[i])} for i in idx]


EXPLAIN_NOTE = ("rank: eigenvector rank from 1 (|lambda| descending, as bilin eig prints it); "
                "projection: v . h; contribution: eigenvalue * projection^2")


def explain_doc(ex: Explanation, top: int) -> dict:
    classes = []
    for ce in ex.classes:
        scale = max(abs(ce.logit), float(np.abs(ce.contributions).sum()), 1e-30)
        classes.append({
            "class": ce.cls,
            "name": ce.name,
            "logit": ce.logit,
            "interaction": ce.interaction,
            "linear": ce.linear,
            "constant": ce.constant,
            "skip": ce.skip,
            "positive": _contrib_rows(ce, ce.top(top, +1)),
            "negative": _contrib_rows(ce, ce.top(top, -1)),
            "n_positive": int(np.sum(ce.contributions > 0)),
            "n_negative": int(np.sum(ce.contributions < 0)),
            "check": {
                "sum_of_parts": ce.total,
                "logit": ce.logit,
                "residual": ce.residual,
                "relative_residual": abs(ce.residual) / scale,
            },
        })
    names = ex.output_names
    doc = {
        "input": ex.input.source,
        "prediction": ex.prediction,
        "prediction_name": names[ex.prediction] if names else str(ex.prediction),
        "logits": ex.logits.tolist(),
        "output_names": names,
        "layout": ex.layout,
        "layer": ex.layer,
        "dtype": ex.dtype,
        "classes": classes,
        "max_abs_residual": max((abs(c.residual) for c in ex.classes), default=0.0),
        "conventions": {
            "logit": "interaction (sum of all contributions) + linear + constant [+ skip]",
            "contribution": "lambda_i (v_i . h)^2, h = the layer's input (E x for image models)",
            "rank": "eigenvector rank from 1, as 'bilin eig --all' prints it (|lambda| "
                    "descending); row rank-1 of the npz arrays",
            "projection": "v_i . h",
        },
        "notes": ex.notes,
    }
    if "label" in ex.input.source:
        doc["correct"] = ex.input.source["label"] == ex.prediction
    return doc


def explain_report(ex: Explanation, top: int, warnings: list[str] | None = None) -> Report:
    doc = explain_doc(ex, top)
    src = ex.input.source
    where = src.get("path", "values") + (f" [{src['index']}]" if "index" in src else "")
    if "label" in src:
        where += f" (label {src['label']})"
    summary = [("input", where), ("prediction", f"{doc['prediction_name']} "
                                                f"(logit {ex.logits[ex.prediction]:.4g})"),
               ("layout", f"{ex.layout}, layer {ex.layer}")]
    rows = []
    for cd in doc["classes"]:
        parts = [f"interaction {cd['interaction']:.4g}"]
        for key in ("linear", "constant", "skip"):
            if cd[key] is not None:
                parts.append(f"{key} {cd[key]:.4g}")
        summary.append((f"class {cd['name']}", f"logit {cd['logit']:.4g} = " + " + ".join(parts)
                        + f"  (residual {cd['check']['residual']:.2g})"))
        for sign in ("positive", "negative"):
            for r in cd[sign]:
                rows.append([cd["class"], cd["name"], sign, r["rank"], r["eigenvalue"],
                             r["projection"], r["contribution"]])
    arrays = {
        "logits": ex.logits,
        "input": ex.input.x,
        "classes": np.array([c.cls for c in ex.classes]),
        "eigenvalues": np.stack([c.eigenvalues for c in ex.classes]),
        "contributions": np.stack([c.contributions for c in ex.classes]),
    }
    return Report("bilin explain", doc, summary,
                  ["class", "name", "sign", "rank", "eigenvalue", "projection", "contribution"],
                  rows, arrays, notes=ex.notes + [EXPLAIN_NOTE], warnings=warnings or [])


def compare_report(doc: dict, warnings: list[str] | None = None) -> Report:
    def f(v):
        return None if v is None else float(v)

    summary = [("A", doc["a"]), ("B", doc["b"]),
               ("space", doc["space"] + (" (the inputs: E^T v)" if doc["space"] == "input"
                                         else "")),
               ("top K", str(doc["top_k"]))]
    m = doc["mean"]
    summary.append(("mean", f"rank-matched |cos| {m['rank_matched_mean']:.4f}, Hungarian "
                            f"|cos| {m['hungarian_mean']:.4f}, QFS top-K "
                            + ("-" if m["qfs"] is None else f"{m['qfs']:.4f}")))
    rows = [[r["class"], r["name"], r["rank_matched_mean"], r["hungarian_mean"], f(r["qfs"]),
             f(r["qfs_all"])] for r in doc["classes"]]
    return Report("bilin compare", doc, summary,
                  ["class", "name", "rank_matched_mean", "hungarian_mean", "qfs", "qfs_all"],
                  rows,
                  notes=doc["notes"] + [
                      "rank_matched_mean: mean |cos| of eigenvectors of equal rank; "
                      "hungarian_mean: after the best one-to-one matching of the top K; "
                      "qfs: QFS of the top K, qfs_all: of every eigenpair; "
                      "QFS = tr(A B) / (||A||_F ||B||_F), A = sum_{top-K} lambda_i x_i x_i^T"],
                  warnings=warnings or [])


def rank_sq_report(doc: dict) -> Report:
    """``rank-features --measure sq_top_k_share``: share of sum lambda^2 in the top k."""
    cert = doc.get("certificate") or {}
    summary = [("layer", str(doc["layer"])), ("output SAE", doc["sae_out"]),
               ("features ranked", str(doc["features_ranked"])), ("k", str(doc["k"])),
               ("measure", "share of sum lambda^2 in the top k (sq_top_k_share)")]
    if cert.get("excluded"):
        steps = "+".join(map(str, cert["lanczos_steps"]))
        worst, cut = cert["max_excluded_upper_bound"], cert["cut"]
        per, total = cert["failure_probability_per_feature"], cert["failure_probability_bound"]
        summary += [
            ("computed exactly", f"{cert['dense']} (dense float64 eigvalsh)"),
            ("excluded by bound", f"{cert['excluded']} (Lanczos, {steps} steps; every upper "
                                  f"bound <= {worst:.4f} < cut {cut:.4f})"),
            ("failure probability", f"<= {per:.0e} per excluded feature, <= {total:.1e} in all"),
        ]
        if cert.get("screened_dense_float32"):
            summary.append(("screened in float32", f"{cert['screened_dense_float32']} (the cut "
                            "lies in the bulk: dense float32 shares, float64 near the cut)"))
    rows = [[r["feature"], r["sq_top_k_share"], r["sum_sq_eigenvalues"],
             " ".join(f"{v:+.3g}" for v in r["top_eigenvalues"]), r["method"]]
            for r in doc["features"]]
    notes = list(doc.get("notes") or [])
    notes.append("sum_sq_eigenvalues: ||Q||_F^2 from the Gram identity (exact); every row is "
                 "an exact float64 eigvalsh; the other features were ruled out by Lanczos upper "
                 "bounds (rank-features --help)")
    return Report("bilin rank-features", doc, summary,
                  ["feature", "sq_top_k_share", "sum_sq_eigenvalues", "top_eigenvalues",
                   "method"], rows, percent=("sq_top_k_share",), notes=notes)

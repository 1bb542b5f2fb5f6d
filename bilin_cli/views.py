"""Presentation of library results as :class:`~bilin_cli.render.Report` (no math here)."""

from __future__ import annotations

import numpy as np

from bilin_cli.decompose import Decomposition
from bilin_cli.render import Report


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def info_report(doc: dict) -> Report:
    outputs = doc["outputs"]
    out_text = f"{outputs['n']} {outputs['kind']} ({outputs['option']})" if outputs["n"] else "none"
    if outputs.get("names"):
        out_text += ": " + ", ".join(outputs["names"])
    summary = [
        ("path", doc["path"]),
        ("container", doc["container"]),
        ("layout", doc["layout"]),
        ("bilinear layers", str(doc["n_layers"])),
        ("parameters", f"{doc['n_parameters']:,} in {doc['n_tensors']} tensors"),
        ("dtype", ", ".join(f"{k} ({v:,})" for k, v in doc["dtype"].items())),
        ("bias", "yes" if doc["bias"] else "no"),
        ("residual", "yes" if doc["residual"] else "no"),
        ("embedding", "x".join(map(str, doc["embedding"])) if doc["embedding"] else "none"),
        ("outputs", out_text),
        ("file size", _size(doc["file_size_bytes"])),
    ]
    if doc.get("input_shape"):
        summary.append(("input shape", "x".join(map(str, doc["input_shape"]))))
    columns = ["layer", "d (in)", "h (hidden)", "o (out)", "output space", "bias"]
    rows = [
        [L["index"], L["d"], L["h"], L["o"], L["out_space"], "yes" if L["bias"] else "no"]
        for L in doc["layers"]
    ]
    return Report(
        "bilin info", doc, summary, columns, rows, notes=doc["notes"], warnings=doc["warnings"]
    )


def _direction_text(info: dict) -> str:
    if info["kind"] == "class":
        name = f" ({info['name']})" if "name" in info and info["name"] != str(info["index"]) else ""
        via = ", direct path through the head" if info.get("path") == "direct" else ""
        return f"class {info['index']}{name}{via}"
    if info["kind"] == "token":
        s = f" {info['string']!r}" if "string" in info else ""
        return f"token {info['index']}{s}"
    return f"file {info['path']} (norm {info['norm']:.4g})"


def _top_entries(vec: np.ndarray, shape: tuple[int, ...] | None, n: int = 3) -> str:
    idx = np.argsort(-np.abs(vec), kind="stable")[:n]
    parts = []
    for i in idx:
        where = str(tuple(int(j) for j in np.unravel_index(i, shape))) if shape else str(int(i))
        parts.append(f"{where}:{vec[i]:+.3f}")
    return " ".join(parts)


def eig_report(dec: Decomposition, warnings: list[str] | None = None) -> Report:
    doc = dec.as_dict()
    shape = dec.input_shape
    if shape and int(np.prod(shape)) != dec.eigenvectors.shape[1]:
        shape = None
    summary = [
        ("layout", dec.layout),
        ("layer", str(dec.layer)),
        ("direction", _direction_text(dec.direction)),
        ("basis", dec.basis + (" (pixels: E^T v)" if dec.basis == "input" else "")),
        ("eigenvalues", f"{dec.n_eigenvalues} ({dec.method}, {dec.dtype})"),
    ]
    if dec.sum_abs is not None:
        k = len(dec.eigenvalues)
        summary += [
            ("sum |lambda|", f"{dec.sum_abs:.6g}"),
            ("effective rank", f"{dec.effective_rank:.4g}  ((sum|lambda|)^2 / sum lambda^2)"),
            (f"top-{k} share", f"{100 * dec.top_share:.2f}% of sum |lambda|"),
        ]
    if dec.linear is not None:
        summary.append(("linear part", f"norm {np.linalg.norm(dec.linear):.6g} (from biases)"))
    if dec.constant is not None:
        summary.append(("constant part", f"{dec.constant:.6g}"))
    total = dec.sum_abs
    rows = []
    cum = 0.0
    for i, (lam, vec) in enumerate(zip(dec.eigenvalues, dec.eigenvectors, strict=True)):
        share = abs(float(lam)) / total if total else None
        cum = cum + share if share is not None else None
        rows.append([i + 1, float(lam), share, cum, _top_entries(vec, shape)])
    arrays = {"eigenvalues": dec.eigenvalues, "eigenvectors": dec.eigenvectors}
    if dec.linear is not None:
        arrays["linear"] = dec.linear
    if dec.constant is not None:
        arrays["constant"] = np.asarray(dec.constant)
    return Report(
        "bilin eig",
        doc,
        summary,
        ["rank", "eigenvalue", "share", "cumulative", "largest entries (index:value)"],
        rows,
        arrays,
        notes=dec.notes,
        warnings=warnings or [],
    )

"""Presentation of library results as :class:`~bilin_cli.render.output.Report` (no math here)."""

from __future__ import annotations

import numpy as np

from bilin_cli.analyses.decompose import Decomposition
from bilin_cli.render.output import Report


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _extras_text(doc: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in list(doc["extras"].items())[:8]) + (
        ", ..." if len(doc["extras"]) > 8 else "")


def info_report(doc: dict) -> Report:
    if doc["layout"] is None:
        summary = [
            ("path", doc["path"]),
            ("container", doc["container"]),
            ("layout", "not recognised"),
            ("parameters", f"{doc['n_parameters']:,} in {doc['n_tensors']} tensors"),
            ("dtype", ", ".join(f"{k} ({v:,})" for k, v in doc["dtype"].items())),
            ("file size", _size(doc["file_size_bytes"])),
        ]
        if doc["extras"]:
            summary.append(("other entries", _extras_text(doc)))
        rows = [[t["name"], "x".join(map(str, t["shape"])) or "scalar", t["dtype"]]
                for t in doc["tensors"]]
        return Report("bilin info", doc, summary, ["name", "shape", "dtype"], rows,
                      notes=doc["unwrapped"], warnings=doc["warnings"])
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
    if doc.get("residual_stream"):
        stream = doc["residual_stream"]
        gains = [g for g in stream["gain"] or [] if g]
        if stream.get("folded_scales", {}) and stream["folded_scales"].get("mlp"):
            text = "a linear scale before each MLP, folded into W and V"
        elif stream["norm"] == "none":
            text = "no norm before each MLP"
        else:
            text = f"{stream['norm']} norm before each MLP" + (
                f" (gain {gains[0]}, ...)" if gains else " (no gain)")
        summary.append(("residual stream", f"d = {stream['d']}, {text}"))
    if doc.get("attention"):
        summary.append(("attention", attention_text(doc["attention"])))
    if doc["extras"]:
        summary.append(("other entries", _extras_text(doc)))
    columns = ["index", "d", "h", "o", "out_space", "bias"]
    rows = [
        [L["index"], L["d"], L["h"], L["o"], L["out_space"], "yes" if L["bias"] else "no"]
        for L in doc["layers"]
    ]
    return Report(
        "bilin info", doc, summary, columns, rows, notes=doc["notes"], warnings=doc["warnings"]
    )


def attention_text(att: dict) -> str:
    """One line on a model's bilinear attention, saying what config.json stated."""
    def said(key: str, value) -> str:
        if value is None:
            return "not stated"
        return ("yes" if value else "no") + ("" if key in att["stated_in_config"] else
                                              " (assumed)")

    heads = f"{att['n_heads']} head{'s' if att['n_heads'] != 1 else ''}"
    return (f"bilinear, {att['blocks']} blocks x {heads} of d_head = {att['d_head']}, scale "
            f"{att['scale_text']}, RoPE {said('rope', att['rope'])}, causal "
            f"{said('causal', att['causal'])}")


def suggest_map_report(mapping: dict, ambiguous: list[str]) -> Report:
    """The map document itself is the output (stdout or -o), ambiguities go to stderr."""
    warnings = [f"ambiguous: {a}; edit the map before using it" for a in ambiguous]
    return Report("bilin info --suggest-map", mapping, warnings=warnings)


def direction_label(info: dict) -> str:
    """A short legend label: the class name, the token string, or the file name."""
    if info["kind"] == "class":
        return info.get("name", str(info["index"]))
    if info["kind"] == "token":
        return repr(info["string"]) if "string" in info else f"token {info['index']}"
    if info["kind"] == "sae_feature":
        return f"feature {info['feature']}"
    if info["kind"] == "attention_query":
        return f"head {info['layer']}.{info['head']} query {info['query_token']}"
    return info["path"].rsplit("/", 1)[-1]


def _direction_text(info: dict) -> str:
    if info["kind"] == "class":
        name = f" ({info['name']})" if "name" in info and info["name"] != str(info["index"]) else ""
        via = ", direct path through the head" if info.get("path") == "direct" else ""
        return f"class {info['index']}{name}{via}"
    if info["kind"] == "token":
        s = f" {info['string']!r}" if "string" in info else ""
        return f"token {info['index']}{s}"
    if info["kind"] == "sae_feature":
        return f"SAE feature {info['feature']} of {info['sae']} ({info['format']})"
    if info["kind"] == "chain":
        return (f"eigenvector {info['eigenvector']} of layer {info['from_layer']} "
                f"(λ={info['eigenvalue']:+.4g})")
    if info["kind"] == "attention_query":
        s = f" {info['query_string']!r}" if "query_string" in info else ""
        return (f"attention score of head {info['layer']}.{info['head']} for query token "
                f"{info['query_token']}{s}, as a form in the key")
    return f"file {info['path']} (norm {info['norm']:.4g})"


def _top_entries(vec: np.ndarray, shape: tuple[int, ...] | None, n: int = 3) -> str:
    idx = np.argsort(-np.abs(vec), kind="stable")[:n]
    parts = []
    for i in idx:
        where = str(tuple(int(j) for j in np.unravel_index(i, shape))) if shape else str(int(i))
        parts.append(f"{where}:{vec[i]:+.3f}")
    return " ".join(parts)


def token_text(entry: dict) -> str:
    """A token for a table cell: visible spaces and escapes, ``#id`` without a vocabulary."""
    text = entry["text"]
    if text is None:
        return f"#{entry['token']}"
    return repr(text)[1:-1].replace(" ", "␣") or "''"


def _token_sides(reading: dict) -> str:
    def side(entries: list[dict]) -> str:
        return " ".join(token_text(e) for e in entries) or "-"

    return f"{side(reading['positive'])} | {side(reading['negative'])}"


def _basis_note(basis: str, shape: tuple[int, ...] | None, dim: int) -> str:
    """What the entries of an eigenvector are: pixels for an image model, else the input's
    dimensions."""
    if basis != "input":
        return ""
    if shape is not None and len(shape) == 2:
        return " (pixels: E^T v)"
    return f" ({dim} input dimensions: E^T v)"


def eig_report(dec: Decomposition, warnings: list[str] | None = None) -> Report:
    return eig_doc_report(dec.as_dict(), warnings)


def eig_doc_report(doc: dict, warnings: list[str] | None = None) -> Report:
    """``bilin eig``'s report from its JSON document alone (a decomposition's
    :meth:`~bilin_cli.analyses.decompose.Decomposition.as_dict`, or one read back from a part
    file by ``bilin merge``): the same table, CSV and arrays either way."""
    dtype = np.dtype(doc["dtype"])
    lams = np.asarray(doc["eigenvalues"], dtype=dtype)
    vecs = np.asarray(doc["eigenvectors"], dtype=dtype).reshape(len(lams), -1)
    bias = doc.get("bias_parts") or {}
    linear = None if bias.get("linear") is None else np.asarray(bias["linear"], dtype=dtype)
    constant = bias.get("constant")
    tokens = doc.get("tokens")
    shape = tuple(doc["input_shape"]) if doc.get("input_shape") else None
    if shape and int(np.prod(shape)) != vecs.shape[1]:
        shape = None
    basis = doc["basis"]
    summary = [
        ("layout", doc["layout"]),
        ("layer", str(doc["layer"])),
        ("direction", _direction_text(doc["direction"])),
        ("basis", basis + _basis_note(basis, shape, vecs.shape[1])),
        ("eigenvalues", f"{doc['n_eigenvalues']} ({doc['method']}, {doc['dtype']})"),
    ]
    total = doc["sum_abs_eigenvalues"]
    if total is not None:
        k = len(lams)
        summary += [
            ("sum |lambda|", f"{total:.6g}"),
            ("effective rank", f"{doc['effective_rank']:.4g}  ((sum|lambda|)^2 / sum "
                               "lambda^2)"),
            (f"top-{k} share", f"{100 * doc['top_k_share']:.2f}% of sum |lambda|"),
        ]
    if linear is not None:
        summary.append(("linear part", f"norm {np.linalg.norm(linear):.6g} (from biases)"))
    if constant is not None:
        summary.append(("constant part", f"{constant:.6g}"))
    rows = []
    cum = 0.0
    for i, (lam, vec) in enumerate(zip(lams, vecs, strict=True)):
        share = abs(float(lam)) / total if total else None
        cum = cum + share if share is not None else None
        last = _token_sides(tokens[i]) if tokens else _top_entries(vec, shape)
        rows.append([i + 1, float(lam), share, cum, last])
    arrays = {"eigenvalues": lams, "eigenvectors": vecs}
    if linear is not None:
        arrays["linear"] = linear
    if constant is not None:
        arrays["constant"] = np.asarray(constant, dtype=dtype)
    return Report(
        "bilin eig",
        doc,
        summary,
        ["rank", "eigenvalue", "share", "cumulative_share",
         "tokens" if tokens else "largest_entries"],
        rows,
        arrays,
        notes=doc["notes"],
        warnings=warnings or [],
        percent=("share", "cumulative_share"),
    )


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def eval_report(doc: dict) -> Report:
    summary = [("data", doc["data"]), ("n", str(doc["n"])), ("accuracy", _pct(doc["accuracy"]))]
    rows = [[r["class"], r["name"], r["n"], r["accuracy"]] for r in doc["per_class"]]
    notes = []
    arrays = None
    if "confusion" in doc:
        M = np.array(doc["confusion"])
        arrays = {"confusion": M}
        notes.append("confusion matrix (rows: true class, columns: predicted):\n"
                     + "\n".join(" ".join(f"{v:5d}" for v in row) for row in M))
    return Report("bilin eval", doc, summary, ["class", "name", "n", "accuracy"], rows, arrays,
                  notes=notes, percent=("accuracy",))


def sweep_report(doc: dict) -> Report:
    summary = [("data", f"{doc['data']} ({doc['n']} examples)"),
               ("full model", _pct(doc["full_accuracy"]))]
    if doc["augmented"]:
        summary.append(("augmented", "yes: biases are truncated with the interaction"))
    rows = [[r["k"], r["accuracy"], r["drop"]] for r in doc["sweep"]]
    arrays = {"k": np.array([r["k"] for r in doc["sweep"]]),
              "accuracy": np.array([r["accuracy"] for r in doc["sweep"]])}
    return Report("bilin truncate --sweep", doc, summary, ["k", "accuracy", "drop"], rows, arrays,
                  percent=("accuracy", "drop"))


def truncate_report(doc: dict) -> Report:
    summary = [("checkpoint", doc["output"]), ("hidden units", str(doc["hidden_units"])),
               ("error bound", doc["bound"])]
    if doc["augmented"]:
        summary.append(("augmented", "biases truncated with the interaction (input [x; 1])"))
    rows = [[r["class"], r["name"], r["k"], r["share_kept"], r["max_discarded_abs_eigenvalue"]]
            for r in doc["per_class"]]
    return Report("bilin truncate", doc, summary,
                  ["class", "name", "k", "share_kept", "max_discarded_abs_eigenvalue"], rows,
                  percent=("share_kept",))


def spectrum_report(doc: dict) -> Report:
    summary = [("layout", doc["layout"]), ("layer", str(doc["layer"])),
               ("eigenvalues per direction", str(doc["n_eigenvalues"]))]
    saes = sorted({s["direction"]["sae"] for s in doc["directions"]
                   if s["direction"]["kind"] == "sae_feature"})
    summary += [("output SAE", sae) for sae in saes]
    rows = []
    for s in doc["directions"]:
        info = s["direction"]
        rows.append([
            # one SAE: its path is in the summary, so the row says only which feature
            f"SAE feature {info['feature']}" if info["kind"] == "sae_feature" and len(saes) == 1
            else _direction_text(info),
            " ".join(f"{v:.3g}" for v in s["top_positive"]),
            " ".join(f"{v:.3g}" for v in s["top_negative"]),
            s["effective_rank"], s["k50"], s["k90"], s["k99"],
        ])
    return Report("bilin spectrum", doc, summary,
                  ["direction", "top_positive", "top_negative", "effective_rank", "k50",
                   "k90", "k99"], rows,
                  notes=["kP: how many eigenvalues (by |lambda|) hold P% of sum |lambda|"])


def chain_report(steps: list[Decomposition], j: int, warnings: list[str] | None = None) -> Report:
    """One table for a chained decomposition: each layer's top eigenvalues, top layer first."""
    doc = {"chain_eigenvector": j, "steps": [s.as_dict() for s in steps]}
    summary = [("start", f"layer {steps[0].layer}, {_direction_text(steps[0].direction)}"),
               ("chain", f"eigenvector {j} of each layer is the direction of the layer below")]
    rows = []
    for s in steps:
        for i, lam in enumerate(s.eigenvalues):
            share = abs(float(lam)) / s.sum_abs if s.sum_abs else None
            rows.append([s.layer, i + 1, float(lam), share,
                         "→ next" if i + 1 == j and s.layer > 0 else ""])
    notes = sorted({n for s in steps for n in s.notes})
    return Report("bilin eig --chain", doc, summary,
                  ["layer", "rank", "eigenvalue", "share", "chained"], rows,
                  {f"layer{s.layer}_eigenvalues": s.eigenvalues for s in steps}
                  | {f"layer{s.layer}_eigenvectors": s.eigenvectors for s in steps},
                  notes=notes, warnings=warnings or [], percent=("share",))


def interact_report(doc: dict) -> Report:
    summary = [("layer", str(doc["layer"])),
               ("output feature", f"{doc['feature']} of {doc['sae_out']}"),
               ("input SAE", f"{doc['sae_in']} ({doc['n_input_features']} features)"),
               ("eigenvalues", f"{doc['n_eigenvalues']}, effective rank "
                               f"{doc['effective_rank']:.4g}")]
    rows = []
    for kind in ("self", "cross"):
        for p in doc["pairs"][kind]:
            rows.append([kind, p["i"], p["j"], p["value"], p["coefficient"]])
    notes = []
    for e in doc["eigen"]:
        feats = ", ".join(f"{f['feature']}:{f['loading']:+.3f}" for f in e["features"])
        notes.append(f"eigenvector {e['rank']} (λ={e['eigenvalue']:+.4g}): input features {feats}")
    return Report("bilin interact", doc, summary,
                  ["kind", "i", "j", "value", "coefficient"], rows,
                  notes=notes + ["value: (D^T Q D)_ij; coefficient: of z_i z_j in the output "
                                 "(2 value for i != j); i, j: input-SAE feature ids"])


def certificate_line(cert: dict) -> str | None:
    """One line on how the features not reported were ruled out (the certified routes)."""
    if not cert or not cert.get("excluded"):
        return None
    steps = "+".join(map(str, cert["lanczos_steps"]))
    line = (f"certificate: {cert['dense']} of {cert['features']} features computed exactly "
            f"(dense float64), {cert['excluded']} ruled out by Lanczos bounds ({steps} steps; "
            f"every upper bound {cert['max_excluded_upper_bound']:.4g} or less, below the cut "
            f"{cert['cut']:.4g}); failure probability <= "
            f"{cert['failure_probability_per_feature']:.0e} per feature, <= "
            f"{cert['failure_probability_bound']:.1e} in all")
    if cert.get("screened_dense_float32"):
        line += (f"; {cert['screened_dense_float32']} near the cut screened in float32, "
                 "float64 where it mattered")
    return line


def rank_features_report(doc: dict) -> Report:
    summary = [("layer", str(doc["layer"])), ("output SAE", doc["sae_out"]),
               ("features ranked", str(doc["features_ranked"])), ("k", str(doc["k"])),
               ("sorted by", doc["sorted_by"].replace("_", " "))]
    if "route" in doc:
        summary.append(("route", "certified (Lanczos bounds, reported rows dense)"
                        if doc["route"] == "certified" else "dense (every Q built)"))
    rows = [[r["feature"], r["top_k_share"], r["effective_rank"], r["sum_abs_eigenvalues"],
             " ".join(f"{v:+.3g}" for v in r["top_eigenvalues"])] for r in doc["features"]]
    line = certificate_line(doc.get("certificate") or {})
    notes = list(doc.get("notes") or []) + ([line] if line else [])
    return Report("bilin rank-features", doc, summary,
                  ["feature", "top_k_share", "effective_rank", "sum_abs_eigenvalues",
                   "top_eigenvalues"], rows, percent=("top_k_share",), notes=notes)

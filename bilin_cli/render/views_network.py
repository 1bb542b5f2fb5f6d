"""Presentation of ``compare --network`` and ``attention`` results as Reports (no math here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bilin_cli.render.output import Report
from bilin_cli.render.views import token_text


def _short(name: str) -> str:
    p = Path(name)
    return p.name if p.name not in ("model.safetensors", "model.pt") else p.parent.name


def _labels(names: list[str]) -> list[str]:
    """Short column labels (the file or folder name) where they are unique, else the names."""
    short = [_short(n) for n in names]
    return short if len(set(short)) == len(short) else list(names)


def network_report(doc: dict, warnings: list[str] | None = None) -> Report:
    """Two networks: one row per output; more: the cosine matrix, a row per network."""
    nets = doc["networks"]
    summary = [("measure", doc["measure"]),
               ("exact", "yes" if doc["exact"] else "no: " + "; ".join(doc["approximation"]))]
    for c in doc["covers"]:
        summary.append((f"covers ({_short(c['network'])})", ", ".join(c["layers"])
                        + ("; left out: " + ", ".join(c["left_out"]) if c["left_out"] else "")))
    if len(nets) == 2:
        cos, inner = doc["cosine"][0][1], doc["inner"]
        summary = [("A", nets[0]), ("B", nets[1]),
                   ("cosine", "-" if cos is None else f"{cos:.6f}"),
                   ("<f_a, f_b>", f"{inner[0][1]:.6g}  (<f_a, f_a> {inner[0][0]:.6g}, "
                                  f"<f_b, f_b> {inner[1][1]:.6g})"), *summary]
        rows = [[o["index"], o.get("name", str(o["index"])), o["cosine"][0][1],
                 o["inner"][0][1]] for o in doc["outputs"]]
        columns = ["output", "name", "cosine", "inner"]
    else:
        labels = _labels(nets)
        summary = [("networks", ", ".join(f"{lab} = {n}" if lab != n else n
                                          for lab, n in zip(labels, nets, strict=True))),
                   *summary]
        rows = [[lab, *row] for lab, row in zip(labels, doc["cosine"], strict=True)]
        columns = ["network", *labels]
    arrays = {"cosine": np.asarray(doc["cosine"], dtype=np.float64),
              "inner": np.asarray(doc["inner"], dtype=np.float64),
              "networks": np.asarray(nets)}
    notes = list(doc["notes"]) + ["cosine = E[f_a . f_b] / sqrt(E|f_a|^2 E|f_b|^2) over "
                                  "Gaussian inputs; per output: the same for f_a,c and f_b,c"]
    return Report("bilin compare --network", doc, summary, columns, rows, arrays, notes=notes,
                  warnings=warnings or [])


def _reading(reading: dict | None) -> str:
    if not reading:
        return "-"
    def side(entries):
        return " ".join(token_text(e) for e in entries) or "-"

    return f"{side(reading['positive'])} | {side(reading['negative'])}"


def _pair(p: dict) -> str:
    q = token_text({"token": p["query"], "text": p["query_text"]})
    k = token_text({"token": p["key"], "text": p["key_text"]})
    return f"{q}->{k} {p['score']:+.3g}"


def _write(w: dict) -> str:
    s = token_text({"token": w["source"], "text": w["source_text"]})
    t = token_text({"token": w["token"], "text": w["text"]})
    return f"{s}=>{t} {w['logit']:+.3g}"


def attention_report(doc: dict, warnings: list[str] | None = None) -> Report:
    """One row per singular component of each form of each head read."""
    att = doc["attention"]
    summary = [("layout", doc["layout"]),
               ("attention", f"{att['n_heads']} heads of d_head = {att['d_head']}, score "
                             f"scale {att['scale_text']}, RoPE {att['rope']}, causal "
                             f"{att['causal']}"),
               ("forms", "A_1 = Wq1^T Wk1, A_2 = Wq2^T Wk2 (query x key), OV = Wo Wv "
                         "(output x input); singular components by rank from 1")]
    rows, arrays = [], {}
    for h in doc["heads"]:
        tag = f"{h['layer']}.{h['head']}"
        if h["top_pairs"]:
            summary.append((f"head {tag} pairs", ", ".join(_pair(p) for p in h["top_pairs"][:3])
                            + " | " + ", ".join(_pair(p) for p in h["bottom_pairs"][:3])))
        if h["top_writes"]:
            summary.append((f"head {tag} writes", ", ".join(_write(w)
                                                            for w in h["top_writes"][:4])))
        for form, key, sides in (("A_1", "qk", ("query", "key")), ("A_2", "qk", ("query", "key")),
                                 ("OV", "ov", ("output", "input"))):
            block = h["qk"][0 if form == "A_1" else 1] if key == "qk" else h["ov"]
            total = block["frobenius_norm"] ** 2 or 1.0
            sigma = np.asarray(block["singular_values"], dtype=np.float64)
            arrays[f"L{h['layer']}H{h['head']}_{form}_sigma"] = sigma
            for side in sides:
                arrays[f"L{h['layer']}H{h['head']}_{form}_{side}"] = np.asarray(
                    [c[side + "_vector"] for c in block["components"]], dtype=np.float64)
            for c in block["components"]:
                rows.append([h["layer"], h["head"], form, c["rank"], c["sigma"],
                             c["sigma"] ** 2 / total, _reading(c.get(sides[0] + "_tokens")),
                             _reading(c.get(sides[1] + "_tokens"))])
    return Report("bilin attention", doc, summary,
                  ["layer", "head", "form", "rank", "sigma", "share", "left_tokens",
                   "right_tokens"], rows, arrays, notes=doc["notes"] + [
                      "share: sigma^2 / ||form||_F^2; tokens: the "
                      "direct-path inputs (or, for OV's output side, unembedding rows) the "
                      "singular vector weighs most, > 0 left of the bar, < 0 right; pairs: "
                      "query->key score; writes: source=>token logit when the head attends "
                      "to the source with score 1"],
                  warnings=warnings or [], percent=("share",))

"""Presentation of ``bilin adversarial`` results as :class:`~bilin_cli.render.Report`."""

from __future__ import annotations

import numpy as np

from bilin_cli.render import Report
from bilin_cli.views import _pct

_METRICS = ["accuracy", "target rate", "baseline accuracy", "baseline target rate", "ratio"]
_KEYS = ["accuracy", "target_rate", "baseline_accuracy", "baseline_target_rate", "ratio"]


def _swept(doc: dict) -> tuple[str, str]:
    """(row key, column title) of the swept quantity."""
    return ("n_pixels", "pixels") if doc["swept"] == "n_pixels" else ("strength", "strength")


def _class_text(index: int, name: str) -> str:
    return str(index) if name == str(index) else f"{index} ({name})"


def _mask_summary(doc: dict) -> list[tuple[str, str]]:
    variant = doc["variant"]
    if variant == "edge":
        variant += f" ({doc['region_pixels']} pixels lit in < {doc['edge_share']:.0%} of images)"
    elif variant == "top-pixels":
        variant += f" (clamped to [0, 1], strength {doc['strength']:g})"
    return [
        ("variant", variant),
        ("stack", f"top {doc['per_class']} positive eigenvector(s) per class, "
                  f"{doc['stacked']} in all"),
        ("mask", doc["projection"]),
        ("baseline", doc["baseline"]),
    ]


def _rows(rows: list[dict], key: str, label=None) -> list[list]:
    lead = [] if label is None else [label]
    return [lead + [r[key]] + [r[k] for k in _KEYS] for r in rows]


def sweep_report(doc: dict) -> Report:
    """One target's sweep, or (``target == "all"``) every target's rows and their mean."""
    key, title = _swept(doc)
    summary = [("data", f"{doc['data']} ({doc['n']} images)"),
               ("clean accuracy", _pct(doc["clean_accuracy"]))]
    notes = ["target rate: share of the images of other classes classified as the target; "
             "ratio = target rate / baseline target rate"]
    arrays = {key: np.array([r[key] for r in doc["rows"]])}
    for k in _KEYS[:4]:
        arrays[k] = np.array([r[k] for r in doc["rows"]])
    if doc["target"] != "all":
        summary = [
            ("target", _class_text(doc["target"], doc["target_name"])),
            ("eigenvector", f"#{doc['eig']} (lambda = {doc['eigenvalue']:.4g}), sign "
                            f"{doc['sign']:+d}, leak {doc['leak']:.2g}"),
            *summary,
            ("clean target rate", _pct(doc["clean_target_rate"])),
            *_mask_summary(doc),
        ]
        return Report("bilin adversarial", doc, summary, [title, *_METRICS],
                      _rows(doc["rows"], key), arrays, notes=notes)
    summary = [("targets", f"all {len(doc['per_target'])} classes, eigenvector #{doc['eig']}"),
               *summary, *_mask_summary(doc)]
    rows = []
    for t in doc["per_target"]:
        rows += _rows(t["rows"], key, _class_text(t["target"], t["target_name"]))
    rows += _rows(doc["rows"], key, "mean")
    notes.append("mean rows average each metric over the targets; their ratio is the ratio "
                 "of the mean rates")
    arrays["per_target_target_rate"] = np.array([[r["target_rate"] for r in t["rows"]]
                                                 for t in doc["per_target"]])
    arrays["per_target_baseline_target_rate"] = np.array(
        [[r["baseline_target_rate"] for r in t["rows"]] for t in doc["per_target"]])
    return Report("bilin adversarial --target all", doc, summary, ["target", title, *_METRICS],
                  rows, arrays, notes=notes)


def _pred(p: dict, names: list[str]) -> str:
    return f"{names[p['prediction']]} (logit {p['logits'][p['prediction']]:.4g})"


def input_report(doc: dict) -> Report:
    """One input before and after the mask (and its permuted baseline)."""
    names = doc["class_names"]
    how = (f"strength {doc['strength']:g}" if doc.get("n_pixels") is None
           else f"top {doc['n_pixels']} pixels at strength {doc['strength']:g}, clamped")
    summary = [("input", doc["input"])]
    if doc["label"] is not None:
        summary.append(("label", names[doc["label"]]))
    summary += [("variant", f"{doc['variant']} ({how})"),
                ("old prediction", _pred(doc["old"], names))]
    if doc["target"] != "all":
        summary = [("target", _class_text(doc["target"], names[doc["target"]])),
                   ("eigenvector", f"#{doc['eig']}"), *summary,
                   ("new prediction", _pred(doc["new"], names)),
                   ("baseline prediction", _pred(doc["baseline"], names))]
        rows = [[c, names[c], doc["old"]["logits"][c], doc["new"]["logits"][c],
                 doc["baseline"]["logits"][c]] for c in range(len(names))]
        arrays = {k: np.array(doc[k]["logits"]) for k in ("old", "new", "baseline")}
        return Report("bilin adversarial --input", doc, summary,
                      ["class", "name", "old logit", "new logit", "baseline logit"], rows, arrays)
    summary.insert(0, ("targets", f"all {len(doc['targets'])} classes, eigenvector #{doc['eig']}"))
    rows = [[t["target"], names[t["new"]["prediction"]], names[t["baseline"]["prediction"]],
             doc["old"]["logits"][t["target"]], t["new"]["logits"][t["target"]]]
            for t in doc["targets"]]
    arrays = {"new_logits": np.array([t["new"]["logits"] for t in doc["targets"]]),
              "old_logits": np.array(doc["old"]["logits"])}
    return Report("bilin adversarial --input --target all", doc, summary,
                  ["target", "new prediction", "baseline prediction", "old target logit",
                   "new target logit"], rows, arrays)

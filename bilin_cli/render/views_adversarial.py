"""Presentation of ``bilin adversarial`` results as :class:`~bilin_cli.render.output.Report`.

Column names are the JSON keys (snake_case), so CSV/TSV, JSON and the table agree. In
the table (``human``) rates, accuracies and leaks are percentages with two decimals;
CSV/TSV keep the exact fractions.
"""

from __future__ import annotations

import numpy as np

from bilin_cli.render.output import Report
from bilin_cli.render.views import _pct

_KEYS = ["accuracy", "target_rate", "baseline_accuracy", "baseline_target_rate", "ratio"]
_MASK_KEYS = ["excitation", "leak"]  # per-target columns with --target all
_PERCENT = {"accuracy", "target_rate", "baseline_accuracy", "baseline_target_rate", "leak",
            "efficiency"}


def _swept(doc: dict) -> str:
    """Row key (and column name) of the swept quantity."""
    return "n_pixels" if doc["swept"] == "n_pixels" else "strength"


def _class_text(index: int, name: str) -> str:
    return str(index) if name == str(index) else f"{index} ({name})"


def _cell(key: str, value, human: bool):
    """A value as the table shows it (``human``) or as CSV/TSV write it (exact)."""
    if not human or value is None or isinstance(value, str):
        return value
    if key in _PERCENT:
        return _pct(value)
    if key == "ratio":
        return f"{value:.2f}"
    if key == "strength":
        return f"{value:g}"
    if key == "excitation":
        return f"{value:.4g}"
    return value


def _conditioning_text(c: dict) -> str:
    return (f"{c['matrix']}: smallest singular value {c['smallest_singular_value']:.3g}, "
            f"condition number {c['condition_number']:.3g}")


def _mask_summary(doc: dict) -> list[tuple[str, str]]:
    variant = doc["variant"]
    if variant == "edge":
        variant += f" ({doc['region_pixels']} pixels lit in < {doc['edge_share']:.0%} of images)"
    elif variant == "top-pixels":
        variant += f" (clamped to [0, 1], strength {doc['strength']:g})"
    inverse = {"hidden": "hidden (the paper's recipe: pinv(S) in the layer's space, then E^T)",
               "pixel": "pixel (exact minimum-norm pixel mask pinv(S E))"}[doc["inverse"]]
    return [
        ("variant", variant),
        ("stack", f"top {doc['per_class']} positive eigenvector(s) per class, "
                  f"{doc['stacked']} in all"),
        ("inverse", f"{inverse}; {_conditioning_text(doc['conditioning'])}"),
        ("mask", doc["projection"]),
        ("baseline", doc["baseline"]),
    ]


def _one_mask_text(t: dict) -> str:
    text = (f"excitation {t['excitation']:.4g} per unit strength ({_pct(t['efficiency'])} of "
            f"the most a mask of its size gives), leak {_pct(t['leak'])}")
    if t["leak_class"] is not None:
        text += f" (most into class {t['leak_class']} eigenvector #{t['leak_eig_rank']})"
    return text


def _all_masks_text(per_target: list[dict]) -> str:
    exc = [t["excitation"] for t in per_target]
    eff = [t["efficiency"] for t in per_target]
    leak = [t["leak"] for t in per_target]
    return (f"excitation {min(exc):.4g}..{max(exc):.4g} per unit strength (mean "
            f"{np.mean(exc):.4g}; {_pct(min(eff))}..{_pct(max(eff))} of the most a mask of "
            f"its size gives), leak {_pct(min(leak))}..{_pct(max(leak))} (mean "
            f"{_pct(float(np.mean(leak)))})")


def _rows(rows: list[dict], key: str, human: bool, lead: list | None = None,
          tail: list | None = None) -> list[list]:
    return [(lead or []) + [_cell(k, r[k], human) for k in (key, *_KEYS)] + (tail or [])
            for r in rows]


_NOTES = [
    "target_rate: share of the images of other classes classified as the target; "
    "ratio = target_rate / baseline_target_rate",
    "excitation: |v_j . E mask| (the target eigenvector's activation change per unit "
    "strength); leak: largest |v_k . E mask| over the other stacked eigenvectors, over the "
    "excitation",
]


def sweep_report(doc: dict, human: bool = False) -> Report:
    """One target's sweep, or (``target == "all"``) every target's rows and their mean."""
    key = _swept(doc)
    summary = [("data", f"{doc['data']} ({doc['n']} images)"),
               ("clean accuracy", _pct(doc["clean_accuracy"]))]
    notes = list(_NOTES)
    if doc["variant"] == "top-pixels":
        notes.append("excitation and leak are those of the whole unit mask, before it is cut "
                     "to its top pixels and clamped")
    if human:
        notes.append("rates, accuracies and leak in percent; --format csv or --json for "
                     "exact fractions")
    arrays = {key: np.array([r[key] for r in doc["rows"]])}
    for k in _KEYS[:4]:
        arrays[k] = np.array([r[k] for r in doc["rows"]])
    if doc["target"] != "all":
        summary = [
            ("target", _class_text(doc["target"], doc["target_name"])),
            ("eigenvector", f"#{doc['eig_rank']} (positive eigenvector {doc['eig']}, "
             f"lambda = {doc['eigenvalue']:.4g}), sign "
                            f"{doc['sign']:+d}"),
            ("mask", _one_mask_text(doc)),
            *summary,
            ("clean target rate", _pct(doc["clean_target_rate"])),
            *[(k if k != "mask" else "formula", v) for k, v in _mask_summary(doc)],
        ]
        arrays["excitations"] = np.array([doc["excitation"]])
        return Report("bilin adversarial", doc, summary, [key, *_KEYS],
                      _rows(doc["rows"], key, human), arrays, notes=notes)
    summary = [("targets", f"all {len(doc['per_target'])} classes, each one's positive eigenvector "
                            f"{doc['eig']} (its eig rank: eig_rank)"),
               ("masks", _all_masks_text(doc["per_target"])),
               *summary, *[(k if k != "mask" else "formula", v) for k, v in _mask_summary(doc)]]
    # The table names a class in one cell; CSV/TSV keep the index and the name apart.
    lead = ["target"] if human else ["target", "target_name"]
    rows = []
    for t in doc["per_target"]:
        who = ([_class_text(t["target"], t["target_name"])] if human
               else [t["target"], t["target_name"]])
        rows += _rows(t["rows"], key, human, who, [_cell(k, t[k], human) for k in _MASK_KEYS])
    rows += _rows(doc["rows"], key, human, ["mean"] + [None] * (len(lead) - 1),
                  [None] * len(_MASK_KEYS))
    notes.append("mean rows average each metric over the targets; their ratio is the ratio "
                 "of the mean rates")
    arrays["per_target_target_rate"] = np.array([[r["target_rate"] for r in t["rows"]]
                                                 for t in doc["per_target"]])
    arrays["per_target_baseline_target_rate"] = np.array(
        [[r["baseline_target_rate"] for r in t["rows"]] for t in doc["per_target"]])
    for k in ("excitation", "efficiency", "leak"):
        arrays[f"per_target_{k}"] = np.array([t[k] for t in doc["per_target"]])
    return Report("bilin adversarial --target all", doc, summary,
                  [*lead, key, *_KEYS, *_MASK_KEYS], rows, arrays, notes=notes)


def _pred(p: dict, names: list[str]) -> str:
    return f"{names[p['prediction']]} (logit {p['logits'][p['prediction']]:.4g})"


def input_report(doc: dict, human: bool = False) -> Report:
    """One input before and after the mask (and its permuted baseline)."""
    names = doc["class_names"]
    how = (f"strength {doc['strength']:g}" if doc.get("n_pixels") is None
           else f"top {doc['n_pixels']} pixels at strength {doc['strength']:g}, clamped")
    summary = [("input", doc["input"])]
    if doc["label"] is not None:
        summary.append(("label", names[doc["label"]]))
    summary += [("variant", f"{doc['variant']} ({how}), {doc['inverse']} inverse"),
                ("old prediction", _pred(doc["old"], names))]
    if doc["target"] != "all":
        summary = [("target", _class_text(doc["target"], names[doc["target"]])),
                   ("eigenvector", f"#{doc['eig_rank']} (positive eigenvector {doc['eig']})"),
                   ("mask", _one_mask_text(doc)), *summary,
                   ("new prediction", _pred(doc["new"], names)),
                   ("baseline prediction", _pred(doc["baseline"], names))]
        rows = [[c, names[c], doc["old"]["logits"][c], doc["new"]["logits"][c],
                 doc["baseline"]["logits"][c]] for c in range(len(names))]
        arrays = {k: np.array(doc[k]["logits"]) for k in ("old", "new", "baseline")}
        return Report("bilin adversarial --input", doc, summary,
                      ["class", "name", "old_logit", "new_logit", "baseline_logit"], rows,
                      arrays)
    summary.insert(0, ("targets", f"all {len(doc['targets'])} classes, each one's positive "
                              f"eigenvector {doc['eig']} (its eig rank: eig_rank)"))
    rows = [[t["target"], names[t["new"]["prediction"]], names[t["baseline"]["prediction"]],
             doc["old"]["logits"][t["target"]], t["new"]["logits"][t["target"]],
             _cell("excitation", t["excitation"], human), _cell("leak", t["leak"], human)]
            for t in doc["targets"]]
    arrays = {"new_logits": np.array([t["new"]["logits"] for t in doc["targets"]]),
              "old_logits": np.array(doc["old"]["logits"])}
    return Report("bilin adversarial --input --target all", doc, summary,
                  ["target", "new_prediction", "baseline_prediction", "old_target_logit",
                   "new_target_logit", "excitation", "leak"], rows, arrays)

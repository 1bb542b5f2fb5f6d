"""Direct unit tests of ``bilin_cli.render.views*``: the Report each command's result becomes,
and its text as a terminal and a pipe get it (columns present, numbers never cut, one line
per row when piped, names from files escaped). Result documents are built by hand here,
with numbers chosen to be checkable; a few come from ``bilin_cli.api`` on a tiny model."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import write_image

import bilin_cli as bilin
from bilin_cli.render import views, views_adversarial, views_features, views_network
from bilin_cli.render.output import Report, emit, to_delimited, to_json, to_table

ESC = "\x1b"


# ---------------------------------------------------------------------------- helpers


def piped(report: Report) -> str:
    return to_table(report, color=False, decorate=False)


def terminal(report: Report, width: int) -> str:
    return to_table(report, color=False, width=width, decorate=True)


def table_lines(text: str) -> tuple[list[str], list[str]]:
    """(header line(s), row lines) of a piped table: rows hold the '│' rule."""
    lines = text.splitlines()
    head = [ln for ln in lines if "┃" in ln]
    rows = [ln for ln in lines if "│" in ln]
    return head, rows


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.split("│")]


def numbers_in(text: str) -> list[str]:
    return re.findall(r"[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?%?", text)


def assert_piped_rows(report: Report) -> list[list[str]]:
    """Piped: the header names every column, one line per row, every row's cells whole."""
    text = piped(report)
    head, rows = table_lines(text)
    assert len(head) == 1
    assert [c.strip() for c in head[0].split("┃")] == report.columns
    assert len(rows) == len(report.rows)
    assert ESC not in text
    assert all(ln == ln.rstrip() for ln in text.splitlines())
    return [cells(r) for r in rows]


def assert_numbers_whole(report: Report, width: int) -> str:
    """At ``width`` every number of a number column appears whole, and every text column is
    shown or named in the note that says it was left out to fit."""
    text = terminal(report, width)
    found = set()
    for ln in text.splitlines():
        found.update(numbers_in(ln))
    piped_rows = [cells(r) for r in table_lines(piped(report))[1]]
    flat = " ".join(text.split())
    for c, name in enumerate(report.columns):
        numeric = all(isinstance(row[c], (int, float, np.number)) for row in report.rows
                      if row[c] is not None)
        if numeric:
            for row in piped_rows:
                if row[c]:
                    assert row[c] in found, (name, row[c], text)
        elif f"{name} left out to fit {width} columns" not in flat and \
                not re.search(rf"{name}.* left out to fit", flat):
            # shown: every word of the column is there (text wraps between words)
            for row in piped_rows:
                for word in row[c].split():
                    assert word in text, (name, word, text)
    return text


def eig_doc(**over) -> dict:
    """A ``bilin eig --json`` document: 3 eigenpairs of a 2x3 image model."""
    doc = {
        "eigenvalues": [0.5, -0.25, 1.2345e-05],
        "eigenvectors": [[0.1, -0.9, 0.2, 0.0, 0.3, 0.1],
                         [0.0, 0.0, 0.0, -0.7, 0.7, 0.1],
                         [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]],
        "basis": "input", "layer": 0,
        "direction": {"kind": "class", "index": 2, "name": "two"},
        "n_eigenvalues": 6, "effective_rank": 2.5, "sum_abs_eigenvalues": 1.0,
        "top_k": 3, "top_k_share": 0.7500123, "layout": "image classifier",
        "dtype": "float64", "method": "dense", "notes": ["a note"], "input_shape": [2, 3],
    }
    doc.update(over)
    return doc


# ---------------------------------------------------------------------------- eig


def test_eig_report_columns_rows_and_arrays():
    r = views.eig_doc_report(eig_doc())
    assert r.columns == ["rank", "eigenvalue", "share", "cumulative_share", "largest_entries"]
    assert [row[0] for row in r.rows] == [1, 2, 3]  # ranks from 1
    assert [row[1] for row in r.rows] == [0.5, -0.25, 1.2345e-05]
    assert [row[2] for row in r.rows] == pytest.approx([0.5, 0.25, 1.2345e-05])
    assert [row[3] for row in r.rows] == pytest.approx([0.5, 0.75, 0.75 + 1.2345e-05])
    # (row, column) of the 2x3 input, largest |entry| first, signed
    assert r.rows[0][4] == "(0, 1):-0.900 (1, 1):+0.300 (0, 2):+0.200"
    assert r.rows[1][4].startswith("(1, 0):-0.700 (1, 1):+0.700")
    np.testing.assert_array_equal(r.arrays["eigenvalues"], [0.5, -0.25, 1.2345e-05])
    assert r.arrays["eigenvectors"].shape == (3, 6)
    assert r.arrays["eigenvalues"].dtype == np.float64
    summary = dict(r.summary)
    assert summary["direction"] == "class 2 (two)"
    assert summary["basis"] == "input (pixels: E^T v)"
    assert summary["eigenvalues"] == "6 (dense, float64)"
    assert summary["top-3 share"] == "75.00% of sum |lambda|"
    assert summary["effective rank"].startswith("2.5  ")
    assert r.notes == ["a note"] and r.percent == ("share", "cumulative_share")


def test_eig_report_piped_and_narrow():
    r = views.eig_doc_report(eig_doc())
    rows = assert_piped_rows(r)
    assert rows[0][:4] == ["1", "0.5", "50.00%", "50.00%"]
    assert rows[2][1] == "1.2345e-05" and rows[2][2] == "0.0012%"  # tiny shares keep 2 digits
    for width in (30, 50, 80):
        assert_numbers_whole(r, width)


def test_eig_report_flat_entries_when_the_shape_does_not_fit():
    r = views.eig_doc_report(eig_doc(input_shape=[4, 4], basis="hidden"))
    assert r.rows[0][4] == "1:-0.900 4:+0.300 2:+0.200"
    assert dict(r.summary)["basis"] == "hidden"


def test_eig_report_bias_parts_and_tokens():
    tokens = [{"positive": [{"token": 3, "text": "the cat", "value": 1.0}],
               "negative": [{"token": 9, "text": None, "value": -1.0}]},
              {"positive": [], "negative": [{"token": 1, "text": "\n", "value": -0.5}]},
              {"positive": [{"token": 0, "text": "", "value": 0.1}], "negative": []}]
    doc = eig_doc(bias_parts={"interaction": "...", "linear": [3.0, 4.0], "linear_norm": 5.0,
                              "constant": -0.125}, tokens=tokens, input_shape=None)
    r = views.eig_doc_report(doc)
    assert r.columns[-1] == "tokens"
    assert [row[4] for row in r.rows] == ["the␣cat | #9", "- | \\n", "'' | -"]
    summary = dict(r.summary)
    assert summary["linear part"] == "norm 5 (from biases)"
    assert summary["constant part"] == "-0.125"
    np.testing.assert_array_equal(r.arrays["linear"], [3.0, 4.0])
    assert float(r.arrays["constant"]) == -0.125
    assert_piped_rows(r)


def test_eig_report_without_a_spectrum_total():
    r = views.eig_doc_report(eig_doc(sum_abs_eigenvalues=None, effective_rank=None,
                                     top_k_share=None))
    assert [row[2] for row in r.rows] == [None] * 3
    assert "sum |lambda|" not in dict(r.summary)
    rows = assert_piped_rows(r)
    assert rows[0][2] == "" and rows[0][3] == ""


@pytest.mark.parametrize("direction,text", [
    ({"kind": "class", "index": 3}, "class 3"),
    ({"kind": "class", "index": 3, "name": "3"}, "class 3"),
    ({"kind": "class", "index": 3, "name": "cat", "path": "direct"},
     "class 3 (cat), direct path through the head"),
    ({"kind": "token", "index": 7, "string": "ab"}, "token 7 'ab'"),
    ({"kind": "token", "index": 7}, "token 7"),
    ({"kind": "sae_feature", "sae": "s.safetensors", "feature": 4, "format": "saelens"},
     "SAE feature 4 of s.safetensors (saelens)"),
    ({"kind": "chain", "eigenvector": 2, "from_layer": 1, "eigenvalue": 0.5},
     "eigenvector 2 of layer 1 (λ=+0.5)"),
    ({"kind": "file", "path": "u.npy", "norm": 2.0}, "file u.npy (norm 2)"),
])
def test_direction_text_in_the_summary(direction, text):
    r = views.eig_doc_report(eig_doc(direction=direction))
    assert dict(r.summary)["direction"] == text


@pytest.mark.parametrize("info,label", [
    ({"kind": "class", "index": 3, "name": "cat"}, "cat"),
    ({"kind": "class", "index": 3}, "3"),
    ({"kind": "token", "index": 5, "string": "x"}, "'x'"),
    ({"kind": "token", "index": 5}, "token 5"),
    ({"kind": "sae_feature", "feature": 8}, "feature 8"),
    ({"kind": "attention_query", "layer": 1, "head": 2, "query_token": 4},
     "head 1.2 query 4"),
    ({"kind": "file", "path": "/a/b/u.npy"}, "u.npy"),
])
def test_direction_label(info, label):
    assert views.direction_label(info) == label


@pytest.mark.parametrize("entry,text", [
    ({"token": 4, "text": None}, "#4"),
    ({"token": 4, "text": " a b"}, "␣a␣b"),
    ({"token": 4, "text": "\t\n"}, "\\t\\n"),
    ({"token": 4, "text": ""}, "''"),
    ({"token": 4, "text": "\x1b[31m"}, "\\x1b[31m"),
])
def test_token_text(entry, text):
    assert views.token_text(entry) == text


def test_eig_report_of_a_decomposition_equals_its_document(tmp_path):
    write_image(tmp_path / "m", d=5, n_in=7, n_cls=3, seed=2)
    dec = bilin.eig(tmp_path / "m", cls=1, top=3)
    a, b = views.eig_report(dec), views.eig_doc_report(dec.as_dict())
    assert piped(a) == piped(b)
    assert to_delimited(a, ",") == to_delimited(b, ",")
    np.testing.assert_array_equal(a.arrays["eigenvalues"], dec.eigenvalues)
    # CSV holds the exact float, the table the rounded one
    csv_rows = to_delimited(a, ",").splitlines()[1:]
    assert [float(r.split(",")[1]) for r in csv_rows] == dec.eigenvalues.tolist()


# ---------------------------------------------------------------------------- eval / truncate


def test_eval_report():
    doc = {"data": "d.npz", "n": 4, "accuracy": 0.75,
           "per_class": [{"class": 0, "name": "zero", "n": 2, "accuracy": 1.0},
                         {"class": 1, "name": "o\x1bne", "n": 2, "accuracy": 0.5}],
           "confusion": [[2, 0], [1, 1]]}
    r = views.eval_report(doc)
    assert r.columns == ["class", "name", "n", "accuracy"]
    assert dict(r.summary)["accuracy"] == "75.00%"
    np.testing.assert_array_equal(r.arrays["confusion"], [[2, 0], [1, 1]])
    assert "rows: true class, columns: predicted" in r.notes[0]
    assert r.notes[0].splitlines()[1:] == ["    2     0", "    1     1"]
    rows = assert_piped_rows(r)
    assert rows[0] == ["0", "zero", "2", "100.00%"]
    assert rows[1][1] == "o\\x1bne"  # escaped, not cut
    no_confusion = views.eval_report({k: v for k, v in doc.items() if k != "confusion"})
    assert no_confusion.arrays is None and no_confusion.notes == []


def test_truncation_sweep_report():
    doc = {"data": "d.npz", "n": 100, "full_accuracy": 0.98, "augmented": True,
           "sweep": [{"k": 0, "accuracy": 0.1, "drop": 0.88},
                     {"k": 5, "accuracy": 0.9725, "drop": 0.0075}]}
    r = views.sweep_report(doc)
    assert r.columns == ["k", "accuracy", "drop"]
    summary = dict(r.summary)
    assert summary["data"] == "d.npz (100 examples)" and summary["full model"] == "98.00%"
    assert "augmented" in summary
    np.testing.assert_array_equal(r.arrays["k"], [0, 5])
    rows = assert_piped_rows(r)
    assert rows == [["0", "10.00%", "88.00%"], ["5", "97.25%", "0.75%"]]
    assert "augmented" not in dict(views.sweep_report({**doc, "augmented": False}).summary)


def test_truncate_report():
    doc = {"output": "k2.safetensors", "hidden_units": 4, "bound": "|e| <= m ||x||^2",
           "augmented": False,
           "per_class": [{"class": 0, "name": "a", "k": 2, "share_kept": 0.5,
                          "max_discarded_abs_eigenvalue": 1.5e-07},
                         {"class": 1, "name": "b", "k": 2, "share_kept": 1.0,
                          "max_discarded_abs_eigenvalue": 0.0}]}
    r = views.truncate_report(doc)
    assert r.columns == ["class", "name", "k", "share_kept", "max_discarded_abs_eigenvalue"]
    summary = dict(r.summary)
    assert summary["checkpoint"] == "k2.safetensors" and summary["hidden units"] == "4"
    rows = assert_piped_rows(r)
    assert rows[0] == ["0", "a", "2", "50.00%", "1.5e-07"]
    assert_numbers_whole(r, 40)


# ---------------------------------------------------------------------------- spectrum


def test_spectrum_report_from_the_api(tmp_path):
    write_image(tmp_path / "m", d=5, n_in=7, n_cls=3, seed=2)
    doc = bilin.spectrum(tmp_path / "m").as_dict()
    r = views.spectrum_report(doc)
    assert r.columns == ["direction", "top_positive", "top_negative", "effective_rank", "k50",
                         "k90", "k99"]
    rows = assert_piped_rows(r)
    assert [row[0] for row in rows] == ["class 0 (c0)", "class 1 (c1)", "class 2 (c2)"]
    for row, d in zip(rows, doc["directions"], strict=True):
        assert row[1] == " ".join(f"{v:.3g}" for v in d["top_positive"])
        assert row[4:] == [str(d["k50"]), str(d["k90"]), str(d["k99"])]
    assert dict(r.summary)["eigenvalues per direction"] == "5"
    assert_numbers_whole(r, 50)


def test_spectrum_report_of_sae_features():
    row = {"n_eigenvalues": 4, "top_positive": [1.0], "top_negative": [-0.5],
           "sum_abs_eigenvalues": 1.5, "effective_rank": 1.8, "k50": 1, "k90": 2, "k99": 2}
    doc = {"layout": "lm", "layer": 1, "n_eigenvalues": 4, "directions": [
        {**row, "direction": {"kind": "sae_feature", "sae": "out.st", "feature": f,
                              "format": "paper"}} for f in (3, 8)]}
    r = views.spectrum_report(doc)
    assert [x[0] for x in r.rows] == ["SAE feature 3", "SAE feature 8"]
    assert ("output SAE", "out.st") in r.summary
    # two SAEs: each row says which
    doc["directions"][1]["direction"]["sae"] = "other.st"
    r2 = views.spectrum_report(doc)
    assert r2.rows[1][0] == "SAE feature 8 of other.st (paper)"


# ---------------------------------------------------------------------------- info


def test_info_report_of_a_recognised_checkpoint(tmp_path):
    write_image(tmp_path / "m", d=5, n_in=7, n_cls=3, seed=2)
    doc = bilin.info(tmp_path / "m")
    r = views.info_report(doc)
    summary = dict(r.summary)
    assert summary["layout"] == "image classifier"
    assert summary["embedding"] == "5x7"
    assert summary["outputs"].startswith("3 classes (--class C): c0, c1, c2")
    assert summary["parameters"] == f"{doc['n_parameters']:,} in 3 tensors"
    assert r.columns == ["index", "d", "h", "o", "out_space", "bias"]
    rows = assert_piped_rows(r)
    assert rows == [["0", "5", "5", "3", "logits", "no"]]


def test_info_report_of_an_unrecognised_checkpoint(tmp_path):
    from safetensors.numpy import save_file

    save_file({"a\x1b]0;x": np.zeros((2, 3), np.float32), "s": np.zeros((), np.float32)},
              str(tmp_path / "x.safetensors"))
    doc = bilin.info(tmp_path / "x.safetensors")
    r = views.info_report(doc)
    assert dict(r.summary)["layout"] == "not recognised"
    assert r.columns == ["name", "shape", "dtype"]
    rows = assert_piped_rows(r)
    assert sorted(rows) == sorted([["a\\x1b]0;x", "2x3", "F32"], ["s", "scalar", "F32"]])


def test_suggest_map_report_is_the_map_and_warnings():
    r = views.suggest_map_report({"layers": [{"wv": "x"}]}, ["two heads"])
    assert json.loads(to_json(r)) == {"layers": [{"wv": "x"}]}
    assert r.warnings == ["ambiguous: two heads; edit the map before using it"]


# ---------------------------------------------------------------------------- features


def test_rank_features_report_and_certificate():
    cert = {"features": 100, "dense": 10, "excluded": 90, "lanczos_steps": [20, 40],
            "max_excluded_upper_bound": 0.3, "cut": 0.5, "failure_probability_per_feature":
            1e-12, "failure_probability_bound": 9e-11, "screened_dense_float32": 3}
    doc = {"layer": 1, "sae_out": "out", "features_ranked": 100, "k": 2,
           "sorted_by": "top_k_share", "route": "certified", "certificate": cert,
           "features": [{"feature": 7, "top_k_share": 0.9, "effective_rank": 1.2,
                         "sum_abs_eigenvalues": 3.0, "top_eigenvalues": [2.0, -0.7]}]}
    r = views.rank_features_report(doc)
    assert r.columns == ["feature", "top_k_share", "effective_rank", "sum_abs_eigenvalues",
                         "top_eigenvalues"]
    assert dict(r.summary)["sorted by"] == "top k share"
    assert dict(r.summary)["route"].startswith("certified")
    rows = assert_piped_rows(r)
    assert rows == [["7", "90.00%", "1.2", "3", "+2 -0.7"]]
    line = views.certificate_line(cert)
    assert line == r.notes[-1]
    assert line.startswith("certificate: 10 of 100 features computed exactly")
    assert "20+40 steps" in line and "float64 where it mattered" in line
    assert views.certificate_line({}) is None
    assert views.certificate_line({**cert, "excluded": 0}) is None


def test_interact_report():
    doc = {"layer": 0, "feature": 5, "sae_out": "o", "sae_in": "i", "n_input_features": 16,
           "n_eigenvalues": 8, "effective_rank": 2.0,
           "pairs": {"self": [{"i": 1, "j": 1, "value": 0.5, "coefficient": 0.5}],
                     "cross": [{"i": 1, "j": 2, "value": -0.25, "coefficient": -0.5}]},
           "eigen": [{"rank": 1, "eigenvalue": 0.9, "features": [{"feature": 2,
                                                                  "loading": -0.8}]}]}
    r = views.interact_report(doc)
    rows = assert_piped_rows(r)
    assert rows == [["self", "1", "1", "0.5", "0.5"], ["cross", "1", "2", "-0.25", "-0.5"]]
    assert r.notes[0] == "eigenvector 1 (λ=+0.9): input features 2:-0.800"


def test_compare_report():
    doc = {"a": "A", "b": "B", "space": "input", "top_k": 3,
           "mean": {"rank_matched_mean": 0.5, "hungarian_mean": 0.75, "qfs": None},
           "classes": [{"class": 0, "name": "z", "rank_matched_mean": 0.5,
                        "hungarian_mean": 0.75, "qfs": None, "qfs_all": 0.125}], "notes": []}
    r = views_features.compare_report(doc)
    summary = dict(r.summary)
    assert summary["space"] == "input (the inputs: E^T v)"
    assert summary["mean"] == "rank-matched |cos| 0.5000, Hungarian |cos| 0.7500, QFS top-K -"
    rows = assert_piped_rows(r)
    assert rows == [["0", "z", "0.5", "0.75", "", "0.125"]]


def test_explain_report_rows_sum_to_the_logit(tmp_path):
    write_image(tmp_path / "m", d=5, n_in=7, n_cls=3, seed=2)
    ex = bilin.explain(tmp_path / "m", np.linspace(0, 1, 7), classes=2, dtype=np.float64)
    r = views_features.explain_report(ex, top=2)
    assert r.columns == ["class", "name", "sign", "rank", "eigenvalue", "projection",
                         "contribution"]
    doc = r.doc
    assert len(doc["classes"]) == 2
    for cd in doc["classes"]:
        assert cd["check"]["relative_residual"] < 1e-9
        for row in cd["positive"] + cd["negative"]:
            assert row["contribution"] == pytest.approx(row["eigenvalue"]
                                                        * row["projection"] ** 2)
    assert_piped_rows(r)


def test_hosvd_report_from_the_api(tmp_path):
    write_image(tmp_path / "m", d=5, n_in=7, n_cls=3, seed=2)
    res = bilin.hosvd(tmp_path / "m", components=2, top=2)
    r = views_features.hosvd_report(res)
    assert r.columns == list(views_features.HOSVD_COLUMNS)
    rows = assert_piped_rows(r)
    assert [row[0] for row in rows] == ["1", "2"]
    assert np.all(np.diff(r.arrays["sigma"]) <= 0)
    assert [c["component"] for c in r.doc["components"]] == [1, 2]


# ---------------------------------------------------------------------------- network / attention


def _net_doc(n: int) -> dict:
    cos = np.eye(n).tolist()
    cos[0][1] = cos[1][0] = 0.875
    return {"networks": [f"runs/seed{i}/model.safetensors" for i in range(n)],
            "measure": "cosine", "exact": True, "approximation": [],
            "covers": [], "cosine": cos, "inner": np.full((n, n), 2.0).tolist(),
            "outputs": [{"index": 0, "name": "a", "cosine": [[1, 0.5], [0.5, 1]],
                         "inner": [[1, 0.25], [0.25, 1]]}], "notes": []}


def test_network_report_of_two_and_of_three():
    r2 = views_network.network_report(_net_doc(2))
    assert r2.columns == ["output", "name", "cosine", "inner"]
    assert dict(r2.summary)["cosine"] == "0.875000"
    assert assert_piped_rows(r2) == [["0", "a", "0.5", "0.25"]]
    r3 = views_network.network_report(_net_doc(3))
    # short labels: the folder of a model.safetensors
    assert r3.columns == ["network", "seed0", "seed1", "seed2"]
    rows = assert_piped_rows(r3)
    assert rows[0] == ["seed0", "1", "0.875", "0"]
    assert r3.arrays["cosine"].shape == (3, 3)


# ---------------------------------------------------------------------------- adversarial


def _adv_doc() -> dict:
    rows = [{"strength": 0.5, "accuracy": 0.9, "target_rate": 0.05,
             "baseline_accuracy": 0.95, "baseline_target_rate": 0.01, "ratio": 5.0},
            {"strength": 1.0, "accuracy": 0.4, "target_rate": 0.5123,
             "baseline_accuracy": 0.9, "baseline_target_rate": 0.02, "ratio": 25.615}]
    return {"swept": "strength", "data": "d.npz", "n": 50, "clean_accuracy": 0.96,
            "variant": "dense", "target": 3, "target_name": "3", "eig_rank": 2, "eig": 1,
            "eigenvalue": 0.75, "sign": 1, "excitation": 0.125, "efficiency": 0.5,
            "leak": 0.1, "leak_class": 4, "leak_eig_rank": 1, "clean_target_rate": 0.01,
            "per_class": 1, "stacked": 10, "inverse": "hidden",
            "conditioning": {"matrix": "S", "smallest_singular_value": 0.1,
                             "condition_number": 12.0},
            "projection": "E^T", "baseline": "permuted", "rows": rows}


def test_adversarial_sweep_table_in_percent_csv_exact():
    doc = _adv_doc()
    human = views_adversarial.sweep_report(doc, human=True)
    exact = views_adversarial.sweep_report(doc, human=False)
    assert human.columns == ["strength", "accuracy", "target_rate", "baseline_accuracy",
                             "baseline_target_rate", "ratio"]
    rows = assert_piped_rows(human)
    assert rows[1] == ["1", "40.00%", "51.23%", "90.00%", "2.00%", "25.61"]
    csv = to_delimited(exact, ",").splitlines()
    assert csv[2] == "1.0,0.4,0.5123,0.9,0.02,25.615"
    summary = dict(human.summary)
    assert summary["target"] == "3"
    assert summary["eigenvector"] == ("#2 (positive eigenvector 1, lambda = 0.75), sign +1")
    assert "most into class 4 eigenvector #1" in summary["mask"]


# ---------------------------------------------------------------------------- emit, piped


def test_emit_to_a_pipe_is_one_line_per_row_however_long(capsys):
    long_name = "name-" + "x" * 300
    doc = {"data": "d", "n": 1, "accuracy": 1.0,
           "per_class": [{"class": i, "name": f"{long_name}{i}", "n": 1, "accuracy": 1 / 3}
                         for i in range(3)]}
    emit(views.eval_report(doc), "table")
    out, err = capsys.readouterr()
    assert err == ""
    head, rows = table_lines(out)
    assert len(rows) == 3
    for i, row in enumerate(rows):
        assert f"{long_name}{i}" in row and "33.33%" in row
    assert "bilin eval" not in out  # no title line in a pipe
    assert ESC not in out


def test_narrow_terminal_drops_text_not_numbers():
    doc = {"data": "d", "n": 1, "accuracy": 1.0,
           "per_class": [{"class": 0, "name": "a long class name " * 3, "n": 123456789,
                          "accuracy": 0.123456}]}
    r = views.eval_report(doc)
    text = assert_numbers_whole(r, 24)
    assert "123456789" in text and "12.35%" in text

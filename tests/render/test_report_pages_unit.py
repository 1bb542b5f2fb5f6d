"""Direct unit tests of ``bilin report``'s pages (``render.report_pages``, ``render.report_html``
``render``) and figures (``render.report_figures``), on tiny models: every eigenvector
shown, links valid, HTML balanced, names from files escaped, figure data equal to the
numbers they draw."""

from __future__ import annotations

import json
import re
from html import escape
from html.parser import HTMLParser

import numpy as np
import pytest
from conftest import write_image, write_toy
from safetensors.numpy import save_file

import bilin_cli as bilin
from bilin_cli.render import report_figures as rf
from bilin_cli.render import report_pages as rp
from bilin_cli.render.report_html import ASSETS, render
from bilin_cli.render.style import eigenvalue_text

D, N_IN, SHAPE, N_CLS = 5, 12, (3, 4), 3
HOSTILE = ["<b>a&b</b>", 'q"uote\'s', "<script>alert(1)</script>"]
VOID = {"meta", "link", "br", "img", "input", "hr", "wbr", "col", "area", "base", "source"}


class Page(HTMLParser):
    """Tags balanced, every href/src collected, every id collected."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.links: list[str] = []
        self.ids: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("href", "src"):
                self.links.append(v)
            if k == "id":
                self.ids.append(v)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] != "script":
            self.text.append(data)


def parse(html: str) -> Page:
    p = Page()
    p.feed(html)
    p.close()
    assert not p.errors, p.errors[:5]
    assert p.stack == [], p.stack
    assert html.startswith("<!DOCTYPE html>")
    return p


def image_model(tmp_path, names=None, seed=5):
    path = tmp_path / f"img{seed}"
    write_image(path, d=D, n_in=N_IN, n_cls=N_CLS, seed=seed)
    cfg = json.loads((path / "config.json").read_text())
    cfg["input_shape"] = list(SHAPE)
    if names:
        cfg["classes"] = names
    (path / "config.json").write_text(json.dumps(cfg))
    return path


@pytest.fixture
def image_report(tmp_path):
    path = image_model(tmp_path, HOSTILE)
    return path, bilin.report(path, top=D)  # top = d: every eigenvector has a cell


# ---------------------------------------------------------------------------- the data


def test_pages_carry_bilin_eig_numbers(image_report):
    path, r = image_report
    assert [p.key for p in r.pages] == ["class-0", "class-1", "class-2"]
    for c, page in enumerate(r.pages):
        ref = bilin.eig(path, cls=c, top=None)
        np.testing.assert_array_equal(page.eigenvalues, ref.eigenvalues)
        shown = page.positive + page.negative
        # with top = d every eigenpair is shown once, by its rank from 1
        assert sorted(e.rank for e in shown) == list(range(1, D + 1))
        for e in shown:
            assert e.eigenvalue == ref.eigenvalues[e.rank - 1]
            np.testing.assert_array_equal(e.vector, ref.eigenvectors[e.rank - 1])
            assert np.sign(e.eigenvalue) == (1 if e in page.positive else -1)
        assert page.image_shape == SHAPE and page.basis == "input"


def test_bound_curve_is_the_largest_discarded_eigenvalue(image_report):
    _, r = image_report
    for page in r.pages:
        a = np.sort(np.abs(page.eigenvalues.astype(np.float64)))[::-1]
        b = page.bound
        np.testing.assert_array_equal(b["k"], np.arange(D + 1))
        np.testing.assert_allclose(b["max_discarded"], np.append(a, 0.0))
        np.testing.assert_allclose(b["share_kept"], np.concatenate([[0], np.cumsum(a)]) / a.sum())
        assert b["at_top"] == 0.0 and b["share_at_top"] == pytest.approx(1.0)


def test_bound_at_top_agrees_with_truncate(tmp_path):
    path = image_model(tmp_path)
    r = bilin.report(path, top=2)
    t = bilin.truncate(path, rank=2, evaluate=False)
    for page, row in zip(r.pages, t.per_class, strict=True):
        assert page.bound["top"] == 2
        assert page.bound["at_top"] == pytest.approx(row["max_discarded_abs_eigenvalue"])
        assert page.bound["share_at_top"] == pytest.approx(row["share_kept"])


# ---------------------------------------------------------------------------- the HTML


def test_every_eigenvector_has_a_figure_titled_by_rank_and_eigenvalue(image_report):
    _, r = image_report
    for i, page in enumerate(r.pages):
        html = rp.direction_page(r, i)
        parse(html)
        titles = re.findall(r'"#(\d+)  \\u03bb = ([^"]+)"', html)
        expected = [(str(e.rank), eigenvalue_text(e.eigenvalue))
                    for e in page.positive + page.negative]
        assert titles == expected
        assert html.count('class="cell"') == D
        # figure ids are unique and numbered in order
        ids = parse(html).ids
        figs = [x for x in ids if x.startswith("fig-")]
        assert figs == [f"fig-{n}" for n in range(1, len(figs) + 1)]


def test_fewer_shown_than_exist_says_so_by_sign(tmp_path):
    path = image_model(tmp_path)
    r = bilin.report(path, top=1)
    page = r.pages[0]
    html = rp.direction_page(r, 0)
    titles = re.findall(r'"#(\d+)  \\u03bb', html)
    assert titles == [str(page.positive[0].rank), str(page.negative[0].rank)]


def test_links_are_relative_and_point_at_files_of_the_report(image_report):
    _, r = image_report
    site = render(r)
    assert set(site) == {"index.html", "class-0.html", "class-1.html", "class-2.html"}
    files = set(site) | set(ASSETS)
    for name, html in site.items():
        p = parse(html)
        assert "report.css" in p.links and "plotly.min.js" in p.links
        for link in p.links:
            assert link in files, (name, link)
    # the overview links every page; each page links the overview and its neighbours
    assert [x for x in parse(site["index.html"]).links if x.startswith("class-")] == [
        "class-0.html", "class-1.html", "class-2.html"]
    assert parse(site["class-0.html"]).links[2:] == ["index.html", "class-1.html"]
    assert parse(site["class-1.html"]).links[2:] == ["index.html", "class-0.html",
                                                     "class-2.html"]
    assert parse(site["class-2.html"]).links[2:] == ["index.html", "class-1.html"]


def test_names_from_files_are_escaped(image_report):
    _, r = image_report
    for name, html in render(r).items():
        for bad in HOSTILE:
            assert bad not in html, (name, bad)
        assert "<script>alert" not in html and "</script>)" not in html
        # every <script> is plotly's (the asset or a newPlot call), none from a name
        for m in re.finditer(r"<script[^>]*>(.*?)</script>", html, re.S):
            assert "alert(1)" not in m.group(1) or "&lt;" in m.group(1)
        text = " ".join(parse(html).text)
        if name == "class-2.html":
            assert "class 2 (<script>alert(1)</script>) — layer 0" in text  # read as text
    index_text = " ".join(parse(render(r)["index.html"]).text)
    for label in HOSTILE:
        assert label in index_text


def test_index_table_has_one_row_per_page_with_its_summary(image_report):
    _, r = image_report
    html = rp.index_page(r)
    rows = re.findall(r'<tr><td class="l"><a href="(class-\d\.html)">.*?</tr>', html)
    assert rows == [f"class-{c}.html" for c in range(N_CLS)]
    for page in r.pages:
        row = re.search(rf'<tr><td class="l"><a href="{page.key}\.html">.*?</tr>',
                        html).group(0)
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        assert cells[4] == f"{page.summary['effective_rank']:.2f}"
        assert cells[6:9] == [str(page.summary[k]) for k in ("k50", "k90", "k99")]
        top_pos = page.summary["top_positive"]
        assert cells[2] == (eigenvalue_text(top_pos[0]) if top_pos else "&ndash;")
    assert "no labelled data (give --data)" in html


def test_pages_of_a_model_without_an_image_shape_draw_bars(tmp_path):
    write_toy(tmp_path / "toy.safetensors", d=4, h=6, o=3, seed=4)
    r = bilin.report(tmp_path / "toy.safetensors", top=4)
    for i, page in enumerate(r.pages):
        html = rp.direction_page(r, i)
        parse(html)
        assert page.image_shape is None and page.basis == "hidden"
        assert html.count('"type":"bar"') >= len(page.positive + page.negative)
        assert '"type":"heatmap"' not in html
        assert "the layer&#x27;s input space" in html or "the layer's input space" in html


def write_lm(path, d=6, h=8, vocab=7):
    """The paper's bilinear transformer keys, one layer, written with numpy (no torch)."""
    r = np.random.default_rng(1)
    t = {"transformer.wte.weight": (vocab, d), "lm_head.weight": (vocab, d),
         "transformer.h.0.mlp.w.weight": (2 * h, d), "transformer.h.0.mlp.p.weight": (d, h)}
    path.mkdir()
    save_file({k: r.standard_normal(s).astype(np.float32) for k, s in t.items()},
              str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({"n_layer": 1, "d_model": d, "vocab": [
        "a", " b", "<c>", "\n", "d&", "e", "f"][:vocab]}))


def test_language_model_pages_read_tokens(tmp_path):
    write_lm(tmp_path / "lm")
    r = bilin.report(tmp_path / "lm", tokens=[0, 2], top=2)
    assert [p.key for p in r.pages] == ["token-0", "token-2"]
    assert [p.label for p in r.pages] == ["token 0 'a'", "token 2 '<c>'"]
    for i, page in enumerate(r.pages):
        html = rp.direction_page(r, i)
        parse(html)
        for e in page.positive + page.negative:
            assert e.tokens is not None
            for t in e.tokens["positive"] + e.tokens["negative"]:
                assert f'<span class="tok">{escape(repr(t["text"]))}</span> ' \
                    f'{t["value"]:+.3g}' in html
        assert "tokens: direct path from the embedding" in html
        assert "<c>" not in html and "&lt;c&gt;" in html


def test_pages_with_data_show_the_curve_and_the_mask(tmp_path):
    path = image_model(tmp_path)
    r = np.random.default_rng(0)
    x = r.integers(0, 256, (60, *SHAPE), dtype=np.uint8)
    y = np.arange(60) % N_CLS
    np.savez(tmp_path / "d.npz", x=x, y=y.astype(np.uint8))
    rep = bilin.report(path, top=2, data=tmp_path / "d.npz")
    assert rep.truncation is not None and rep.truncation["n"] == 60
    ks = [row["k"] for row in rep.truncation["sweep"]]
    assert ks[0] == 0 and ks[-1] == D
    assert rep.truncation["sweep"][-1]["accuracy"] == pytest.approx(
        rep.truncation["full_accuracy"])
    index = rp.index_page(rep)
    parse(index)
    assert "Truncation: accuracy against K" in index
    for i, page in enumerate(rep.pages):
        assert page.mask is not None
        assert page.mask["eig_rank"] == page.positive[0].rank
        html = rp.direction_page(rep, i)
        parse(html)
        assert "Adversarial mask of the top positive eigenvector" in html
        assert f"Eigenvector #{page.mask['eig_rank']} (" in html


# ---------------------------------------------------------------------------- the figures


def r4(values):
    return [float(f"{v:.4g}") for v in values]


def test_spectrum_figure_splits_signs_and_keeps_ranks():
    lam = np.array([0.9, -0.5, 0.25, -1.23456e-5, 0.0])
    fig = rf.spectrum(lam, "t")
    pos, neg = fig["data"]
    assert pos["x"] == [1, 3] and pos["y"] == r4([0.9, 0.25])
    assert neg["x"] == [2, 4] and neg["y"] == r4([-0.5, -1.23456e-5])
    assert pos["customdata"] == [[eigenvalue_text(0.9)], [eigenvalue_text(0.25)]]
    assert fig["layout"]["title"]["text"] == "t"


def test_signed_image_is_symmetric_about_zero():
    v = np.array([0.5, -2.0, 1.0, 0.0, 0.25, 0.125])
    fig = rf.signed_image(v, (2, 3), "img")
    (h,) = fig["data"]
    assert h["z"] == [r4([0.5, -2.0, 1.0]), r4([0.0, 0.25, 0.125])]
    assert h["zmid"] == 0 and h["zmin"] == -2.0 and h["zmax"] == 2.0
    assert fig["layout"]["yaxis"]["autorange"] == "reversed"  # row 0 on top, as images
    zero = rf.signed_image(np.zeros(6), (2, 3), "z")["data"][0]
    assert zero["zmax"] == 1.0 and zero["zmin"] == -1.0  # no zero-width colour range


def test_signed_bars_colour_by_sign():
    fig = rf.signed_bars(np.array([1.0, -1.0, 0.0]), "b")
    (bar,) = fig["data"]
    assert bar["x"] == [0, 1, 2] and bar["y"] == [1.0, -1.0, 0.0]
    c = bar["marker"]["color"]
    assert c[0] == c[2] != c[1]


def test_bound_figure_draws_the_curves_given():
    b = {"k": np.arange(3), "max_discarded": np.array([2.0, 1.0, 0.0]),
         "share_kept": np.array([0.0, 2 / 3, 1.0])}
    fig = rf.bound(b, "b", "layer input")
    factor, share = fig["data"]
    assert factor["x"] == [0, 1, 2] and factor["y"] == [2.0, 1.0, 0.0]
    assert share["y"] == r4([0.0, 2 / 3, 1.0]) and share["yaxis"] == "y2"


def test_heatmap_pads_short_spectra_with_gaps():
    fig = rf.spectra_heatmap(["a", "b"], [np.array([1.0, -0.5, 0.25]), np.array([2.0])], 3,
                             "h")
    (h,) = fig["data"]
    assert h["z"] == [[1.0, -0.5, 0.25], [2.0, None, None]]
    assert h["x"] == [1, 2, 3] and h["y"] == ["a", "b"]
    assert h["zmax"] == 2.0 and h["zmin"] == -2.0


def test_accuracy_curve_and_effective_ranks():
    doc = {"full_accuracy": 0.9, "sweep": [{"k": 0, "accuracy": 0.1}, {"k": 5,
                                                                       "accuracy": 0.85}]}
    trunc, full = rf.accuracy_curve(doc, "acc")["data"]
    assert trunc["x"] == ["0", "5"] and trunc["y"] == [0.1, 0.85]
    assert full["y"] == [0.9, 0.9]
    (bars,) = rf.effective_ranks(["a", "b"], [1.23456, 7.0], "e")["data"]
    assert bars["x"] == ["a", "b"] and bars["y"] == [1.235, 7.0]


def test_figures_html_snippets_are_numbered_and_carry_no_plotly_js():
    figs = rf.Figures()
    a = figs.html(rf.signed_bars(np.ones(3), "x"), 200)
    b = figs.html(rf.signed_bars(np.ones(3), "y"), 200, 300)
    assert 'id="fig-1"' in a and 'id="fig-2"' in b
    assert "Plotly.newPlot" in a and len(a) < 20_000  # plotly.js itself is not inlined
    assert re.search(r'"displayModeBar":\s*false', b) and '"displayModeBar"' not in a
    assert re.search(r'"displaylogo":\s*false', a)

"""Pictures: the eigenspectrum PNG, eigenvectors in the terminal, and chained layers."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import Ref, reference_eigvals, reference_Q, write_image


def read_png(path):
    import matplotlib.image

    return matplotlib.image.imread(path)[..., :3]


def test_plot_draws_rdbu_eigenvectors(cli, tmp_path):
    write_image(tmp_path / "m", d=12, n_in=25, n_cls=3)
    code, out, err = cli("plot", tmp_path / "m", "--class", "all", "--n", "2", "-o",
                         tmp_path / "eig.png")
    assert code == 0, err
    img = read_png(tmp_path / "eig.png")
    assert img.shape[0] > 300 and img.shape[1] > 500 and img.std() > 0.05
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    assert ((b - r > 0.3) & (b - g > 0.2)).sum() > 50  # blue: positive entries
    assert ((r - b > 0.3) & (r - g > 0.2)).sum() > 50  # red: negative entries
    code, out, err = cli("plot", tmp_path / "m", "--class", "1", "-o", tmp_path / "eig.png")
    assert code == 1 and "--force" in err
    code, out, err = cli("plot", tmp_path / "m", "--class", "1", "--shape", "4x4", "-o",
                         tmp_path / "x.png")
    assert code == 1 and "does not match" in err


def test_show_draws_blocks_in_colour(cli, tmp_path, monkeypatch):
    write_image(tmp_path / "m", d=12, n_in=36, n_cls=3)
    (tmp_path / "m" / "config.json").write_text(json.dumps({"input_shape": [6, 6]}))
    # piped (as here): plain characters under a legend, no escape sequence at all
    code, out, err = cli("eig", tmp_path / "m", "--class", "0", "--top", "2", "--show")
    assert code == 0, err
    assert "\x1b" not in out and "▀" not in out
    # on a terminal without NO_COLOR: coloured half-blocks
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    code, out, err = cli("eig", tmp_path / "m", "--class", "0", "--top", "2", "--show")
    assert code == 0, err
    assert out.count("▀") == 2 * 3 * 6  # two 6x6 images, two pixel rows per character
    colours = re.findall(r"38;2;(\d+);(\d+);(\d+)", out)
    assert any(int(b) == 255 and int(r) < 200 for r, g, b in colours)  # blue > 0
    assert any(int(r) == 255 and int(b) < 200 for r, g, b in colours)  # red < 0
    code, out, err = cli("eig", tmp_path / "m", "--class", "0", "--show", "--json")
    assert code == 2


def test_chain_passes_eigenvector_down(cli, tmp_path):
    refs = write_image(tmp_path / "m", d=8, n_in=10, n_cls=3, n_layer=2)
    code, out, err = cli("eig", tmp_path / "m", "--class", "2", "--chain", "2", "--all",
                         "--json", "--float64", "--basis", "hidden")
    assert code == 0, err
    steps = json.loads(out)["steps"]
    assert [s["layer"] for s in steps] == [1, 0]
    # Step 1: layer 1 for class 2; its 2nd eigenvector (by |lambda|) is layer 0's direction.
    lam1 = reference_eigvals(refs[1], np.eye(3)[2])
    np.testing.assert_allclose(steps[0]["eigenvalues"], lam1, atol=1e-10)
    v = np.array(steps[0]["eigenvectors"][1])
    Q1 = reference_Q(refs[1], np.eye(3)[2])
    np.testing.assert_allclose(Q1 @ v, lam1[1] * v, atol=1e-10)
    assert steps[1]["direction"] == {"kind": "chain", "from_layer": 1, "eigenvector": 2,
                                     "eigenvalue": steps[0]["eigenvalues"][1]}
    layer0 = Ref(refs[0].W, refs[0].V, None)  # inner layer: P is the identity
    np.testing.assert_allclose(steps[1]["eigenvalues"], reference_eigvals(layer0, v), atol=1e-10)


def test_figures_by_extension(cli, tmp_path):
    """-o fig.pdf / .svg write that format; another extension is refused before any work."""
    write_image(tmp_path / "m", d=12, n_in=25, n_cls=3)
    for name, magic in (("eig.pdf", b"%PDF"), ("eig.svg", b"<?xml"), ("eig.PNG", b"\x89PNG")):
        code, _, err = cli("plot", tmp_path / "m", "--class", "1", "-o", tmp_path / name)
        assert code == 0, err
        assert (tmp_path / name).read_bytes().startswith(magic), name
    code, _, err = cli("spectrum", tmp_path / "m", "--plot", tmp_path / "s.svg", "--json")
    assert code == 0 and (tmp_path / "s.svg").read_bytes().startswith(b"<?xml")
    for args in (("plot", tmp_path / "m", "--class", "1", "-o", tmp_path / "eig.jpg"),
                 ("spectrum", tmp_path / "m", "--plot", tmp_path / "s.gif"),
                 ("plot", tmp_path / "m", "--class", "1", "-o", tmp_path / "noext")):
        code, out, err = cli(*args)
        assert code == 1 and out == "" and len(err.splitlines()) == 1, err
        assert err.startswith("error:") and ".png, .pdf, .svg" in err
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary left
    assert not (tmp_path / "eig.jpg").exists() and not (tmp_path / "s.gif").exists()


def test_plot_titles_number_eigenvectors_by_rank(monkeypatch, cli, tmp_path):
    """The figure's panels say #r with eig's rank r (from 1)."""
    import bilin_cli.render.plotting as plotting

    seen = []
    real = plotting.eigen_figure

    def spy(rows, *args, **kw):
        seen.extend(rows)
        return real(rows, *args, **kw)

    monkeypatch.setattr(plotting, "eigen_figure", spy)
    write_image(tmp_path / "m", d=12, n_in=25, n_cls=3)
    code, _, err = cli("plot", tmp_path / "m", "--class", "2", "-o", tmp_path / "e.png")
    assert code == 0, err
    _, out, _ = cli("eig", tmp_path / "m", "--class", "2", "--all", "--json")
    lam = json.loads(out)["eigenvalues"]
    for rank, value, _ in seen[0]["pos"] + seen[0]["neg"]:
        assert rank >= 1 and lam[rank - 1] == value


# --- the shared figure style (render/style.py) on every figure, drawn on the sample --------

SAMPLE = "sample_checkpoints/mnist"
SAMPLE_DATA = "sample_checkpoints/data/mnist-test.npz"


@pytest.fixture
def drawn(monkeypatch):
    """Every figure the CLI writes, as the Figure it saved (still written to disk)."""
    import bilin_cli.render.plotting as plotting
    import bilin_cli.render.plotting_adversarial as plotting_adversarial
    import bilin_cli.render.plotting_features as plotting_features
    from bilin_cli.render import figures

    figs = []

    def keep(fig, path, force):
        figs.append(fig)
        return figures.save_figure(fig, path, force)

    for mod in (plotting, plotting_features, plotting_adversarial):
        monkeypatch.setattr(mod, "save_figure", keep)
    return figs


def _is_colorbar(ax) -> bool:
    return getattr(ax, "_colorbar", None) is not None


def check_style(fig):
    """What every figure promises: signed images in RdBu on [-L, L] with a colorbar of that
    scale, grey inputs, tick-free pixel panels, labelled curve axes, the shared fonts."""
    from bilin_cli.render import style as st

    assert fig.get_layout_engine() is not None  # constrained: colorbars and labels fit
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    bars = [ax._colorbar for ax in axes if _is_colorbar(ax)]
    scales = {(cb.mappable.get_cmap().name, cb.mappable.get_clim()) for cb in bars}
    n_signed = 0
    for ax in axes:
        if _is_colorbar(ax):
            assert ax._colorbar.mappable.get_cmap().name in (st.DIVERGING_CMAP, st.GREY_CMAP)
            continue
        for im in ax.get_images():
            name, (lo, hi) = im.get_cmap().name, im.get_clim()
            assert name in (st.DIVERGING_CMAP, st.GREY_CMAP), name
            if name == st.DIVERGING_CMAP:
                n_signed += 1
                assert hi > 0 and lo == -hi, (lo, hi)  # centred on zero
                assert (name, (lo, hi)) in scales, "a signed image without its colorbar"
            if ax.get_aspect() != "auto":  # a pixel picture: tick-free
                assert not len(ax.get_xticks()) and not len(ax.get_yticks())
            else:  # a matrix (loadings): both axes say what they are
                assert ax.get_xlabel() and ax.get_ylabel()
        if ax.lines or ax.patches:  # a curve or bar chart
            assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
        title = ax.title
        if title.get_text():
            assert title.get_fontsize() in (st.TITLE_SIZE, st.PANEL_TITLE_SIZE)
            assert title.get_fontfamily()[0] == st.FONT_FAMILY
        for label in ax.get_xticklabels() + ax.get_yticklabels():
            assert label.get_fontsize() == st.TICK_SIZE
    sup = fig._suptitle
    if sup is not None:
        assert sup.get_fontsize() == st.SUPTITLE_SIZE and sup.get_text()
    return n_signed


def _titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def _lambda_titles(fig) -> dict[int, str]:
    """``{rank: eigenvalue text}`` from panel titles like ``#3  λ = +0.1233``."""
    found = {}
    for t in _titles(fig):
        m = re.match(r"#(\d+)\s+λ = (\S+)", t)
        if m:
            found[int(m.group(1))] = m.group(2)
    return found


def test_style_helpers():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bilin_cli.render import style as st

    assert st.eigenvalue_text(0.14594) == "+0.1459" and st.eigenvalue_text(-1.3124e-5) == \
        "-1.312e-05"
    assert st.lambda_text(2.0) == "λ = +2"
    assert st.symmetric_limit([0.0, -3.0, 2.0, np.nan]) == 3.0
    assert st.symmetric_limit([]) == 1.0 and st.symmetric_limit(np.zeros(4)) == 1.0
    rc = st.matplotlib_rc()
    assert rc["pdf.fonttype"] == 42 and rc["svg.fonttype"] == "none"
    assert rc["font.family"] == st.FONT_FAMILY and rc["axes.titlesize"] == st.TITLE_SIZE
    fig, ax = plt.subplots(layout="constrained")
    im = st.signed_image(ax, np.array([[0.5, -0.2], [0.1, 0.0]]), fig, label="entry")
    assert im.get_cmap().name == "RdBu" and im.get_clim() == (-0.5, 0.5)
    assert im.colorbar is not None and im.colorbar.ax.get_ylabel() == "entry"
    assert list(im.colorbar.get_ticks()) == [-0.5, 0.0, 0.5]
    assert check_style(fig) == 1
    plt.close(fig)


def test_plot_figure_style_and_eigenvalues(cli, drawn, tmp_path):
    """bilin plot: every eigenvector on a symmetric RdBu scale with its colorbar; each
    panel's eigenvalue is eig's, printed by eigenvalue_text; the SVG keeps text as text."""
    from bilin_cli.render.style import eigenvalue_text

    code, _, err = cli("plot", SAMPLE, "--class", "3", "--n", "3", "-o", tmp_path / "e.svg")
    assert code == 0, err
    (fig,) = drawn
    assert check_style(fig) == 6
    _, out, _ = cli("eig", SAMPLE, "--class", "3", "--all", "--json")
    lam = json.loads(out)["eigenvalues"]
    shown = _lambda_titles(fig)
    assert len(shown) == 6
    for rank, text in shown.items():
        assert text == eigenvalue_text(lam[rank - 1])
    curve = fig.axes[0]
    assert "eigenvalue" in curve.get_ylabel() and curve.get_xlabel()
    import xml.etree.ElementTree as ET

    root = ET.parse(tmp_path / "e.svg").getroot()
    svg_text = "{http://www.w3.org/2000/svg}text"
    texts = " ".join("".join(el.itertext()) for el in root.iter(svg_text))
    assert "layer 0" in texts and f"λ = {eigenvalue_text(lam[0])}" in texts


def test_spectrum_and_truncate_curves(cli, drawn, tmp_path):
    code, _, err = cli("spectrum", SAMPLE, "--class", "0", "--class", "1", "--plot",
                       tmp_path / "s.pdf")
    assert code == 0, err
    pdf = (tmp_path / "s.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and b"/FontFile2" in pdf and b"/Type3" not in pdf
    code, _, err = cli("truncate", SAMPLE, "--sweep", "0,5", "--data", SAMPLE_DATA,
                       "--plot", tmp_path / "t.png")
    assert code == 0, err
    assert len(drawn) == 2
    for fig in drawn:
        assert check_style(fig) == 0


def test_hosvd_figure_style(cli, drawn, tmp_path):
    from bilin_cli.render.style import eigenvalue_text

    code, _, err = cli("hosvd", SAMPLE, "--components", "3", "--plot", tmp_path / "h.pdf")
    assert code == 0, err
    assert (tmp_path / "h.pdf").read_bytes().startswith(b"%PDF")
    (fig,) = drawn
    assert check_style(fig) == 1 + 3  # loadings + one eigenvector per component
    _, out, _ = cli("hosvd", SAMPLE, "--components", "3", "--json")
    comps = json.loads(out)["components"]
    titles = [t for t in _titles(fig) if t.startswith("component")]
    assert [t.split("λ = ")[1] for t in titles] == \
        [eigenvalue_text(c["eigenvalues"][0]) for c in comps]


def test_explain_figure_style(cli, drawn, tmp_path):
    from bilin_cli.render.style import eigenvalue_text

    code, out, err = cli("explain", SAMPLE, "-i", f"{SAMPLE_DATA}:1", "--classes", "1",
                         "--json", "--plot", tmp_path / "x.svg")
    assert code == 0, err
    (fig,) = drawn
    assert check_style(fig) == 6
    grey = [im for ax in fig.axes for im in ax.get_images() if im.get_cmap().name == "gray"]
    assert len(grey) == 1 and grey[0].get_clim()[0] == 0.0
    cls = json.loads(out)["classes"][0]
    _, out, _ = cli("eig", SAMPLE, "--class", str(cls["class"]), "--all", "--json")
    lam = json.loads(out)["eigenvalues"]
    shown = _lambda_titles(fig)
    assert len(shown) == 6
    for rank, text in shown.items():
        assert text == eigenvalue_text(lam[rank - 1])


def test_adversarial_figures_style(cli, drawn, tmp_path):
    code, _, err = cli("adversarial", SAMPLE, "--target", "3", "--strength", "0.3",
                       "--images", tmp_path / "img", "--plot", tmp_path / "r.svg")
    assert code == 0, err
    assert len(drawn) == 3  # rate curves, mask, examples
    signed = [check_style(fig) for fig in drawn]
    assert sorted(signed) == [0, 0, 2]
    mask = next(fig for fig, n in zip(drawn, signed, strict=True) if n == 2)
    clims = {im.get_clim() for ax in mask.axes for im in ax.get_images()}
    assert len(clims) == 1  # mask and baseline on one scale, one colorbar
    assert sum(_is_colorbar(ax) for ax in mask.axes) == 1
    drawn.clear()
    code, _, err = cli("adversarial", SAMPLE, "--target", "3", "-i", f"{SAMPLE_DATA}:17",
                       "--images", tmp_path / "one")
    assert code == 0, err
    assert [check_style(fig) for fig in drawn] == [2, 1]  # mask; input, change, perturbed

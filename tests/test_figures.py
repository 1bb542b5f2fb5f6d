"""Pictures: the eigenspectrum PNG, eigenvectors in the terminal, and chained layers."""

from __future__ import annotations

import json
import re

import numpy as np
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


def test_show_draws_blocks_in_colour(cli, tmp_path):
    write_image(tmp_path / "m", d=12, n_in=36, n_cls=3)
    (tmp_path / "m" / "config.json").write_text(json.dumps({"input_shape": [6, 6]}))
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

"""``bilin report``: the data agrees with ``bilin eig``/``truncate``, the folder is
self-contained (no network), and every page renders in headless Chromium.

The browser tests run Chromium as a subprocess (``--dump-dom`` for the DOM after load,
``--enable-logging=stderr`` for console messages, ``--screenshot`` for a picture) and
skip, saying why, where no Chromium is installed (CI installs it: see ``.ci/run``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from bilin_cli import api
from bilin_cli.render.report_html import write_report
from bilin_cli.render.style import eigenvalue_text

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_checkpoints"
MNIST = SAMPLES / "mnist"
SHAKESPEARE = SAMPLES / "shakespeare"
SAE_OUT = SHAKESPEARE / "sae-mlp-out-L1"
SAE_IN = SHAKESPEARE / "sae-mlp-in-L1"


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    """The mnist sample's whole report (every class), built once: (Report, folder)."""
    report = api.report(MNIST)
    folder = tmp_path_factory.mktemp("reports") / "mnist"
    write_report(report, folder)
    return report, folder


@pytest.fixture(scope="module")
def shakespeare(tmp_path_factory):
    """A small shakespeare report through the CLI: three token pages, two eigenvectors each."""
    folder = tmp_path_factory.mktemp("reports") / "shakespeare"
    out = subprocess.run([sys.executable, "-m", "bilin_cli", "report", str(SHAKESPEARE), "--tokens", "0-2", "--top", "2",
                          "-o", str(folder), "--json"], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(out.stdout), folder


def test_class_pages_carry_bilin_eig_numbers(mnist):
    report, folder = mnist
    assert [p.key for p in report.pages] == [f"class-{c}" for c in range(10)]
    page = report.pages[3]
    ref = api.eig(MNIST, cls=3, top=None)
    np.testing.assert_array_equal(page.eigenvalues, ref.eigenvalues)
    assert page.summary["effective_rank"] == pytest.approx(ref.effective_rank)
    pos = np.flatnonzero(ref.eigenvalues > 0)[: report.top]
    neg = np.flatnonzero(ref.eigenvalues < 0)[: report.top]
    assert [e.rank for e in page.positive] == list(pos + 1)
    assert [e.rank for e in page.negative] == list(neg + 1)
    np.testing.assert_allclose(page.positive[0].vector, ref.eigenvectors[pos[0]])
    html = (folder / "class-3.html").read_text()
    for e in page.positive + page.negative:
        # the figure titles, as JSON in the page ("\u03bb" for lambda)
        assert f"#{e.rank}  \\u03bb = {eigenvalue_text(e.eigenvalue)}" in html


def test_bound_and_sweep_agree_with_bilin_truncate(mnist):
    report, _ = mnist
    t = api.truncate(MNIST, rank=report.top, evaluate=False)
    for page, row in zip(report.pages, t.per_class, strict=True):
        assert page.bound["at_top"] == pytest.approx(row["max_discarded_abs_eigenvalue"])
        assert page.bound["share_at_top"] == pytest.approx(row["share_kept"])
    sweep = {r["k"]: r["accuracy"] for r in report.truncation["sweep"]}
    assert sweep[10] == pytest.approx(0.9283)  # bilin truncate --rank 10 on the sample
    assert report.truncation["full_accuracy"] == pytest.approx(0.9821)


def test_classifier_pages_show_the_adversarial_mask(mnist):
    report, folder = mnist
    for page in report.pages:
        assert page.mask["pixel"].shape == (784,)
        assert page.mask["eigenvalue"] > 0
        assert page.mask["eig_rank"] == next(e.rank for e in page.positive)
    assert "Adversarial mask" in (folder / "class-0.html").read_text()


def test_the_folder_is_self_contained(mnist, shakespeare):
    for folder in (mnist[1], shakespeare[1]):
        names = {p.name for p in folder.iterdir()}
        assert {"index.html", "plotly.min.js", "report.css"} <= names
        for page in folder.glob("*.html"):
            text = page.read_text()
            assert not re.search(r"https?://", text), page.name
            assert re.findall(r'<script src="([^"]+)"', text) == ["plotly.min.js"]
            links = set(re.findall(r'href="([^"]+)"', text)) - {"report.css"}
            assert links and all((folder / link).is_file() for link in links), page.name


def test_language_model_pages_read_eigenvectors_as_tokens(shakespeare):
    doc, folder = shakespeare
    assert doc["pages"] == ["token-0.html", "token-1.html", "token-2.html"]
    assert Path(doc["index"]) == folder / "index.html"
    html = (folder / "token-0.html").read_text()
    assert "v&middot;x &gt; 0" in html and 'class="tok"' in html


def test_sae_feature_pages(tmp_path):
    report = api.report(SHAKESPEARE, layer=1, sae=SAE_OUT, features=[395, 8], sae_in=SAE_IN,
                          top=2)
    assert [p.key for p in report.pages] == ["feature-395", "feature-8"]
    ref = api.eig(SHAKESPEARE, layer=1, sae=SAE_OUT, feature=395, top=None)
    np.testing.assert_array_equal(report.pages[0].eigenvalues, ref.eigenvalues)
    e = report.pages[0].positive[0]
    assert len(e.features) == 8 and e.tokens is not None
    write_report(report, tmp_path / "r")
    assert "input-SAE feature" in (tmp_path / "r" / "feature-395.html").read_text()


def test_default_sae_pages_are_the_most_low_rank_features():
    report = api.report(SHAKESPEARE, layer=1, sae=SAE_OUT, top=1)
    ranked = api.rank_features(SHAKESPEARE, SAE_OUT, layer=1, top=64)
    assert [p.index for p in report.pages] == ranked.features.tolist()
    assert any("64 most low-rank" in n for n in report.notes)


def test_names_from_files_are_escaped(tmp_path, cli):
    ckpt = tmp_path / "toy"
    shutil.copytree(SAMPLES / "toy", ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config["outputs"][0] = "<script>alert(1)</script>"
    (ckpt / "config.json").write_text(json.dumps(config))
    code, out, err = cli("report", ckpt, "-o", tmp_path / "r", "--classes", "0,1")
    assert code == 0, err
    for page in (tmp_path / "r").glob("*.html"):
        assert "<script>alert" not in page.read_text()
    assert "&lt;script&gt;alert(1)" in (tmp_path / "r" / "class-0.html").read_text()


def test_output_folder_rules(tmp_path, cli):
    target = tmp_path / "r"
    target.mkdir()  # an empty folder is fine
    assert cli("report", SAMPLES / "toy", "-o", target)[0] == 0
    code, _, err = cli("report", SAMPLES / "toy", "-o", target)
    assert code == 1 and err.startswith("error: ") and "--force" in err
    assert cli("report", SAMPLES / "toy", "-o", target, "--force", "--top", "1")[0] == 0
    (target / "notes.txt").write_text("mine")
    code, _, err = cli("report", SAMPLES / "toy", "-o", target, "--force")
    assert code == 1 and "notes.txt" in err and (target / "notes.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


@pytest.mark.parametrize("args, code, says", [
    (["--classes", "12"], 1, "class 12 is out of range"),
    (["--tokens", "1"], 1, "--tokens is for language models"),
    (["--features", "1"], 2, "--features needs --sae"),
    (["--top", "0"], 1, "--top"),
    (["--data", str(SAMPLES / "data" / "mnist-test.npz")], 1, "the model takes 4"),
])
def test_user_errors(tmp_path, cli, args, code, says):
    got, _, err = cli("report", SAMPLES / "toy", "-o", tmp_path / "r", *args)
    assert got == code and says in err
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------- the browser

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)


def _chromium(page: Path, tmp: Path, *mode: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", f"--user-data-dir={tmp}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=10000", *mode, page.as_uri()],
        capture_output=True, text=True, timeout=120)


def _check_page(page: Path, tmp: Path) -> tuple[str, list[str]]:
    """Load one page once: (its name, problems) from its console, its DOM after load and a
    screenshot of its top."""
    shot = tmp / "shot.png"
    run = _chromium(page, tmp, "--window-size=1280,1600", f"--screenshot={shot}", "--dump-dom")
    problems = [f"console: {line}" for line in run.stderr.splitlines()
                if ":CONSOLE" in line or "ERR_FILE" in line]
    divs = run.stdout.count('class="plotly-graph-div')
    svgs = run.stdout.count('class="main-svg"')
    if divs == 0 or svgs < divs:
        problems.append(f"{divs} figures but {svgs} plotly SVGs after load")
    from PIL import Image

    with Image.open(shot) as im:
        colours = im.convert("RGB").getcolors(maxcolors=1 << 16)
    if colours is not None and len(colours) < 50:
        problems.append(f"the screenshot has only {len(colours)} colours")
    return page.name, problems


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get "
                    "install chromium); CI installs it in .ci/run")
def test_every_page_renders_in_headless_chromium(mnist, shakespeare, tmp_path):
    pages = sorted(mnist[1].glob("*.html")) + sorted(shakespeare[1].glob("*.html"))
    jobs = [(page, tmp_path / f"{page.parent.name}-{page.stem}") for page in pages]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda job: _check_page(*job), jobs))
    assert len(results) == 15
    bad = {name: problems for name, problems in results if problems}
    assert not bad, bad


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
def test_the_browser_check_sees_a_broken_page(tmp_path):
    """The check above would fail on a page whose script breaks (plotly.js missing)."""
    page = tmp_path / "broken.html"
    page.write_text('<html><body><div class="plotly-graph-div"></div>'
                    '<script src="plotly.min.js"></script>'
                    "<script>Plotly.newPlot('x', [])</script></body></html>")
    _, problems = _check_page(page, tmp_path)
    assert any("Plotly is not defined" in p for p in problems), problems
    assert any("plotly SVGs" in p for p in problems)

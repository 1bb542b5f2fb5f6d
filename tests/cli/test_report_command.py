"""``bilin report`` and ``bilin_cli.api.report`` on tiny models: the folder it writes, the
rules for an existing folder, ``--json``, and the pages' numbers against ``api.eig``;
``render.report_html.write_report`` / ``check_target`` called directly."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import write_image, write_toy
from safetensors.numpy import save_file

import bilin_cli as bilin
from bilin_cli.core.errors import BilinError
from bilin_cli.render.report_html import ASSETS, check_target, render, write_report

N_CLS = 3


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "m"
    write_image(path, d=4, n_in=6, n_cls=N_CLS, seed=3)
    return path


def write_llama(path, d=4, h=6, vocab=5, n_layer=1):
    """LLaMA-style keys with an identity gate, written with numpy (no torch import)."""
    r = np.random.default_rng(4)
    t = {"model.embed_tokens.weight": (vocab, d), "lm_head.weight": (vocab, d)}
    for i in range(n_layer):
        pre = f"model.layers.{i}.mlp."
        t.update({pre + "gate_proj.weight": (h, d), pre + "up_proj.weight": (h, d),
                  pre + "down_proj.weight": (d, h)})
    path.mkdir()
    save_file({k: r.standard_normal(s).astype(np.float32) for k, s in t.items()},
              str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "hidden_size": d, "intermediate_size": h,
        "num_hidden_layers": n_layer, "vocab_size": vocab, "hidden_act": "identity"}))


def pages_of(folder) -> set[str]:
    return {p.name for p in folder.iterdir()}


def one_error(result) -> str:
    code, out, err = result
    assert code == 1, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ---------------------------------------------------------------------------- the command


def test_report_writes_index_pages_and_assets(cli, model, tmp_path):
    out = tmp_path / "r"
    code, stdout, err = cli("report", model, "-o", out)
    assert code == 0, err
    assert stdout == f"{out / 'index.html'}\n"  # only the path on stdout
    expected = {"index.html", *ASSETS, *(f"class-{c}.html" for c in range(N_CLS))}
    assert pages_of(out) == expected
    for name in expected - {"plotly.min.js"}:
        assert (out / name).stat().st_size > 0
    assert (out / "plotly.min.js").stat().st_size > 1_000_000  # plotly.js itself, offline
    index = (out / "index.html").read_text()
    for c in range(N_CLS):
        assert f'href="class-{c}.html"' in index
    # no temporary folder left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "r"]


def test_report_json_summary(cli, model, tmp_path):
    out = tmp_path / "r"
    code, stdout, err = cli("report", model, "-o", out, "--classes", "0,2", "--top", "1",
                            "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["index"] == str(out / "index.html") and doc["folder"] == str(out)
    assert doc["layer"] == 0
    assert doc["pages"] == ["class-0.html", "class-2.html"]
    assert isinstance(doc["seconds"], (int, float)) and doc["seconds"] >= 0
    assert any("no labelled data" in n for n in doc["notes"])
    assert pages_of(out) == {"index.html", *ASSETS, "class-0.html", "class-2.html"}


def test_an_existing_folder_needs_force(cli, model, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    assert cli("report", model, "-o", out)[0] == 0  # an empty folder is fine
    before = (out / "index.html").read_bytes()
    line = one_error(cli("report", model, "-o", out, "--classes", "1"))
    assert "already exists and is not empty; pass --force" in line
    assert (out / "index.html").read_bytes() == before
    assert pages_of(out) >= {"class-0.html", "class-2.html"}
    code, _, err = cli("report", model, "-o", out, "--classes", "1", "--force")
    assert code == 0, err
    assert pages_of(out) == {"index.html", *ASSETS, "class-1.html"}  # replaced whole


def test_force_replaces_only_a_report_folder(cli, model, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "thesis.tex").write_text("mine")
    line = one_error(cli("report", model, "-o", work, "--force"))
    assert "thesis.tex" in line and "did not write" in line
    assert (work / "thesis.tex").read_text() == "mine"
    notreport = tmp_path / "pages"
    notreport.mkdir()
    (notreport / "class-1.html").write_text("<p>mine</p>")
    line = one_error(cli("report", model, "-o", notreport, "--force"))
    assert "no index.html" in line
    assert (notreport / "class-1.html").read_text() == "<p>mine</p>"


def test_a_file_or_a_missing_parent_is_refused(cli, model, tmp_path):
    f = tmp_path / "file.html"
    f.write_text("x")
    assert "is a file; give a folder name" in one_error(cli("report", model, "-o", f))
    assert "no such directory" in one_error(cli("report", model, "-o", tmp_path / "a" / "b"))


def test_the_output_is_never_the_input(cli, model):
    one_error(cli("report", model, "-o", model, "--force"))
    assert pages_of(model) == {"model.safetensors", "config.json"}


@pytest.mark.parametrize("args,code,says", [
    (["--classes", "7"], 1, "class 7"),
    (["--tokens", "1"], 1, "--tokens is for language models"),
    (["--features", "1"], 2, "--features needs --sae"),
    (["--top", "0"], 1, "--top"),
    (["--top", "x"], 2, "--top"),
])
def test_user_errors_write_nothing(cli, model, tmp_path, args, code, says):
    got, out, err = cli("report", model, "-o", tmp_path / "r", *args)
    assert got == code and says in err and out == ""
    assert "Traceback" not in err
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------- the API


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_api_report_pages_equal_api_eig(model, dtype):
    r = bilin.report(model, top=2, dtype=dtype)
    assert r.layer == 0 and r.top == 2
    assert [p.key for p in r.pages] == [f"class-{c}" for c in range(N_CLS)]
    assert [p.label for p in r.pages] == [f"class {c} (c{c})" for c in range(N_CLS)]
    for c, page in enumerate(r.pages):
        ref = bilin.eig(model, cls=c, top=None, dtype=dtype)
        np.testing.assert_array_equal(page.eigenvalues, ref.eigenvalues)
        assert page.summary["effective_rank"] == pytest.approx(ref.effective_rank)
        assert page.summary["top_k_share"] == pytest.approx(
            np.abs(ref.eigenvalues[:2]).sum() / np.abs(ref.eigenvalues).sum())
        pos = np.flatnonzero(ref.eigenvalues > 0)[:2] + 1
        neg = np.flatnonzero(ref.eigenvalues < 0)[:2] + 1
        assert [e.rank for e in page.positive] == pos.tolist()
        assert [e.rank for e in page.negative] == neg.tolist()
        for e in page.positive + page.negative:
            np.testing.assert_array_equal(e.vector, ref.eigenvectors[e.rank - 1])


def test_api_report_of_a_toy_and_a_language_model(tmp_path):
    write_toy(tmp_path / "toy.safetensors", d=3, h=5, o=2, seed=2)
    r = bilin.report(tmp_path / "toy.safetensors", classes=[1])
    assert [p.key for p in r.pages] == ["class-1"]
    np.testing.assert_array_equal(r.pages[0].eigenvalues,
                                  bilin.eig(tmp_path / "toy.safetensors", cls=1,
                                            top=None).eigenvalues)
    write_llama(tmp_path / "llama", d=4, h=6, vocab=5, n_layer=2)
    lm = bilin.report(tmp_path / "llama", tokens=[0, 1], top=1, layer=1)
    assert [p.key for p in lm.pages] == ["token-0", "token-1"] and lm.layer == 1
    assert lm.truncation is None  # accuracy curves are for classifiers
    for t, page in enumerate(lm.pages):
        ref = bilin.eig(tmp_path / "llama", token=t, layer=1, top=None)
        np.testing.assert_array_equal(page.eigenvalues, ref.eigenvalues)


def test_api_report_takes_a_loaded_model(model):
    r = bilin.report(bilin.load(model), classes=2)
    assert [p.key for p in r.pages] == ["class-2"]


def test_api_report_direction_lists_are_checked_and_deduplicated(model):
    assert [p.index for p in bilin.report(model, classes=[2, 0, 2]).pages] == [2, 0]
    assert [p.index for p in bilin.report(model, classes="all").pages] == [0, 1, 2]
    with pytest.raises(BilinError, match="class 3"):
        bilin.report(model, classes=[3])


@pytest.mark.parametrize("kwargs,says", [
    ({"top": 0}, "top"),
    ({"top": True}, "top"),
    ({"top": 1.5}, "top"),
    ({"tokens": [0]}, "tokens is for language models"),
    ({"features": [0]}, "features need an output SAE"),
])
def test_api_report_errors(model, kwargs, says):
    with pytest.raises(BilinError, match=says):
        bilin.report(model, **kwargs)


def test_api_report_refuses_classes_and_data_on_a_language_model(tmp_path):
    write_llama(tmp_path / "llama", d=4, h=6, vocab=5, n_layer=1)
    with pytest.raises(BilinError, match="choose outputs with tokens"):
        bilin.report(tmp_path / "llama", classes=[0])
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 4), np.uint8), y=np.zeros(2, np.uint8))
    with pytest.raises(BilinError, match="data is for single-layer classifiers"):
        bilin.report(tmp_path / "llama", tokens=[0], data=tmp_path / "d.npz")


def test_api_report_checks_data_against_the_model(model, tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 5), np.uint8), y=np.zeros(2, np.uint8))
    with pytest.raises(BilinError, match="inputs have 5 features, the model takes 6"):
        bilin.report(model, data=tmp_path / "d.npz")


# ---------------------------------------------------------------------------- write_report


def test_write_report_writes_what_render_renders(model, tmp_path):
    r = bilin.report(model, top=1)
    index = write_report(r, tmp_path / "site")
    assert index == tmp_path / "site" / "index.html"
    site = render(r)
    for name, html in site.items():
        assert (tmp_path / "site" / name).read_text(encoding="utf-8") == html
    assert pages_of(tmp_path / "site") == set(site) | set(ASSETS)
    with pytest.raises(BilinError, match="already exists and is not empty"):
        write_report(r, tmp_path / "site")
    write_report(r, tmp_path / "site", force=True)


def test_write_report_advances_once_per_page(model, tmp_path):
    r = bilin.report(model, top=1)
    calls = []
    write_report(r, tmp_path / "site", advance=lambda: calls.append(1))
    assert len(calls) == len(r.pages) == N_CLS


def test_check_target(tmp_path):
    assert check_target(tmp_path / "new", False) == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    assert check_target(tmp_path / "empty", False) == tmp_path / "empty"
    os.symlink(tmp_path / "empty", tmp_path / "link")
    with pytest.raises(BilinError, match="is a symbolic link"):
        check_target(tmp_path / "link", True)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "index.html").write_text("x")
    with pytest.raises(BilinError, match="pass --force"):
        check_target(tmp_path / "full", False)
    assert check_target(tmp_path / "full", True) == tmp_path / "full"
    (tmp_path / "full" / "sub").mkdir()  # a folder named like nothing bilin writes
    with pytest.raises(BilinError, match="did not write"):
        check_target(tmp_path / "full", True)

"""The Python API (`import bilin_cli as bilin`): documented examples run and agree with the CLI."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bilin_cli as bilin
from bilin_cli import api
from bilin_cli.core.errors import BilinError

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_checkpoints"
MNIST = SAMPLES / "mnist"
SHAKESPEARE = SAMPLES / "shakespeare"
SAE_OUT = SHAKESPEARE / "sae-mlp-out-L1"

# The README's "Python API" example, with the values it prints (kept in step with it).
README_EXAMPLE = """
>>> import bilin_cli as bilin
>>> m = bilin.load("sample_checkpoints/mnist")
>>> d = bilin.eig(m, cls=3, top=5)     # Q(e_3): eigenvalues (5,), eigenvectors (5, 784) pixels
>>> print(d.eigenvalues.round(4))
[-0.1459 -0.1314  0.1233 -0.1195 -0.1109]
>>> round(d.effective_rank, 2), d.eigenvectors.shape
(36.03, (5, 784))
>>> t = bilin.truncate(m, rank=10)     # output="mnist-k10.safetensors" also writes it
>>> t.hidden_units, t.accuracy, t.full_accuracy
(100, 0.9283, 0.9821)
>>> s = bilin.load("sample_checkpoints/shakespeare")
>>> r = bilin.rank_features(s, "sample_checkpoints/shakespeare/sae-mlp-out-L1", layer=1, top=3)
>>> print(r.features, r.top_k_share.round(3))
[395 367 860] [0.135 0.135 0.134]
"""


def _run_doctest(text: str, name: str, globs: dict, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    test = doctest.DocTestParser().get_doctest(text, dict(globs), name, None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    out: list[str] = []
    runner.run(test, out=out.append)
    assert runner.failures == 0, "".join(out)
    assert runner.tries > 0


@pytest.fixture(scope="module")
def mnist():
    return bilin.load(MNIST)


def test_import_bilin_cli_imports_no_numpy():
    code = "import bilin_cli, sys; print('numpy' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_all_and_dir_list_the_api():
    names = {"load", "eig", "spectrum", "truncate", "rank_features", "explain", "hosvd",
             "Decomposition", "Truncation", "FeatureRanking", "Spectra", "BilinError"}
    assert names <= set(bilin.__all__)
    assert names <= set(dir(bilin))
    assert set(bilin.__all__) - {"__version__"} == set(api.__all__)
    for name in bilin.__all__:
        assert getattr(bilin, name) is not None
    with pytest.raises(AttributeError):
        bilin.no_such_thing  # noqa: B018


def test_api_names_shared_with_modules_stay_functions():
    import bilin_cli.analyses.explain  # noqa: F401  (binding the modules must not replace the API)
    import bilin_cli.analyses.hosvd  # noqa: F401
    from bilin_cli.analyses.hosvd import HOSVD

    assert bilin.hosvd is api.hosvd and bilin.explain is api.explain
    assert HOSVD.__module__ == "bilin_cli.analyses.hosvd"


def test_readme_example(monkeypatch):
    _run_doctest(README_EXAMPLE, "README Python API", {}, monkeypatch)


def test_docstring_examples(mnist, monkeypatch):
    globs = {"bilin": bilin, "m": mnist}
    for name in api.__all__:
        obj = getattr(api, name)
        if not callable(obj) or isinstance(obj, type) or ">>>" not in (obj.__doc__ or ""):
            continue
        _run_doctest(obj.__doc__, name, globs, monkeypatch)
    _run_doctest(api.__doc__, "bilin_cli.api", {}, monkeypatch)


def test_eig_equals_the_cli_json(mnist, cli):
    d = bilin.eig(mnist, cls=3, top=5)
    code, out, err = cli("eig", MNIST, "--class", "3", "--top", "5", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert d.eigenvalues.shape == (5,) and d.eigenvectors.shape == (5, 784)
    np.testing.assert_allclose(d.eigenvalues, doc["eigenvalues"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(d.eigenvectors, doc["eigenvectors"], rtol=1e-5, atol=1e-6)
    assert d.as_dict()["direction"] == doc["direction"]
    assert d.effective_rank == pytest.approx(doc["effective_rank"], rel=1e-6)


def test_eig_takes_a_path_a_vector_and_options(mnist):
    by_class = bilin.eig(mnist, cls=3, top=4, basis="hidden", dtype=np.float64)
    u = np.zeros(10)
    u[3] = 1.0
    by_vector = bilin.eig(str(MNIST), direction=u, top=4, basis="hidden", dtype=np.float64)
    np.testing.assert_allclose(by_vector.eigenvalues, by_class.eigenvalues, rtol=1e-12)
    assert by_class.eigenvectors.shape == (4, 512)
    assert by_vector.direction["kind"] == "array"
    assert bilin.eig(mnist, cls=3, top=None).eigenvalues.shape == (512,)


def test_eig_errors_are_bilin_errors(mnist):
    with pytest.raises(BilinError, match="exactly one direction"):
        bilin.eig(mnist)
    with pytest.raises(BilinError, match="exactly one direction"):
        bilin.eig(mnist, cls=[1, 2])
    with pytest.raises(BilinError, match="class 10 is out of range"):
        bilin.eig(mnist, cls=10)
    with pytest.raises(BilinError, match="needs a vector of 10 numbers"):
        bilin.eig(mnist, direction=np.ones(3))


def test_eig_on_a_language_model_by_token_text():
    s = bilin.load(SHAKESPEARE)
    d = bilin.eig(s, token="e", layer=1, top=3)
    assert d.direction["kind"] == "token" and d.layer == 1
    assert d.eigenvalues.shape == (3,)
    feat = bilin.eig(s, sae=SAE_OUT, feature=395, layer=1, top=2)
    np.testing.assert_allclose(feat.eigenvalues, [0.144, -0.112], atol=1e-3)


def test_spectrum_every_class(mnist):
    s = bilin.spectrum(mnist)
    assert s.eigenvalues.shape == (10, 512)
    assert [d["index"] for d in s.directions] == list(range(10))
    d3 = bilin.eig(mnist, cls=3, top=5)
    np.testing.assert_allclose(s.eigenvalues[3, :5], d3.eigenvalues, rtol=1e-5)
    assert s.summaries[3]["effective_rank"] == pytest.approx(d3.effective_rank, rel=1e-5)
    assert bilin.spectrum(mnist, cls=[0, 7]).eigenvalues.shape == (2, 512)


def test_truncate_rank_10_gives_the_readme_accuracy(mnist, tmp_path):
    t = bilin.truncate(mnist, rank=10, output=tmp_path / "k10.safetensors")
    assert t.accuracy == pytest.approx(0.9283) and t.full_accuracy == pytest.approx(0.9821)
    assert t.n == 10000 and t.hidden_units == 100
    assert t.ranks.tolist() == [10] * 10 and len(t.per_class) == 10
    assert t.tensors["head.weight"].shape == (10, 100)
    # The written checkpoint is an ordinary bilinear model with the same accuracy.
    from bilin_cli.analyses.evaluation import model_logits, scores
    from bilin_cli.storage.data import load_dataset

    k10 = bilin.load(t.output)
    data = load_dataset(SAMPLES / "data" / "mnist-test.npz")
    assert scores(model_logits(k10, data), data.y)["accuracy"] == pytest.approx(0.9283)


def test_truncate_by_energy_without_data(mnist):
    t = bilin.truncate(mnist, energy=0.5, evaluate=False)
    assert t.accuracy is None and t.output is None
    assert all(row["share_kept"] >= 0.5 for row in t.per_class)
    assert t.ranks.tolist() == [row["k"] for row in t.per_class]


def test_rank_features_finds_feature_395_first():
    r = bilin.rank_features(SHAKESPEARE, SAE_OUT, layer=1)
    assert int(r.features[0]) == 395
    assert r.features.shape == (1024,) and r.top_eigenvalues.shape == (1024, 2)
    assert r.top_k_share[0] == pytest.approx(0.13515406770393776, rel=1e-6)
    assert r.effective_rank[0] == pytest.approx(36.61594032513831, rel=1e-6)
    assert np.all(np.diff(r.top_k_share) <= 0)
    assert r.rows[0]["feature"] == 395
    from bilin_cli.storage.sae import load_sae

    loaded = bilin.rank_features(SHAKESPEARE, load_sae(SAE_OUT), layer=1, top=5, limit=400)
    assert loaded.features.tolist()[0] == 395 and loaded.features.shape == (5,)


def test_explain_an_array_equals_the_spec(mnist):
    from bilin_cli.storage.data import load_dataset

    x = load_dataset(SAMPLES / "data" / "mnist-test.npz").x[0]
    by_spec = bilin.explain(mnist, f"{SAMPLES / 'data' / 'mnist-test.npz'}:0")
    by_array = bilin.explain(mnist, x)
    assert by_array.prediction == by_spec.prediction == 7
    np.testing.assert_allclose(by_array.logits, by_spec.logits)
    c = by_array.classes[0]
    assert abs(c.residual) < 1e-4 * max(1.0, abs(c.logit))
    with pytest.raises(BilinError, match="reads 784 numbers"):
        bilin.explain(mnist, np.ones(5))


def test_hosvd(mnist):
    h = bilin.hosvd(mnist, components=3, top=2)
    assert h.sigma.shape == (3,) and h.U.shape == (10, 3) and h.eigenvectors.shape == (3, 2, 784)
    assert np.all(np.diff(h.sigma) <= 0)


def test_load_with_a_map_dict_or_file(tmp_path):
    toy = SAMPLES / "toy"
    mapping = {"kind": "classifier", "layers": [{"w": "left.weight", "v": "right.weight"}],
               "head": "head.weight"}
    by_dict = bilin.load(toy, map=mapping)
    (tmp_path / "map.json").write_text(json.dumps(mapping))
    by_file = bilin.load(toy, map=tmp_path / "map.json")
    a = bilin.eig(by_dict, cls=1, top=2).eigenvalues
    b = bilin.eig(by_file, cls=1, top=2).eigenvalues
    np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(a, [1.99984, 5.09892e-05], rtol=1e-4)


# --------------------------------------------------------------- one way in: CLI == API


def _plain(value):
    """The JSON the CLI would print for an API object (numpy arrays as lists)."""
    return json.loads(json.dumps(value, default=lambda o: o.tolist()))


def _json(cli, *args):
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_cli_info_is_the_api(cli):
    assert _json(cli, "info", MNIST)[0] == _plain(bilin.info(MNIST))
    mapping, ambiguous = bilin.suggest_map(SAMPLES / "toy")
    code, out, err = cli("info", SAMPLES / "toy", "--suggest-map")
    assert code == 0 and json.loads(out) == mapping and ambiguous == []


def test_cli_eig_many_directions_and_tokens_are_the_api(mnist, cli):
    docs = _json(cli, "eig", MNIST, "--class", "0,3", "--top", "3", "--basis", "hidden")
    dirs = bilin.output_directions(mnist, cls=[0, 3])
    assert [u.info_key for u in dirs] == ["class0", "class3"]
    for doc, u in zip(docs, dirs, strict=True):
        assert doc == _plain(bilin.eig(mnist, direction=u, top=3, basis="hidden").as_dict())
    s = bilin.load(SHAKESPEARE)
    doc = _json(cli, "eig", SHAKESPEARE, "--layer", "1", "--token-str", " ", "--top", "3")[0]
    d = bilin.eig(s, token=" ", layer=1, top=3)
    assert doc == _plain(d.as_dict())
    assert d.tokens and len(d.tokens) == 3
    steps = bilin.chain(s, 1, token=" ", layer=1, top=2)
    chained = _json(cli, "eig", SHAKESPEARE, "--layer", "1", "--token-str", " ", "--top", "2",
                    "--chain", "1")[0]
    flat = json.dumps(chained)
    assert [st.layer for st in steps] == [1, 0]
    for st in steps:
        for lam in st.eigenvalues.tolist():
            assert json.dumps(lam) in flat


def test_cli_spectrum_is_the_api(mnist, cli):
    doc = _json(cli, "spectrum", MNIST, "--class", "0-2")[0]
    assert doc == _plain(bilin.spectrum(mnist, cls=[0, 1, 2]).as_dict())


def test_cli_truncate_and_eval_are_the_api(mnist, cli, tmp_path):
    out = tmp_path / "k10.safetensors"
    doc = _json(cli, "truncate", MNIST, "--rank", "10", "-o", out)[0]
    t = bilin.truncate(mnist, rank=10, evaluate=False)
    assert doc["per_class"] == _plain(t.per_class)
    assert doc["hidden_units"] == t.hidden_units == 100
    assert _json(cli, "eval", out, "--confusion")[0] == _plain(bilin.evaluate(out).as_dict())
    assert bilin.evaluate(out).accuracy == pytest.approx(0.9283)
    sweep = _json(cli, "truncate", MNIST, "--sweep", "0,5,10")[0]
    assert sweep == _plain(bilin.truncation_sweep(mnist, [0, 5, 10]).as_dict())
    assert _json(cli, "eval", MNIST)[0] == _plain(bilin.evaluate(mnist).as_dict(confusion=False))


def test_cli_hosvd_explain_compare_are_the_api(mnist, cli):
    doc = _json(cli, "hosvd", MNIST, "--components", "3", "--top", "2")[0]
    h = bilin.hosvd(mnist, components=3, top=2)
    np.testing.assert_allclose([c["sigma"] for c in doc["components"]], h.sigma, rtol=1e-6)
    spec = f"{SAMPLES / 'data' / 'mnist-test.npz'}:0"
    doc = _json(cli, "explain", MNIST, "--input", spec)[0]
    e = bilin.explain(mnist, spec)
    assert doc["prediction"] == e.prediction == 7
    np.testing.assert_allclose(doc["logits"], e.logits, rtol=1e-6)
    doc = _json(cli, "compare", MNIST, MNIST, "--class", "3", "--top", "5")[0]
    c = bilin.compare(MNIST, MNIST, cls=[3], top=5)
    assert doc == _plain(c.as_dict())
    assert c.qfs.tolist() == [doc["classes"][0]["qfs"]]


def test_cli_interact_is_the_api(cli):
    sae_in = SHAKESPEARE / "sae-mlp-in-L1"
    doc = _json(cli, "interact", SHAKESPEARE, "--layer", "1", "--sae-in", sae_in, "--sae-out",
                SAE_OUT, "--feature", "395", "--top", "3")[0]
    i = bilin.interact(SHAKESPEARE, sae_in, SAE_OUT, 395, layer=1, top=3)
    assert doc == _plain(i.as_dict())


def test_cli_adversarial_is_the_api(mnist, cli):
    doc = _json(cli, "adversarial", MNIST, "--target", "3", "--strength", "0.3")[0]
    a = bilin.adversarial_masks(mnist, target=3, strength=0.3)
    assert doc == _plain(a.as_dict())
    assert a.targets == [3] and a.masks[0].pixel.shape == (784,)
    spec = f"{SAMPLES / 'data' / 'mnist-test.npz'}:17"
    doc = _json(cli, "adversarial", MNIST, "--target", "3", "--input", spec)[0]
    assert doc == _plain(bilin.adversarial_masks(mnist, target=3, input=spec).as_dict())


def test_every_command_calls_the_api():
    """The commands build on bilin_cli.api, not on their own call sequences."""
    import inspect

    from bilin_cli.cli import (
        adversarial_cmds,
        features_cmds,
        inspect_cmds,
        lm_cmds,
        lowrank_cmds,
        plot_cmds,
    )

    calls = {inspect_cmds.info: "api.info", inspect_cmds.eig: "api.output_directions",
             inspect_cmds._eig_one: "api.eig", inspect_cmds.spectrum: "api.spectrum",
             lowrank_cmds.truncate: "api.truncate", lowrank_cmds.evaluate: "api.evaluate",
             features_cmds.hosvd: "api.hosvd", features_cmds.explain: "api.explain",
             features_cmds.compare: "api.compare", lm_cmds.interact: "api.interact",
             plot_cmds.plot: "api.eig", adversarial_cmds.adversarial: "api.adversarial_masks"}
    for fn, call in calls.items():
        assert call + "(" in inspect.getsource(fn), fn.__name__


# ------------------------------------------------- the README's numbers, API only


def test_notebook_reproduces_the_readme_numbers(tmp_path, monkeypatch):
    """The README's tour, recomputed with nothing but the documented API."""
    monkeypatch.chdir(ROOT)
    m = bilin.load("sample_checkpoints/mnist")
    assert bilin.info("sample_checkpoints/mnist")["layers"][0]["d"] == 512
    d = bilin.eig(m, cls=3, top=5)
    assert d.eigenvalues.tolist() == pytest.approx(
        [-0.1458589732646942, -0.13135425746440887, 0.12325241416692734, -0.119499571621418,
         -0.11090001463890076], rel=1e-6)
    assert round(d.sum_abs, 4) == 2.6713 and round(d.effective_rank, 2) == 36.03
    assert round(100 * d.top_share, 2) == 23.62
    toy = bilin.eig("sample_checkpoints/toy", cls=1, top=2)
    assert toy.eigenvalues.tolist() == pytest.approx([1.99984, 5.09892e-05], rel=1e-4)
    assert bilin.suggest_map("sample_checkpoints/toy")[0] == {
        "kind": "classifier", "layers": [{"w": "left.weight", "v": "right.weight"}],
        "head": "head.weight"}
    sweep = bilin.truncation_sweep(m, [0, 5, 10, 15, 20, 30])
    assert round(100 * sweep.full_accuracy, 2) == 98.21
    assert [round(100 * a, 2) for a in sweep.accuracy] == [9.80, 70.64, 92.83, 97.61, 98.00,
                                                         98.21]
    t = bilin.truncate(m, rank=10, output=tmp_path / "mnist-k10.safetensors")
    e = bilin.evaluate(t.output)
    assert (round(e.accuracy, 4), e.n) == (0.9283, 10000)
    a = bilin.adversarial_masks(m, target="all", strength=0.3)
    mean = a.doc["rows"][0]
    assert [round(100 * mean[k], 2) for k in ("accuracy", "target_rate", "baseline_accuracy",
                                              "baseline_target_rate")] == [16.22, 90.66, 97.60,
                                                                           0.24]
    first = a.doc["per_target"][0]["rows"][0]
    assert (round(100 * first["accuracy"], 2), round(100 * first["target_rate"], 2)) == (
        32.82, 63.84)
    x = bilin.explain(m, "sample_checkpoints/data/mnist-test.npz:0")
    c7 = x.classes[0]
    assert x.prediction == 7 and round(float(c7.logit), 1) == 11.2
    # rank 4 (index 3); the README prints 5.17405 (float32: 5.1740522)
    assert float(c7.contributions[3]) == pytest.approx(5.17405, abs=6e-6)
    s = bilin.load("sample_checkpoints/shakespeare")
    space = bilin.eig(s, token=" ", layer=1, top=3)
    assert space.eigenvalues.tolist() == pytest.approx([0.38553, 0.216515, 0.205157],
                                                       abs=2e-6)
    r = bilin.rank_features(s, "sample_checkpoints/shakespeare/sae-mlp-out-L1", layer=1, top=3)
    assert r.features.tolist() == [395, 367, 860]


def test_api_names_stay_functions_whatever_was_imported_first():
    """Importing an API submodule (or a class from one) never replaces a function of the
    package with a module of the same name."""
    import subprocess
    import sys

    code = ("import bilin_cli.api as api\n"
            "from bilin_cli.api import Report\n"
            "import bilin_cli.api.reporting, bilin_cli.api.network, bilin_cli.api.features\n"
            "import bilin_cli, bilin_cli.report, bilin_cli.hosvd\n"
            "assert callable(api.report) and callable(api.hosvd) and callable(api.attention)\n"
            "assert callable(bilin_cli.report) and callable(bilin_cli.hosvd)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr

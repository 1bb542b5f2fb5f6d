"""Data-free similarity of whole networks, E_x[f_a(x) . f_b(x)], against independent references.

* one bilinear layer: the closed form must equal (a) the naive Gaussian identity
  E[(x^T A x)(x^T B x)] = tr(A S) tr(B S) + 2 tr(A S B S) on the materialized tensor B and
  (b) a Monte Carlo estimate of the same expectation (tests/network_similarity_ref.py,
  which shares nothing with bilin) to Monte Carlo error, biases, residual paths and input
  means included;
* stacks: the Gaussian closure is within the tolerance the docs state (0.05 in cosine);
* properties: cos(f, f) = 1, symmetry, invariance to permuting hidden units and to scale.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bilin_cli as bilin
from bilin_cli.analyses import network_moments as ns
from bilin_cli.api.network import input_distribution

sys.path.insert(0, str(Path(__file__).parents[1]))
import bilinear_transformer_ref as btref  # noqa: E402
import network_similarity_ref as ref  # noqa: E402

CLOSURE_TOLERANCE = 0.05  # |cosine - Monte Carlo| for stacks (README, compare --help)


def _load(net: dict, folder: Path):
    write = ref.write_classifier if net["kind"] == "classifier" else ref.write_lm
    net = write(net, folder)
    return net, bilin.load(folder)


def _moments(ma, mb, Sigma=None, mu=None):
    n = ns.network_function(ma).n_in
    dist = (ns.InputDistribution(n) if Sigma is None else
            ns.InputDistribution.from_covariance(Sigma, mu))
    pa = ns.propagate(ns.network_function(ma), dist)
    pb = ns.propagate(ns.network_function(mb), dist)
    return ns.cross_moments(pa, pb), pa, pb


def _random_cov(n: int, seed: int) -> np.ndarray:
    A = np.random.default_rng(seed).standard_normal((n, n)) / np.sqrt(n)
    return A @ A.T + 0.1 * np.eye(n)


def test_one_layer_equals_the_naive_gaussian_identity(tmp_path):
    """No biases: f_c = x^T A_c x with A_c from the materialized, symmetrized tensor B."""
    na, ma = _load(ref.random_classifier(0, n_in=9, d=7, hs=(6,), o=4), tmp_path / "a")
    nb, mb = _load(ref.random_classifier(1, n_in=9, d=5, hs=(8,), o=4), tmp_path / "b")
    S = _random_cov(9, 2)

    def forms(net):
        L = net["layers"][0]
        B = np.einsum("ca,ai,aj->cij", net["head"], L["W"], L["V"])
        B = 0.5 * (B + B.transpose(0, 2, 1))
        E = net["embed"]
        return np.einsum("ik,cij,jl->ckl", E, B, E)  # (o, n_in, n_in) in input space

    Fa, Fb = forms(na), forms(nb)
    want = np.array([np.trace(A @ S) * np.trace(B @ S) + 2 * np.trace(A @ S @ B @ S)
                     for A, B in zip(Fa, Fb, strict=True)])
    got, pa, pb = _moments(ma, mb, S)
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert pa.exact and pb.exact


@pytest.mark.parametrize("case", ["bias", "residual", "no-embed", "mean"])
def test_one_layer_matches_monte_carlo(tmp_path, case):
    Sigma = mu = None
    if case == "bias":
        na = ref.random_classifier(3, bias=True)
        nb = ref.random_classifier(4, bias=True, d=6, hs=(9,))
    elif case == "residual":
        na = ref.random_classifier(5, bias=True, residual=True, hs=(8,))
        nb = ref.random_classifier(6, bias=False, residual=True, hs=(8,))
    elif case == "no-embed":
        na = ref.random_classifier(7, embed=False, n_in=8, hs=(6,))
        nb = ref.random_classifier(8, embed=False, n_in=8, hs=(7,), bias=True)
    elif case == "mean":
        na = ref.random_classifier(9, bias=True)
        nb = ref.random_classifier(10, bias=True)
        Sigma, mu = _random_cov(12, 11), np.random.default_rng(12).standard_normal(12)
    na, ma = _load(na, tmp_path / "a")
    nb, mb = _load(nb, tmp_path / "b")
    got, pa, pb = _moments(ma, mb, Sigma, mu)
    assert pa.exact and pb.exact
    mc = ref.mc_moments(na, nb, 400_000, seed=0, Sigma=Sigma, mean=mu)
    assert abs(got.sum() - mc["inner"]) < 5 * mc["inner_se"] + 1e-12
    z = np.abs(got - mc["per_output"]) / (mc["per_output_se"] + 1e-15)
    assert z.max() < 5, z


def _perturbed(net: dict, seed: int, size: float = 0.3) -> dict:
    out = copy.deepcopy(net)
    rng = np.random.default_rng(seed)
    for L in out["layers"]:
        L["W"] = L["W"] + size * rng.standard_normal(L["W"].shape) / np.sqrt(L["W"].shape[1])
    return out


def _mlp_stack(p: dict, n_layers: int) -> dict:
    """A fully bilinear transformer's MLP stack (attention left out) as a reference net."""
    return {"kind": "lm", "final_scale": p["final_norm.scale"], "unembed": p["unembed.weight"],
            "layers": [{"W": p[f"blocks.{i}.mlp.w_m.weight"], "V": p[f"blocks.{i}.mlp.w_n.weight"],
                        "P": p[f"blocks.{i}.mlp.w_proj.weight"], "b_w": None, "b_v": None,
                        "b_p": None, "scale": p[f"blocks.{i}.norm_mlp.scale"]}
                       for i in range(n_layers)]}


@pytest.mark.parametrize("kind", ["classifier", "lm"])
def test_stacks_are_within_the_stated_tolerance(tmp_path, kind):
    for seed in range(3):
        if kind == "classifier":
            base = ref.random_classifier(seed, hs=(10, 7))
            na, ma = _load(base, tmp_path / f"a{seed}")
            nb, mb = _load(_perturbed(base, seed + 50), tmp_path / f"b{seed}")
        else:
            pa, _ = btref.write_checkpoint(tmp_path / f"a{seed}", seed=seed, d=10, h=16)
            pb, _ = btref.write_checkpoint(tmp_path / f"b{seed}", seed=seed + 50, d=10, h=16)
            na, nb = _mlp_stack(pa, 2), _mlp_stack(pb, 2)
            ma, mb = bilin.load(tmp_path / f"a{seed}"), bilin.load(tmp_path / f"b{seed}")
        s = bilin.network_similarity([ma, mb])
        assert not s.exact and "Gaussian closure" in s.approximation[0]
        cos, _ = ref.mc_cosine(na, nb, 200_000, seed=1)
        assert abs(s.cosine[0, 1] - cos) < CLOSURE_TOLERANCE


def test_scaled_fully_bilinear_transformer_mlps_are_exact_for_one_block(tmp_path):
    """Linear pre-scales and the final scale are folded; attention is left out (said so)."""
    params, config = btref.write_checkpoint(tmp_path / "a", seed=1, n_layers=1)
    params_b, _ = btref.write_checkpoint(tmp_path / "b", seed=2, n_layers=1)
    as_ref = lambda p: _mlp_stack(p, 1)  # noqa: E731

    s = bilin.network_similarity([tmp_path / "a", tmp_path / "b"])
    assert s.exact
    assert any("attention" in x for x in s.left_out[0])
    assert any("mlp 0" in x for x in s.covers[0])
    mc = ref.mc_moments(as_ref(params), as_ref(params_b), 300_000, seed=3)
    assert abs(s.inner[0, 1] - mc["inner"]) < 5 * mc["inner_se"]
    assert s.per_output.shape == (2, 2, config["vocab_size"])


def test_input_covariance_from_a_data_file(tmp_path):
    na, ma = _load(ref.random_classifier(15, bias=True), tmp_path / "a")
    nb, mb = _load(ref.random_classifier(16), tmp_path / "b")
    rng = np.random.default_rng(17)
    x = rng.standard_normal((5000, 12)) @ rng.standard_normal((12, 12)) + 2.0
    np.savez(tmp_path / "data.npz", x=x.astype(np.float32), y=np.zeros(5000, np.int64))
    x32 = x.astype(np.float32).astype(np.float64)
    for with_mean in (False, True):
        s = bilin.network_similarity([ma, mb], input_cov=tmp_path / "data.npz",
                                     input_mean=with_mean)
        mu = x32.mean(0) if with_mean else None
        mc = ref.mc_moments(na, nb, 300_000, seed=4, Sigma=np.cov(x32, rowvar=False), mean=mu)
        assert abs(s.inner[0, 1] - mc["inner"]) < 5 * mc["inner_se"]
        assert ("mean" in s.input["distribution"]) == with_mean
    np.save(tmp_path / "cov.npy", np.cov(x32, rowvar=False))
    by_matrix = bilin.network_similarity([ma, mb], input_cov=tmp_path / "cov.npy")
    by_data = bilin.network_similarity([ma, mb], input_cov=tmp_path / "data.npz")
    np.testing.assert_allclose(by_matrix.inner, by_data.inner, rtol=1e-9)


nets = st.builds(lambda seed, bias, residual: (seed, bias, residual),
                 st.integers(0, 10_000), st.booleans(), st.booleans())


@settings(max_examples=15, deadline=None)
@given(nets, st.integers(0, 10_000))
def test_properties(tmp_path_factory, spec, other):
    seed, bias, residual = spec
    folder = tmp_path_factory.mktemp("p")
    kw = {"bias": bias, "residual": residual, "hs": (8,)}
    na, ma = _load(ref.random_classifier(seed, **kw), folder / "a")
    nb, mb = _load(ref.random_classifier(other, **kw), folder / "b")
    # the same network with its hidden units permuted and its outputs doubled
    perm = np.random.default_rng(seed).permutation(8)
    nc = copy.deepcopy(na)
    L = nc["layers"][0]
    for k in ("W", "V", "b_w", "b_v"):
        if L[k] is not None:
            L[k] = L[k][perm]
    if not residual:
        nc["head"] = 2.0 * nc["head"][:, perm]
        nc["head_bias"] = None if nc["head_bias"] is None else 2.0 * nc["head_bias"]
    nc, mc_ = (_load(nc, folder / "c") if not residual else (na, ma))
    s = bilin.network_similarity([ma, mb, mc_])
    np.testing.assert_allclose(np.diag(s.cosine), 1.0, atol=1e-12)
    np.testing.assert_allclose(s.cosine, s.cosine.T, atol=1e-12)
    assert s.cosine[0, 2] == pytest.approx(1.0, abs=1e-9)
    assert -1 - 1e-12 <= s.cosine[0, 1] <= 1 + 1e-12
    finite = np.isfinite(s.per_output[0, 0])
    np.testing.assert_allclose(s.per_output[0, 0][finite], 1.0, atol=1e-9)


def test_cli_pair_and_matrix_equal_the_api(tmp_path, cli):
    paths = []
    for i in range(3):
        _load(ref.random_classifier(20 + i, bias=i == 1), tmp_path / f"n{i}")
        paths.append(tmp_path / f"n{i}")
    code, out, err = cli("compare", "--network", *paths[:2], "--json")
    assert code == 0, err
    doc = json.loads(out)
    api = bilin.network_similarity(paths[:2])
    assert doc["cosine"][0][1] == pytest.approx(api.cosine[0, 1], rel=1e-12)
    assert doc["exact"] is True and doc["covers"][0]["layers"]
    assert [o["index"] for o in doc["outputs"]] == list(range(5))
    code, out, err = cli("compare", "--network", *paths[:2])
    assert code == 0 and "cosine" in out and "exact" in out
    target = tmp_path / "sim.csv"
    code, out, err = cli("compare", "--network", *paths, "-o", target)
    assert code == 0, err
    rows = target.read_text().strip().splitlines()
    assert rows[0] == "network,n0,n1,n2" and len(rows) == 4
    matrix = np.array([[float(v) for v in r.split(",")[1:]] for r in rows[1:]])
    np.testing.assert_allclose(matrix, bilin.network_similarity(paths).cosine, rtol=1e-9)
    assert not (tmp_path / "sim.csv.partial.jsonl").exists()


def test_an_interrupted_matrix_resumes_from_its_log(tmp_path, cli):
    paths = []
    for i in range(3):
        _load(ref.random_classifier(30 + i), tmp_path / f"n{i}")
        paths.append(tmp_path / f"n{i}")
    log = tmp_path / "sim.json.partial.jsonl"  # what -o sim.json keeps while it runs
    first = bilin.network_similarity(paths, resume=log)
    lines = log.read_text().splitlines()
    assert len(lines) == 6  # 3 pairs and 3 self-pairs
    # mark one finished pair so its reuse shows, and cut the last line short
    row = json.loads(lines[1])
    row["per_output"] = [7.0] * len(row["per_output"])
    lines[1] = json.dumps(row)
    log.write_text("\n".join(lines[:-1] + [lines[-1][:20]]) + "\n")
    code, out, err = cli("compare", "--network", *paths, "--json", "-o", tmp_path / "sim.json")
    assert code == 0, err
    doc = json.loads((tmp_path / "sim.json").read_text())
    assert doc["inner"][0][1] == pytest.approx(7.0 * 5)  # the logged pair was reused
    assert doc["inner"][2][2] == pytest.approx(first.inner[2, 2], rel=1e-12)  # recomputed
    assert not log.exists()
    # another input distribution does not reuse the log
    log.write_text("\n".join(lines[:2]) + "\n")
    np.save(tmp_path / "cov.npy", 2.0 * np.eye(12))
    s = bilin.network_similarity(paths, input_cov=tmp_path / "cov.npy", resume=log)
    assert s.inner[0, 1] != pytest.approx(7.0 * 5)


@pytest.mark.parametrize("args, code, says", [
    (["--network", "A"], 2, "at least two"),
    (["--network", "A", "MNIST"], 1, "must read the same input"),
    (["A", "A", "--input-cov", "x.npy"], 2, "go with --network"),
    (["--network", "A", "A", "--input-cov", "BAD"], 1, "the networks read 12 inputs"),
    (["--network", "A", "A", "--class", "9"], 1, "output 9 is out of range"),
])
def test_network_errors_are_one_line(tmp_path, cli, args, code, says):
    _load(ref.random_classifier(40), tmp_path / "A")
    np.save(tmp_path / "bad.npy", np.eye(3))
    subst = {"A": tmp_path / "A", "MNIST": "sample_checkpoints/mnist", "BAD": tmp_path / "bad.npy"}
    got, out, err = cli("compare", *[subst.get(a, a) for a in args])
    assert got == code, err
    assert says in err and "Traceback" not in err


def test_lm_with_rms_norms_says_it_approximates(tmp_path):
    s = bilin.network_similarity(["sample_checkpoints/shakespeare", "sample_checkpoints/shakespeare"])
    assert not s.exact and any("RMS" in a for a in s.approximation)
    assert s.cosine[0, 1] == pytest.approx(1.0, abs=1e-9)
    assert s.outputs == list(range(84))


def test_input_distribution_refuses_a_non_psd_covariance():
    with pytest.raises(bilin.BilinError, match="not positive semi-definite"):
        input_distribution(2, np.array([[1.0, 0.0], [0.0, -1.0]]))


def test_quadratic_forms_route_equals_the_moments_route(tmp_path, monkeypatch):
    """Many one-layer networks go through their quadratic forms (once per network); the
    numbers equal the layer-by-layer moments of every pair."""
    models = []
    for i in range(6):
        net = ref.random_classifier(60 + i, bias=i % 2 == 0, residual=i >= 4, hs=(8,))
        models.append(_load(net, tmp_path / f"n{i}")[1])
    dist = ns.InputDistribution(12)
    props = [ns.propagate(ns.network_function(m), dist) for m in models]
    pair_cost, form_cost = ns.route_costs(props)
    assert form_cost is not None and form_cost < pair_cost
    calls = []
    monkeypatch.setattr(ns, "cross_moments", lambda *a: calls.append(a))
    s = bilin.network_similarity(models)
    assert not calls  # every pair came from the forms
    monkeypatch.undo()
    for a in range(6):
        for b in range(6):
            want = ns.cross_moments(props[a], props[b])
            np.testing.assert_allclose(s.per_output_inner[a, b], want, rtol=1e-10, atol=1e-12)

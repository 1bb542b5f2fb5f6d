"""Finite weights near float32's limit (3e38, float32 or bfloat16 checkpoints) and a float64
direction of 1e300: every command that computes a Q, an eigendecomposition, an SVD, a
truncated model or spectrum statistics either recomputes in float64 (exit 0, finite numbers,
one ``warning: ... overflowed float32; recomputed in float64`` line) or stops with one
``error:`` line (exit 1): never a null eigenvalue, a NaN checkpoint, a LinAlgError traceback
or a numpy RuntimeWarning. Ordinary checkpoints give exactly what they gave before.

The checkpoints are written here with safetensors.numpy (and ml_dtypes for bfloat16), not
with bilin.
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from bilin_cli.cli.app import main

SAMPLES = Path(__file__).resolve().parents[2] / "sample_checkpoints"
F32_MAX = float(np.finfo(np.float32).max)  # 3.4028e38
NEAR = 3.0e38  # finite in float32 and in bfloat16 (max 3.39e38)
WARNING = "overflowed float32; recomputed in float64"


# ------------------------------------------------------------------------- checkpoints


def _near_limit(rng, shape, peak=NEAR):
    """Random entries of either sign whose largest |entry| is ``peak``."""
    a = rng.standard_normal(shape)
    return a / np.abs(a).max() * peak


def _store(tensors: dict, dtype: str) -> dict:
    if dtype == "bfloat16":
        import ml_dtypes

        out = {k: np.asarray(v, np.float32).astype(ml_dtypes.bfloat16) for k, v in tensors.items()}
    else:
        out = {k: np.ascontiguousarray(v, dtype=dtype) for k, v in tensors.items()}
    for v in out.values():  # finite as stored: the overflow is bilin's to handle
        assert np.isfinite(v.astype(np.float64)).all()
    return out


def write_toy_big(path: Path, dtype="float32", peak=NEAR, seed=0, d=4, h=6, o=3) -> Path:
    """Toy layout (``left.weight``, ``right.weight``, ``head.weight``), entries up to ``peak``."""
    r = np.random.default_rng(seed)
    t = {"left.weight": _near_limit(r, (h, d), peak), "right.weight": _near_limit(r, (h, d), peak),
         "head.weight": _near_limit(r, (o, h), peak)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(_store(t, dtype), str(path))
    return path


def write_image_big(path: Path, dtype="float32", peak=NEAR, seed=1, d=12, n_in=20,
                    n_cls=5) -> Path:
    """Image layout (``embed.weight``, ``blocks.0.weight``, ``head.weight``) near the limit."""
    r = np.random.default_rng(seed)
    t = {"embed.weight": _near_limit(r, (d, n_in), peak),
         "blocks.0.weight": _near_limit(r, (2 * d, d), peak),
         "head.weight": _near_limit(r, (n_cls, d), peak)}
    path.mkdir(parents=True, exist_ok=True)
    save_file(_store(t, dtype), str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({"d_hidden": d, "d_input": n_in,
                                                  "d_output": n_cls, "n_layer": 1}))
    return path


def write_toy_plain(path: Path, scale=1.0, seed=2, d=4, h=6, o=3) -> Path:
    r = np.random.default_rng(seed)
    t = {k: (r.standard_normal(s) * scale).astype(np.float32)
         for k, s in (("left.weight", (h, d)), ("right.weight", (h, d)), ("head.weight", (o, h)))}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(t, str(path))
    return path


BIG = {
    "toy-f32": lambda p: write_toy_big(p / "toy.safetensors"),
    "toy-bf16": lambda p: write_toy_big(p / "toy.safetensors", "bfloat16"),
    "image-f32": lambda p: write_image_big(p / "img"),
    "image-bf16": lambda p: write_image_big(p / "img", "bfloat16"),
    # Overflows float32 in Q (1e13^3 = 1e39) though every weight is ordinary-looking.
    "toy-1e13": lambda p: write_toy_big(p / "toy.safetensors", peak=1e13),
}


@pytest.fixture(params=sorted(BIG))
def big(request, tmp_path):
    return BIG[request.param](tmp_path)


# ---------------------------------------------------------------------------- helpers


def run(cli, *args):
    """``cli(*args)`` that also fails on any RuntimeWarning (numpy overflow) on the way."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = cli(*args)
    runtime = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert not runtime, f"numpy warnings: {runtime}"
    assert "Traceback" not in err and "LinAlgError" not in err, err
    return code, out, err


def assert_one_error(code, out, err, *words):
    assert code == 1, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def warned(err) -> bool:
    lines = [ln for ln in err.splitlines() if ln.startswith("warning: ") and WARNING in ln]
    assert len(lines) <= 1, f"said more than once: {err}"
    return len(lines) == 1


def numbers(obj):
    """Every number in a JSON document; None inside a list of numbers counts as NaN."""
    if isinstance(obj, dict):
        for v in obj.values():
            yield from numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from (numbers(v) if v is not None else [math.nan])
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield float(obj)


def assert_finite(doc, *keys):
    """Finite numbers everywhere in ``doc``, and none of ``keys`` null."""
    bad = [v for v in numbers(doc) if not math.isfinite(v)]
    assert not bad, f"non-finite or null numbers in {doc}"
    for key in keys:
        assert doc.get(key) is not None, f"{key} is null"


# ------------------------------------------------------------ eig: recomputed in float64


def test_eig_recomputes_in_float64(cli, big):
    code, out, err = run(cli, "eig", big, "--class", "1", "--json")
    assert code == 0, err
    assert warned(err), err
    doc = json.loads(out)
    assert_finite(doc, "eigenvalues", "effective_rank", "sum_abs_eigenvalues", "top_k_share")
    assert doc["dtype"] == "float64"
    assert any("float64" in n for n in doc["notes"])
    # The same numbers as --float64 asks for from the start.
    code, out64, err64 = run(cli, "eig", big, "--class", "1", "--json", "--float64")
    assert code == 0 and not warned(err64), err64
    ref = json.loads(out64)
    for key in ("eigenvalues", "eigenvectors", "effective_rank", "sum_abs_eigenvalues"):
        assert doc[key] == ref[key], key


def test_eig_table_and_arpack(cli, big):
    code, out, err = run(cli, "eig", big, "--class", "0", "--basis", "hidden")
    assert code == 0 and warned(err), err
    assert "nan" not in out.lower() and " inf" not in out.lower()
    code, out, err = run(cli, "eig", big, "--class", "0", "--top", "1", "--method", "arpack",
                         "--json")
    assert code == 0 and warned(err), err
    assert_finite(json.loads(out), "eigenvalues")


def test_arpack_never_reaches_lapack_with_nan(tmp_path, capfd, monkeypatch):
    """ARPACK on an overflowing operator stops at the first bad product (LAPACK's xerbla
    would print ``** On entry to SLASCL ...`` on the process's stderr, outside sys.stderr)."""
    path = write_image_big(tmp_path / "img")
    monkeypatch.setattr(sys, "argv", ["bilin", "eig", str(path), "--class", "0", "--top", "2",
                                      "--method", "arpack", "--json"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code in (0, None)
    out, err = capfd.readouterr()
    assert "SLASCL" not in err and "illegal value" not in err, err
    assert WARNING in err
    assert_finite(json.loads(out), "eigenvalues")


# ------------------------------------------------------------------------- spectrum


def test_spectrum_recomputes_in_float64(cli, big):
    code, out, err = run(cli, "spectrum", big, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert_finite(doc)
    for row in doc["directions"]:
        assert row["effective_rank"] is not None and row["sum_abs_eigenvalues"] is not None
    code, out64, _ = run(cli, "spectrum", big, "--json", "--float64")
    ref = json.loads(out64)
    for a, b in zip(doc["directions"], ref["directions"], strict=True):
        assert a["effective_rank"] == pytest.approx(b["effective_rank"], rel=1e-12)
        assert a["k90"] == b["k90"]


def test_spectrum_records_the_warning(big):
    """The library says so in ``model.warnings`` once, whatever the number of directions (the
    renderer prints a model's warnings on stderr)."""
    from bilin_cli import api

    model = api.load(big)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        s = api.spectrum(model)
    assert np.isfinite(s.eigenvalues).all()
    assert [w for w in model.warnings if WARNING in w] == [
        "layer 0's interaction matrices overflowed float32; recomputed in float64"]


# ---------------------------------------------------------------------------- hosvd


@pytest.mark.parametrize("method", ["auto", "gram", "unfold"])
def test_hosvd_finite(cli, big, method):
    code, out, err = run(cli, "hosvd", big, "--json", "--method", method)
    assert code == 0, err
    doc = json.loads(out)
    assert_finite(doc, "singular_values", "rank_tolerance")
    for comp in doc["components"]:
        for key in ("sigma", "energy_share", "effective_rank", "eigenvalues", "eigenvectors"):
            assert comp[key] is not None
    # Recomputed in float64 exactly when it says so.
    assert warned(err) == (doc["dtype"] == "float64"), (doc["dtype"], err)
    code, out64, _ = run(cli, "hosvd", big, "--json", "--method", method, "--float64")
    ref = json.loads(out64)
    np.testing.assert_allclose(doc["singular_values"], ref["singular_values"], rtol=1e-6)


def test_hosvd_gram_recomputes(cli, tmp_path):
    """The gram route re-reads sigma_k as ||Q(u_k)||_F in the layer's dtype: that overflowed."""
    path = write_image_big(tmp_path / "img")
    code, out, err = run(cli, "hosvd", path, "--json", "--method", "gram")
    assert code == 0 and warned(err), err
    assert json.loads(out)["dtype"] == "float64"


# ------------------------------------------------------------------------- truncate


def test_truncate_writes_no_nan_checkpoint(cli, big, tmp_path):
    target = tmp_path / "out" / "trunc.safetensors"
    target.parent.mkdir()
    for extra in ((), ("--float64",)):
        code, out, err = run(cli, "truncate", big, "--rank", "2", "-o", target, *extra)
        line = assert_one_error(code, out, err, "float32", "rescale")
        assert "head weights" in line or "float64" in line
        assert list(target.parent.iterdir()) == [], "a checkpoint (or temporary) was left"


def test_truncate_library_refuses_before_writing(big, tmp_path):
    from bilin_cli import api
    from bilin_cli.core.errors import BilinError

    target = tmp_path / "t.safetensors"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(BilinError, match="does not fit in float32"):
            api.truncate(api.load(big), rank=1, evaluate=False, output=target)
    assert not target.exists()


# ------------------------------------------------- float64 overflows too: one error line


@pytest.fixture
def huge64(tmp_path):
    """A float64 checkpoint with weights of 1e150: Q reaches 1e450, beyond float64."""
    r = np.random.default_rng(5)
    t = {"left.weight": r.standard_normal((6, 4)) * 1e150,
         "right.weight": r.standard_normal((6, 4)) * 1e150,
         "head.weight": r.standard_normal((3, 6)) * 1e150}
    save_file(t, str(tmp_path / "huge.safetensors"))
    return tmp_path / "huge.safetensors"


@pytest.mark.parametrize("args", [
    ("eig", "--class", "1", "--json"),
    ("eig", "--class", "1", "--top", "1", "--method", "arpack"),
    ("spectrum", "--json"),
    ("hosvd", "--json", "--method", "gram"),
    ("hosvd", "--json", "--method", "unfold"),
])
def test_float64_overflow_is_one_error(cli, huge64, args):
    code, out, err = run(cli, args[0], huge64, *args[1:], "--float64")
    line = assert_one_error(code, out, err, "overflows even in float64", "rescale")
    assert "1.7e+150" in line or "e+150" in line  # says how large the weights are
    assert out == ""


def test_float64_overflow_truncate(cli, huge64, tmp_path):
    target = tmp_path / "t.safetensors"
    code, out, err = run(cli, "truncate", huge64, "--rank", "1", "-o", target, "--float64")
    assert_one_error(code, out, err, "class 0", "overflows even in float64")
    assert not target.exists()


# ------------------------------------------------------------ a direction of 1e300


@pytest.fixture
def far_direction(tmp_path):
    ckpt = write_toy_plain(tmp_path / "toy.safetensors")
    path = tmp_path / "far.npy"
    np.save(path, np.array([1e300, -1e300, 5e299]))
    return ckpt, path


def test_direction_1e300_eig(cli, far_direction):
    ckpt, path = far_direction
    with warnings.catch_warnings():  # directions.py: see test_direction_1e300_no_numpy_warning
        warnings.simplefilter("ignore", RuntimeWarning)
        code, out, err = cli("eig", ckpt, "--direction", path, "--json")
        code64, out64, err64 = cli("eig", ckpt, "--direction", path, "--json", "--float64")
    assert code == 0 and "Traceback" not in err, err
    assert warned(err)
    doc = json.loads(out)
    assert_finite(doc, "eigenvalues", "effective_rank", "sum_abs_eigenvalues")
    assert doc["direction"]["norm"] == pytest.approx(np.linalg.norm([1, -1, 0.5]) * 1e300)
    assert code64 == 0 and not warned(err64), err64
    ref = json.loads(out64)
    assert_finite(ref, "eigenvalues", "effective_rank")  # was null: (sum|l|)^2 overflowed
    assert doc["eigenvalues"] == ref["eigenvalues"]
    assert doc["effective_rank"] == ref["effective_rank"]


def test_direction_1e300_spectrum(cli, far_direction):
    ckpt, path = far_direction
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for extra in ((), ("--float64",)):
            code, out, err = cli("spectrum", ckpt, "--direction", path, "--json", *extra)
            assert code == 0 and "Traceback" not in err, err
            row = json.loads(out)["directions"][0]
            assert_finite(row, "effective_rank", "sum_abs_eigenvalues")
            assert row["direction"]["norm"] is not None


def test_direction_1e300_no_numpy_warning(cli, far_direction):
    ckpt, path = far_direction
    run(cli, "eig", ckpt, "--direction", path, "--json")


def test_direction_overflowing_float64_is_one_error(cli, tmp_path):
    """1e300 times weights of 1e10 is beyond float64: the error names the direction."""
    ckpt = write_toy_plain(tmp_path / "toy.safetensors", scale=1e10)
    path = tmp_path / "far.npy"
    np.save(path, np.full(3, 1e300))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        code, out, err = cli("eig", ckpt, "--direction", path, "--json", "--float64")
    assert_one_error(code, out, err, "overflows even in float64", "direction entries up to 1e+300")


# ------------------------------------------------------- statistics of huge spectra


def test_spectrum_statistics_scale_free():
    from bilin_cli.model.spectra import effective_rank, rank_for_share, share_of_top, summarize

    lam = np.array([3.0, -2.0, 1.0, -0.5, 0.25])
    for scale in (1e200, 1e300, 1e307):
        big = lam * scale
        assert effective_rank(big) == pytest.approx(effective_rank(lam), rel=1e-14)
        assert share_of_top(big, 2) == pytest.approx(share_of_top(lam, 2), rel=1e-14)
        assert rank_for_share(big, 0.9) == rank_for_share(lam, 0.9)
    edge = np.array([1.5e308, -1.5e308])  # finite, but sum |lambda| is not: callers refuse it
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        row = summarize(edge)
        assert effective_rank(edge) == pytest.approx(2.0)
    assert math.isinf(row["sum_abs_eigenvalues"])


def test_ordinary_statistics_bit_for_bit():
    """The plain formula, unchanged, wherever it does not overflow."""
    from bilin_cli.model.spectra import effective_rank, share_of_top

    lam = np.random.default_rng(0).standard_normal(512) * 0.1
    plain = float(np.sum(np.abs(lam)) ** 2 / float(np.sum(lam**2)))
    assert effective_rank(lam) == plain
    a = np.sort(np.abs(lam))[::-1]
    assert share_of_top(lam, 10) == float(a[:10].sum() / float(a.sum()))


# ------------------------------------------------- ordinary checkpoints: unchanged output

MNIST = SAMPLES / "mnist"
needs_mnist = pytest.mark.skipif(not (MNIST / "model.safetensors").exists(),
                                 reason="sample_checkpoints/mnist not present")


@needs_mnist
def test_mnist_eig_pinned(cli):
    """Values pinned from the code before the overflow handling: the fast path is the same."""
    code, out, err = run(cli, "eig", MNIST, "--class", "3", "--top", "5", "--json", "--float64")
    assert code == 0 and err == "", err
    doc = json.loads(out)
    assert doc["eigenvalues"] == [-0.14585899456050666, -0.131354263121086, 0.12325245094572952,
                                  -0.11949955346962648, -0.1109000033671183]
    assert doc["effective_rank"] == 36.02534755135082
    assert doc["sum_abs_eigenvalues"] == 2.6712982378887262
    assert doc["dtype"] == "float64"
    assert not any("float64" in n for n in doc["notes"])
    code, out, err = run(cli, "eig", MNIST, "--class", "3", "--top", "5", "--json")
    assert code == 0 and err == "", err
    doc = json.loads(out)
    assert doc["eigenvalues"] == [-0.1458589881658554, -0.13135425746440887, 0.12325245141983032,
                                  -0.1194995567202568, -0.11089999973773956]
    assert doc["effective_rank"] == 36.025347932456754
    assert doc["dtype"] == "float32"


@needs_mnist
def test_mnist_spectrum_hosvd_truncate_pinned(cli, tmp_path):
    code, out, err = run(cli, "spectrum", MNIST, "--class", "3", "--json")
    assert code == 0 and err == "", err
    row = json.loads(out)["directions"][0]
    assert (row["effective_rank"], row["sum_abs_eigenvalues"], row["k50"], row["k90"],
            row["k99"]) == (36.025347932456754, 2.671298227902753, 13, 41, 251)
    code, out, err = run(cli, "hosvd", MNIST, "--components", "3", "--json")
    assert code == 0 and err == "", err
    doc = json.loads(out)
    assert doc["dtype"] == "float32"
    assert doc["singular_values"] == [0.6803926533676787, 0.6230559520077326, 0.5973216737163825]
    import hashlib

    from safetensors.numpy import load_file

    target = tmp_path / "t.safetensors"
    code, out, err = run(cli, "truncate", MNIST, "--rank", "5", "-o", target)
    assert code == 0 and WARNING not in err, err
    head = load_file(str(target))["head.weight"]
    assert hashlib.sha256(head.tobytes()).hexdigest()[:16] == "3f7dacd8f75e1fc1"


# ------------------------------------------------------- full forward passes (eval, sweep)


@pytest.fixture
def toy_data(tmp_path):
    r = np.random.default_rng(5)
    path = tmp_path / "data.npz"
    np.savez(path, x=r.random((30, 4)).astype(np.float32), y=np.arange(30) % 3)
    return path


def test_eval_forward_recomputes_in_float64(cli, tmp_path, toy_data):
    ck = write_toy_big(tmp_path / "big.safetensors")
    code, out, err = run(cli, "eval", ck, "--data", toy_data, "--json")
    assert code == 0, err
    assert "warning: the forward pass overflowed float32; recomputed in float64" in err
    assert err.count("forward pass overflowed") == 1
    doc = json.loads(out)
    code, out64, err64 = run(cli, "eval", ck, "--data", toy_data, "--json", "--float64")
    assert code == 0 and "overflowed" not in err64, err64
    assert doc["accuracy"] == json.loads(out64)["accuracy"]


def test_sweep_full_accuracy_has_no_numpy_warning(cli, tmp_path, toy_data):
    ck = write_toy_big(tmp_path / "big.safetensors")
    code, out, err = run(cli, "truncate", ck, "--sweep", "0,1", "--data", toy_data, "--json")
    assert code == 0, err
    assert_finite(json.loads(out), "full_accuracy")


def test_forward_beyond_float64_is_one_error(cli, tmp_path, toy_data):
    # Entries of 1e300 in float64: (1e300)^2 overflows float64 itself.
    r = np.random.default_rng(1)
    t = {k: _near_limit(r, s, 1e300) for k, s in
         (("left.weight", (6, 4)), ("right.weight", (6, 4)), ("head.weight", (3, 6)))}
    ck = tmp_path / "huge.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in t.items()}, str(ck))
    assert_one_error(*run(cli, "eval", ck, "--data", toy_data, "--float64"),
                     "forward pass overflows")


def test_ordinary_forward_is_unchanged():
    from bilin_cli import api

    m = api.load(SAMPLES / "mnist")
    x = np.random.default_rng(0).random((5, 784)).astype(np.float32)
    before = m._forward(x, np.float32)
    np.testing.assert_array_equal(m.forward(x), before)
    assert before.dtype == np.float32 and not m.warnings


def test_many_directions_say_a_late_overflow(cli, tmp_path):
    """class 0 fits float32, class 1's Q overflows: --class all still says so, once."""
    r = np.random.default_rng(3)
    W, V = r.standard_normal((6, 4)), r.standard_normal((6, 4))
    H = np.zeros((2, 6))
    H[0] = r.standard_normal(6)
    H[1] = _near_limit(r, (6,), NEAR)
    W, V = W / np.abs(W).max() * 1e19, V / np.abs(V).max() * 1e19
    ck = tmp_path / "late.safetensors"
    save_file({"left.weight": W.astype(np.float32), "right.weight": V.astype(np.float32),
               "head.weight": H.astype(np.float32)}, str(ck))
    code, out, err = run(cli, "eig", ck, "--class", "all", "--top", "2", "--json")
    assert code == 0, err
    docs = [json.loads(line) for line in out.splitlines()]
    assert [d["dtype"] for d in docs] == ["float32", "float64"], docs
    assert warned(err), err

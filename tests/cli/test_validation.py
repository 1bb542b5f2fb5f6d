"""Hostile option values and data files: one ``error:`` line (exit 1) or a usage error
(exit 2), never a traceback, a hang, a silent clamp or a file left behind.

Rule under test (bilin_cli/cli/options.py): a value that does not parse as the option's
type is a usage error (exit 2); a value that parses but lies outside the option's range
(NaN, infinity, negative, zero counts) is ``error: --OPT must be ...`` and exit 1.
Every hostile file is generated here, at run time.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import struct
import zipfile

import numpy as np
import pytest
from conftest import write_image, write_transformer
from safetensors.numpy import save_file

N_IN, N_CLS, SIDE = 16, 4, 4


def _npy_bytes(shape, descr="<f4", data=b"") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + data


def _idx(dims, data: bytes) -> bytes:
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + data


def _idx_dir(root, name, images: bytes, labels: bytes, gz=True):
    folder = root / name
    folder.mkdir()
    suffix = ".gz" if gz else ""
    for fname, blob in (("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)):
        path = folder / (fname + suffix)
        path.write_bytes(gzip.compress(blob) if gz else blob)
    return folder


def _sae(path, d, f, cfg_text: str | None):
    r = np.random.default_rng(5)
    path.mkdir()
    save_file({"W_enc": r.standard_normal((d, f)).astype(np.float32),
               "W_dec": r.standard_normal((f, d)).astype(np.float32)},
              str(path / "sae_weights.safetensors"))
    if cfg_text is not None:
        (path / "cfg.json").write_text(cfg_text)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    write_image(r / "img", d=6, n_in=N_IN, n_cls=N_CLS, seed=3)
    cfg = json.loads((r / "img" / "config.json").read_text())
    cfg["input_shape"] = [SIDE, SIDE]
    (r / "img" / "config.json").write_text(json.dumps(cfg))
    write_transformer(r / "lm", d=8, h=16, vocab=11, n_layer=2)

    x = rng.integers(0, 256, size=(40, SIDE, SIDE)).astype(np.uint8)
    y = rng.integers(0, N_CLS, 40).astype(np.int64)
    np.savez(r / "good.npz", x=x, y=y)
    np.savez_compressed(r / "goodc.npz", x=x, y=y)
    good = (r / "good.npz").read_bytes()
    (r / "trunc.npz").write_bytes(good[: len(good) // 2])
    goodc = bytearray((r / "goodc.npz").read_bytes())
    goodc[80:120] = b"\xff" * 40
    (r / "corrupt.npz").write_bytes(bytes(goodc))
    crc = bytearray(good)
    at = crc.find(b"\x93NUMPY") + 200
    crc[at : at + 8] = b"\x01" * 8
    (r / "crc.npz").write_bytes(bytes(crc))
    (r / "text.npz").write_text("x,y\n1,2\n")
    np.save(r / "plain.npy", np.ones((3, 16)))
    xf = x.reshape(40, -1) / 255.0
    for name, xs, ys in (
        ("nan-x", np.where(np.arange(xf.size).reshape(xf.shape) % 97 == 0, np.nan, xf), y),
        ("inf-x", np.where(np.arange(xf.size).reshape(xf.shape) == 5, np.inf, xf), y),
        ("big-x", np.where(np.arange(xf.size).reshape(xf.shape) == 5, 1e300, xf), y),
        ("float-y", xf, y.astype(np.float64)),
        ("frac-y", xf, y + 0.5),
        ("nan-y", xf, np.where(np.arange(40) == 3, np.nan, y.astype(float))),
        ("huge-y", xf, np.full(40, 1e30)),
        ("str-x", np.array(["a"] * 40), y),
        ("scalar-x", np.float32(1.0), y),
        ("empty-x", np.zeros((0, 16), np.float32), np.zeros(0, np.int64)),
        ("y2d", xf, y.reshape(20, 2)),
        ("short-y", xf, y[:30]),
        ("no-y", xf, None),
        ("complex-x", xf.astype(np.complex64), y),
    ):
        arrays = {"x": xs} if ys is None else {"x": xs, "y": ys}
        np.savez(r / f"{name}.npz", **arrays)
    np.savez(r / "obj-x.npz", x=np.array([{"a": 1}] * 40, dtype=object), y=y)
    with zipfile.ZipFile(r / "huge-header.npz", "w") as z:
        z.writestr("x.npy", _npy_bytes((10**12, 10**6), data=b"\0" * 64))
        z.writestr("y.npy", _npy_bytes((40,), "<i8", y.tobytes()))
    with zipfile.ZipFile(r / "neg-header.npz", "w") as z:
        z.writestr("x.npy", _npy_bytes((40, 16), data=b"\0" * 40 * 16 * 4).replace(
            b"(40, 16)", b"(-40, 16)"))
        z.writestr("y.npy", _npy_bytes((40,), "<i8", y.tobytes()))

    imgs, labs = x.tobytes(), y.astype(np.uint8).tobytes()
    _idx_dir(r, "idx-ok", _idx([40, SIDE, SIDE], imgs), _idx([40], labs))
    gz = gzip.compress(_idx([40, SIDE, SIDE], imgs))
    d = _idx_dir(r, "idx-trunc-gz", b"", _idx([40], labs))
    (d / "t10k-images-idx3-ubyte.gz").write_bytes(gz[: len(gz) - 30])
    _idx_dir(r, "idx-huge", _idx([2**32 - 1] * 4, b"\0" * 100), _idx([40], labs), gz=False)
    _idx_dir(r, "idx-huge-gz", _idx([2**32 - 1] * 4, b"\0" * 100), _idx([40], labs))
    _idx_dir(r, "idx-short", _idx([40, SIDE, SIDE], imgs[:-10]), _idx([40], labs), gz=False)
    _idx_dir(r, "idx-long", _idx([40, SIDE, SIDE], imgs + b"\0" * 7), _idx([40], labs))
    _idx_dir(r, "idx-magic", b"\x00\x00\x0d\x03" + imgs, _idx([40], labs), gz=False)
    _idx_dir(r, "idx-header-cut", b"\x00\x00\x08\x03\x00\x00", _idx([40], labs), gz=False)
    (r / "idx-none").mkdir()
    (r / "idx-none" / "readme.txt").write_text("nothing here")
    (r / "idx-fifo").mkdir()
    os.mkfifo(r / "idx-fifo" / "t10k-images-idx3-ubyte")
    (r / "idx-fifo" / "t10k-labels-idx1-ubyte").write_bytes(_idx([40], labs))
    os.mkfifo(r / "fifo.npz")
    os.mkfifo(r / "fifo.npy")
    os.mkfifo(r / "fifo.png")

    (r / "huge.npy").write_bytes(_npy_bytes((2**40, 2**40), data=b"\0" * 16))
    (r / "short.npy").write_bytes(_npy_bytes((4,), data=b"\0" * 8))
    (r / "long.npy").write_bytes(_npy_bytes((4,), data=b"\0" * 24))
    (r / "garbage.npy").write_bytes(b"\x93NUMPY\x01\x00\xff\xff{'descr': nonsense")
    (r / "text.npy").write_text("1,2,3,4\n")
    np.save(r / "obj.npy", np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
    np.save(r / "u-nan.npy", np.array([1.0, np.nan, 0.0, 2.0]))
    np.save(r / "u4.npy", np.array([1.0, 0.5, 0.0, -2.0]))
    np.save(r / "x16-nan.npy", np.full(16, np.nan))
    (r / "garbage.png").write_text("not an image")
    import matplotlib.image

    matplotlib.image.imsave(r / "wide.png", np.zeros((3, 9)), cmap="gray")

    _sae(r / "sae-deep", 8, 6, "[" * 5000 + "]" * 5000)
    _sae(r / "sae-list", 8, 6, "[1, 2, 3]")
    _sae(r / "sae-nan", 8, 6, '{"d_in": NaN}')
    _sae(r / "sae-badjson", 8, 6, "{d_in: 8")
    _sae(r / "sae-types", 8, 6, json.dumps({"d_in": "eight", "d_sae": [1, {"x": None}],
                                            "hook_name": 7}))
    _sae(r / "sae-fifo", 8, 6, None)
    os.mkfifo(r / "sae-fifo" / "cfg.json")

    # A language model whose token texts come from a tokenizer.json (no vocab list).
    for name, text in (("tok-garbage", "this is not json"),
                       ("tok-deep", "[" * 100000 + "]" * 100000),
                       ("tok-wrong", json.dumps({"model": {"type": "BPE", "vocab": 7}}))):
        write_transformer(r / name, d=8, h=16, vocab=11, n_layer=1)
        cfg = json.loads((r / name / "config.json").read_text())
        cfg.pop("vocab")
        (r / name / "config.json").write_text(json.dumps(cfg))
        (r / name / "tokenizer.json").write_text(text)
    return r


@pytest.fixture(autouse=True)
def no_hang():
    """A regression that opens a FIFO would block forever: fail after 30 s instead."""

    def boom(signum, frame):
        raise TimeoutError("bilin hung (a FIFO opened?)")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _tree(path) -> set:
    return {p.relative_to(path) for p in path.rglob("*")}


def _run(cli, root, args):
    before = _tree(root)
    cwd_before = set(os.listdir("."))
    code, out, err = cli(*(str(a).format(r=root) for a in args))
    assert _tree(root) == before, "files were left behind"
    assert set(os.listdir(".")) == cwd_before, "files were left in the working directory"
    assert "Traceback" not in err and "Traceback" not in out
    return code, out, err


def _one_error_line(err: str, message: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), lines[0]
    assert message in lines[0], lines[0]
    assert "\x1b" not in lines[0]


# --------------------------------------------------------------------------- options

ADV = ["adversarial", "{r}/img", "--target", "1", "--data", "{r}/good.npz"]
RF = ["rank-features", "{r}/lm", "--layer", "1", "--sae-out", "{r}/sae-types"]
INTERACT = ["interact", "{r}/lm", "--layer", "1", "--sae-in", "{r}/sae-types", "--sae-out",
            "{r}/sae-types", "--feature", "0"]
EIG = ["eig", "{r}/img", "--class", "1"]
OUT = ["-o", "{r}/never-written.safetensors"]

OPTION_ERRORS = [  # exit 1: parses, but out of range
    ("eig top 0", [*EIG, "--top", "0"], "--top must be a positive integer, got 0"),
    ("eig top negative", [*EIG, "--top", "-5"], "--top must be a positive integer"),
    ("eig tokens negative", ["eig", "{r}/lm", "--token", "1", "--tokens", "-1"],
     "--tokens must be 0 or positive"),
    ("eig chain 0", [*EIG, "--chain", "0"], "--chain must be a positive integer"),
    ("spectrum plot-top 0", ["spectrum", "{r}/img", "--plot-top", "0"],
     "--plot-top must be a positive integer"),
    ("spectrum plot-top negative", ["spectrum", "{r}/img", "--plot-top", "-3", "--plot",
                                    "{r}/never.png"], "--plot-top must be a positive integer"),
    ("truncate energy nan", ["truncate", "{r}/img", "--energy", "nan", *OUT],
     "--energy must be in (0, 1], got nan"),
    ("truncate energy inf", ["truncate", "{r}/img", "--energy", "inf", *OUT],
     "--energy must be in (0, 1]"),
    ("truncate energy 0", ["truncate", "{r}/img", "--energy", "0", *OUT],
     "--energy must be in (0, 1]"),
    ("truncate energy above 1", ["truncate", "{r}/img", "--energy", "1.5", *OUT],
     "--energy must be in (0, 1]"),
    ("truncate energy negative", ["truncate", "{r}/img", "--energy", "-0.5", *OUT],
     "--energy must be in (0, 1]"),
    ("truncate rank negative", ["truncate", "{r}/img", "--rank", "-1", *OUT],
     "--rank must be 0 or positive"),
    ("truncate sweep negative", ["truncate", "{r}/img", "--sweep", "0,-2,5", "--data",
                                 "{r}/good.npz"], "--sweep: -2 is out of range"),
    ("plot n 0", ["plot", "{r}/img", "--class", "1", "--n", "0", "-o", "{r}/never.png"],
     "--n must be a positive integer"),
    ("plot curve negative", ["plot", "{r}/img", "--class", "1", "--curve", "-1", "-o",
                             "{r}/never.png"], "--curve must be a positive integer"),
    ("plot shape negative", ["plot", "{r}/img", "--class", "1", "--shape", "-4x-4", "-o",
                             "{r}/never.png"], "--shape must be two positive integers"),
    ("plot shape zero", ["plot", "{r}/img", "--class", "1", "--shape", "0x16", "-o",
                         "{r}/never.png"], "--shape must be two positive integers"),
    ("adversarial strength nan", [*ADV, "--strength", "nan"], "--strength must be positive"),
    ("adversarial strength inf", [*ADV, "--strength", "inf"], "--strength must be positive"),
    ("adversarial strength -inf", [*ADV, "--strength", "-inf"], "--strength must be positive"),
    ("adversarial strength 0", [*ADV, "--strength", "0"], "--strength must be positive"),
    ("adversarial strength huge", [*ADV, "--strength", "1e300"], "at most 1000000"),
    ("adversarial pixels 0", [*ADV, "--variant", "top-pixels", "--pixels", "0"],
     "--pixels must be a positive integer"),
    ("adversarial eig 0", [*ADV, "--eig", "0"], "--eig must be a positive integer"),
    ("adversarial per-class 0", [*ADV, "--per-class", "0"],
     "--per-class must be a positive integer"),
    ("adversarial seed negative", [*ADV, "--seed", "-1"], "--seed must be 0 or positive"),
    ("adversarial sweep nan", [*ADV, "--sweep", "nan,0.1"], "--sweep: nan is out of range"),
    ("adversarial sweep inf", [*ADV, "--sweep", "0.1,inf"], "--sweep: inf is out of range"),
    ("adversarial sweep 0", [*ADV, "--sweep", "0,0.1"], "--sweep: 0.0 is out of range"),
    ("adversarial pixel sweep 0", [*ADV, "--variant", "top-pixels", "--sweep", "0,5"],
     "--sweep: 0 is out of range"),
    ("hosvd max-memory nan", ["hosvd", "{r}/img", "--max-memory", "nan"],
     "--max-memory must be a positive, finite number of GB"),
    ("hosvd max-memory inf", ["hosvd", "{r}/img", "--max-memory", "inf"],
     "--max-memory must be a positive"),
    ("hosvd max-memory negative", ["hosvd", "{r}/img", "--max-memory", "-1"],
     "--max-memory must be a positive"),
    ("hosvd components 0", ["hosvd", "{r}/img", "--components", "0"],
     "--components must be a positive integer"),
    ("hosvd top 0", ["hosvd", "{r}/img", "--top", "0"], "--top must be a positive integer"),
    ("explain classes 0", ["explain", "{r}/img", "-i", "{r}/good.npz:0", "--classes", "0"],
     "--classes must be a positive integer"),
    ("explain top negative", ["explain", "{r}/img", "-i", "{r}/good.npz:0", "--top", "-1"],
     "--top must be a positive integer"),
    ("compare top 0", ["compare", "{r}/img", "{r}/img", "--top", "0"],
     "--top must be a positive integer"),
    ("interact top 0", [*INTERACT, "--top", "0"], "--top must be a positive integer"),
    ("interact eig negative", [*INTERACT, "--eig", "-1"], "--eig must be 0 or positive"),
    ("interact features-per-eig 0", [*INTERACT, "--features-per-eig", "0"],
     "--features-per-eig must be a positive integer"),
    ("rank-features k 0", [*RF, "--k", "0"], "--k must be positive"),
    ("rank-features limit negative", [*RF, "--limit", "-3"], "--limit must be positive"),
    ("rank-features threads 0", [*RF, "--threads", "0"], "--threads must be positive"),
    ("rank-features threads huge", [*RF, "--threads", "100000"], "at most 1024"),
]


@pytest.mark.parametrize("name,args,message", OPTION_ERRORS, ids=[c[0] for c in OPTION_ERRORS])
def test_option_out_of_range_is_one_line(cli, root, name, args, message):
    code, out, err = _run(cli, root, args)
    assert code == 1, (out, err)
    assert out == ""
    _one_error_line(err, message)


USAGE_ERRORS = [  # exit 2: does not parse as the option's type
    ("int option given nan", [*EIG, "--top", "nan"], "--top"),
    ("int option given a float", [*EIG, "--top", "2.5"], "--top"),
    ("sweep empty item", ["truncate", "{r}/img", "--sweep", "0,,2", "--data", "{r}/good.npz"],
     "--sweep"),
    ("sweep not integers", ["truncate", "{r}/img", "--sweep", "1.5", "--data", "{r}/good.npz"],
     "--sweep"),
    ("sweep words", ["truncate", "{r}/img", "--sweep", "a,b", "--data", "{r}/good.npz"],
     "--sweep"),
    ("sweep empty", ["truncate", "{r}/img", "--sweep", " , ", "--data", "{r}/good.npz"],
     "--sweep"),
    ("adversarial sweep word", [*ADV, "--sweep", "0.1,lots"], "--sweep"),
    ("adversarial pixel sweep float", [*ADV, "--variant", "top-pixels", "--sweep", "2.5"],
     "--sweep"),
    ("plot shape words", ["plot", "{r}/img", "--class", "1", "--shape", "4by4", "-o",
                          "{r}/never.png"], "--shape"),
    ("strength not a number", [*ADV, "--strength", "strong"], "--strength"),
]


@pytest.mark.parametrize("name,args,option", USAGE_ERRORS, ids=[c[0] for c in USAGE_ERRORS])
def test_unparseable_option_is_usage_error(cli, root, name, args, option):
    code, out, err = _run(cli, root, args)
    assert code == 2, (out, err)
    assert option in err and out == ""


# --------------------------------------------------------------------------- data files

DATA_ERRORS = [
    ("truncated npz", "trunc.npz", "truncated, or not a zip"),
    ("corrupt deflate stream", "corrupt.npz", "corrupt"),
    ("bad crc", "crc.npz", "corrupt"),
    ("text as npz", "text.npz", "not a readable .npz"),
    ("npy given as data", "plain.npy", "not a readable .npz"),
    ("NaN inputs", "nan-x.npz", "array 'x' has 7 NaN or infinite entries"),
    ("infinite input", "inf-x.npz", "array 'x' has 1 NaN or infinite entry"),
    ("input beyond float32", "big-x.npz", "too large for float32"),
    ("fractional labels", "frac-y.npz", "labels must be integers"),
    ("NaN labels", "nan-y.npz", "1 NaN or infinite labels"),
    ("huge labels", "huge-y.npz", "not class indices"),
    ("string inputs", "str-x.npz", "non-numeric dtype"),
    ("complex inputs", "complex-x.npz", "non-numeric dtype"),
    ("object inputs", "obj-x.npz", "Python objects"),
    ("scalar inputs", "scalar-x.npz", "holds no examples"),
    ("no examples", "empty-x.npz", "holds no examples"),
    ("2-D labels", "y2d.npz", "labels of shape (20, 2)"),
    ("label count mismatch", "short-y.npz", "40 inputs but labels of shape (30,)"),
    ("missing y", "no-y.npz", "needs arrays 'x' and 'y'"),
    ("npy header claims 10^18 entries", "huge-header.npz", "header says shape"),
    ("negative shape in header", "neg-header.npz", "array 'x'"),
    ("FIFO as data file", "fifo.npz", "not a regular file"),
    ("missing data file", "none.npz", "no such data file"),
    ("truncated idx.gz", "idx-trunc-gz", "truncated or corrupt"),
    ("idx dims overflow int64", "idx-huge", "truncated or corrupt"),
    ("idx.gz dims overflow int64", "idx-huge-gz", "truncated"),
    ("idx cut short", "idx-short", "truncated or corrupt"),
    ("idx.gz with extra bytes", "idx-long", "more data than its header"),
    ("idx wrong magic", "idx-magic", "not an unsigned-byte idx file"),
    ("idx header cut", "idx-header-cut", "truncated (in its header)"),
    ("no idx files", "idx-none", "no idx3 images"),
    ("FIFO in idx folder", "idx-fifo", "not a regular file"),
]


@pytest.mark.parametrize("name,data,message", DATA_ERRORS, ids=[c[0] for c in DATA_ERRORS])
def test_bad_data_file_is_one_line(cli, root, name, data, message):
    code, out, err = _run(cli, root, ["eval", "{r}/img", "--data", f"{{r}}/{data}"])
    assert code == 1, (out, err)
    assert out == ""
    _one_error_line(err, message)


@pytest.mark.parametrize("data", ["good.npz", "goodc.npz", "idx-ok", "float-y.npz"])
def test_good_data_reads(cli, root, data):
    """The same checks accept good files: plain and compressed npz, idx.gz, whole float labels."""
    code, out, err = _run(cli, root, ["eval", "{r}/img", "--data", f"{{r}}/{data}", "--json"])
    assert code == 0, err
    assert json.loads(out)["n"] == 40


@pytest.mark.parametrize("args", [
    ["truncate", "{r}/img", "--sweep", "0,1", "--data", "{r}/nan-x.npz"],
    [*ADV[:4], "--data", "{r}/nan-x.npz"],
    ["explain", "{r}/img", "-i", "{r}/nan-x.npz:0"],
    ["adversarial", "{r}/img", "--target", "1", "--input", "{r}/frac-y.npz:0"],
], ids=["truncate sweep", "adversarial data", "explain input", "adversarial input"])
def test_every_data_reader_checks(cli, root, args):
    code, out, err = _run(cli, root, args)
    assert code == 1 and out == ""
    _one_error_line(err, "nan-x.npz" if "nan-x" in " ".join(args) else "labels must be integers")


# --------------------------------------------------------------------------- other inputs

N784 = ",".join(["0.5"] * 784)
N16 = ",".join(["0.25"] * 16)

INPUT_ERRORS = [
    ("direction huge header", ["eig", "{r}/img", "--direction", "{r}/huge.npy"],
     "header says shape"),
    ("direction truncated", ["eig", "{r}/img", "--direction", "{r}/short.npy"],
     "the file holds 8 bytes"),
    ("direction too long", ["eig", "{r}/img", "--direction", "{r}/long.npy"],
     "the file holds 24 bytes"),
    ("direction garbage header", ["eig", "{r}/img", "--direction", "{r}/garbage.npy"],
     "not a readable .npy array"),
    ("direction text", ["eig", "{r}/img", "--direction", "{r}/text.npy"],
     "not a readable .npy array"),
    ("direction pickled objects", ["eig", "{r}/img", "--direction", "{r}/obj.npy"],
     "Python objects"),
    ("direction FIFO", ["eig", "{r}/img", "--direction", "{r}/fifo.npy"],
     "not a regular file"),
    ("direction directory", ["eig", "{r}/img", "--direction", "{r}/idx-ok"],
     "is a directory"),
    ("direction NaN", ["eig", "{r}/img", "--direction", "{r}/u-nan.npy"], "NaN or infinity"),
    ("explain MNIST-sized vector", ["explain", "{r}/img", "-i", N784],
     "input has 784 values, the model takes 16"),
    ("explain NaN in vector", ["explain", "{r}/img", "-i", "nan," + N16[5:]],
     "NaN or infinity"),
    ("explain vector beyond float32", ["explain", "{r}/img", "-i", "1e300," + N16[5:]],
     "NaN or infinity"),
    ("explain long non-path", ["explain", "{r}/img", "-i", "q" * 400], "no such file"),
    ("explain FIFO", ["explain", "{r}/img", "-i", "{r}/fifo.npy"], "not a regular file"),
    ("explain FIFO data", ["explain", "{r}/img", "-i", "{r}/fifo.npz:0"],
     "not a regular file"),
    ("explain directory", ["explain", "{r}/img", "-i", "{r}/idx-none"], "is a directory"),
    ("explain huge npy", ["explain", "{r}/img", "-i", "{r}/huge.npy"], "header says shape"),
    ("explain NaN npy", ["explain", "{r}/img", "-i", "{r}/x16-nan.npy"], "NaN or infinity"),
    ("explain garbage image", ["explain", "{r}/img", "-i", "{r}/garbage.png"],
     "cannot read it as an image"),
    ("explain wrong image size", ["explain", "{r}/img", "-i", "{r}/wide.png"],
     "image is 9x3 pixels, the model takes 4x4"),
    ("explain control characters", ["explain", "{r}/img", "-i", "no\x1b[2Jsuch"],
     "no\\x1b[2Jsuch"),
    ("adversarial FIFO png", [*ADV, "--input", "{r}/fifo.png"], "not a regular file"),
    ("adversarial garbage png", [*ADV, "--input", "{r}/garbage.png"], "not a readable PNG"),
    ("adversarial wrong png size", [*ADV, "--input", "{r}/wide.png"],
     "9x3 = 27 pixels, the model takes 16"),
    ("adversarial FIFO data", [*ADV, "--input", "{r}/fifo.npz:0"], "not a regular file"),
    ("adversarial huge index", [*ADV, "--input", "{r}/good.npz:" + "9" * 5000],
     "must be an integer"),
    ("sae cfg nested too deep", ["eig", "{r}/lm", "--sae", "{r}/sae-deep", "--feature", "0"],
     "nested too deeply"),
    ("sae cfg not an object", ["eig", "{r}/lm", "--sae", "{r}/sae-list", "--feature", "0"],
     "expected a JSON object"),
    ("sae cfg NaN", ["eig", "{r}/lm", "--sae", "{r}/sae-nan", "--feature", "0"],
     "not valid JSON"),
    ("sae cfg broken", ["eig", "{r}/lm", "--sae", "{r}/sae-badjson", "--feature", "0"],
     "not valid JSON"),
    ("sae cfg FIFO", ["eig", "{r}/lm", "--sae", "{r}/sae-fifo", "--feature", "0"],
     "not a regular file"),
    ("tokenizer garbage", ["eig", "{r}/tok-garbage", "--token-str", "a"],
     "not a tokenizer.json"),
    ("tokenizer nested too deep", ["eig", "{r}/tok-deep", "--token-str", "a"],
     "not a tokenizer.json"),
    ("tokenizer wrong types", ["eig", "{r}/tok-wrong", "--token-str", "a"],
     "not a tokenizer.json"),
]


@pytest.mark.parametrize("name,args,message", INPUT_ERRORS, ids=[c[0] for c in INPUT_ERRORS])
def test_bad_input_is_one_line(cli, root, name, args, message):
    code, out, err = _run(cli, root, args)
    assert code == 1, (out, err)
    assert out == ""
    _one_error_line(err, message)


def test_explain_reads_a_long_vector_as_numbers(cli, root, tmp_path):
    """A comma-separated vector is numbers, however long: never tried as a file name."""
    write_image(tmp_path / "wide", d=6, n_in=784, n_cls=3, seed=9)
    code, out, err = cli("explain", tmp_path / "wide", "-i", N784, "--json")
    assert code == 0, err
    assert json.loads(out)["input"]["kind"] == "values"
    code, out, err = cli("explain", root / "img", "-i", N16, "--json")
    assert code == 0, err


def test_sae_cfg_values_of_the_wrong_type_are_ignored(cli, root):
    """cfg.json is kept for reference; wrongly typed values in it change nothing."""
    code, out, err = _run(cli, root, ["eig", "{r}/lm", "--layer", "1", "--sae",
                                      "{r}/sae-types", "--feature", "2", "--json"])
    assert code == 0, err
    assert json.loads(out)["direction"]["feature"] == 2


def test_names_from_files_do_not_reach_the_terminal_raw(cli, tmp_path):
    """Class names with escape sequences, rich markup and emoji codes print as themselves."""
    write_image(tmp_path / "m", d=6, n_in=N_IN, n_cls=N_CLS, seed=3)
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["classes"] = ["[/bold]", "\x1b[31mred", ":smile:", "\u202eevil"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", x=rng.random((12, N_IN)).astype(np.float32),
             y=np.arange(12) % N_CLS)
    code, out, err = cli("eval", tmp_path / "m", "--data", tmp_path / "d.npz")
    assert code == 0, err
    assert "[/bold]" in out and ":smile:" in out and "\U0001f604" not in out
    assert "\x1b" not in out and "\u202e" not in out


def test_render_escapes_tables_and_terminal_csv(monkeypatch, capsys):
    from bilin_cli.render import output as render

    report = render.Report("t [b]x[/b]", {"name": "\x1b[2J"}, [("k", "\x1b]0;title\x07")],
                           ["name", "v"], [["\x1b[31mred\u202e", 1.5]],
                           notes=["line one\nline \x1b two"], warnings=["bad \x1b[1m"])
    table = render.to_table(report, color=False)
    assert "\x1b" not in table and "\u202e" not in table and "[b]x[/b]" in table
    assert "line one\n" in table and "line \\x1b two" in table
    # CSV is exact in a file or pipe, escaped when it would reach a terminal
    assert "\x1b[31mred" in render.to_delimited(report, ",")
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    render.emit(report, "csv")
    out, err = capsys.readouterr()
    assert "\x1b" not in out and "\\x1b[31mred\\u202e" in out
    assert err == "warning: bad \\x1b[1m\n"
    # JSON stays exact: json.dumps escapes control characters itself
    assert json.loads(render.to_json(report))["name"] == "\x1b[2J"


HUGE = "9" * 30


@pytest.mark.parametrize("args", [
    ["eig", "{r}/img", "--class", "1", "--top", HUGE, "--json"],
    ["hosvd", "{r}/img", "--components", HUGE, "--top", HUGE, "--json"],
    ["explain", "{r}/img", "-i", "{r}/good.npz:0", "--classes", HUGE, "--top", HUGE, "--json"],
    ["truncate", "{r}/img", "--sweep", f"0,{HUGE}", "--data", "{r}/good.npz", "--json"],
], ids=["eig top", "hosvd", "explain", "truncate sweep"])
def test_counts_beyond_what_exists_mean_all(cli, root, args):
    """A count larger than int64 is 'all of them', not an overflow."""
    code, out, err = _run(cli, root, args)
    assert code == 0, err
    json.loads(out)


def test_plot_huge_n_draws_what_exists(cli, tmp_path, root):
    code, _, err = cli("plot", root / "img", "--class", "1", "--n", HUGE, "--curve", HUGE,
                       "-o", tmp_path / "p.png")
    assert code == 0, err
    assert (tmp_path / "p.png").stat().st_size > 0

"""Data-free network similarity: bilin's closed form against Monte Carlo of equal accuracy.

``bilin.network_similarity`` / ``bilin compare --network`` give the cosine
``E[f_a(x) . f_b(x)] / sqrt(E|f_a|^2 E|f_b|^2)``, ``x ~ N(0, I)``, in closed form. The
reference is a plain numpy Monte Carlo forward of each network from its raw safetensors
weights (float64, batches of ``--batch``), measured in the same run:

* a pilot of ``--pilot`` samples gives the per-sample time and the per-sample variance of
  the cosine estimator (delta method on the three means ``E[f_a.f_b]``, ``E|f_a|^2``,
  ``E|f_b|^2``); ``N = variance / se^2`` samples reach a standard error ``--se`` (1e-4) and
  the Monte Carlo time is ``N`` x the per-sample time: *extrapolated*, not run;
* the pilot's cosine is checked against bilin's within its standard errors (``z``).

Cases:

1. ``sample_checkpoints/mnist`` vs ``sample_checkpoints/mnist-bias`` (784-512-10, one
   bilinear layer: bilin is exact): in process on loaded models (best of ``--repeat``) and
   as one whole ``bilin compare --network A B`` process.
2. Two random fully bilinear transformers (tests/bilinear_transformer_ref.py, vocab 4096,
   d=256, 2 layers, h=1024), different seeds; and (2b) the first against a perturbed copy
   of itself (relative noise 0.3 on its MLP and unembedding weights), where the cosine is
   far from 0. bilin covers the MLPs with their residual path and the unembedding
   (attention left out) and uses the Gaussian closure for the second layer on (not exact:
   the z column then measures that approximation, not only Monte Carlo noise). The
   reference computes the same function: ``x ~ N(0, I_d)``; per block
   ``x = x + w_proj((w_m (s x)) * (w_n (s x)))``; output ``unembed(s_final x)``.
3. A matrix of ``--checkpoints`` (100; 10 with ``--quick``) perturbed copies of
   sample_checkpoints/mnist (Gaussian noise of relative Frobenius size 0.05..0.5 on
   ``blocks.0.weight`` and ``head.weight``), whole ``bilin compare --network DIR/ckpt*/ -o
   sim.csv`` process. The Monte Carlo reference shares its samples across all networks
   (one forward per network per sample, one dot per pair); its variance is piloted on
   ``--matrix-pilot-nets`` networks spread over the noise range (all their pairs), and N is
   the largest any of those pairs needs.

    python benchmarks/bench_network_similarity.py [--quick] [--checkpoints 100] [--se 1e-4]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

import bilin_cli as bilin

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT / "sample_checkpoints" / "mnist"
MNIST_BIAS = ROOT / "sample_checkpoints" / "mnist-bias"
_SCRIPT = Path(sys.executable).with_name("bilin")
BILIN = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "bilin_cli"]


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def run_bilin(args: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(BILIN + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          cwd=ROOT)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"bilin {' '.join(args[:3])} ... failed: {proc.stderr.decode()[-800:]}")
    return took


# --------------------------------------------------------------- naive Monte Carlo forwards


def weights(folder: Path) -> dict[str, np.ndarray]:
    tensors = load_file(str(folder / "model.safetensors"))
    return {k: v.astype(np.float64) for k, v in tensors.items()}


def classifier_forward(folder: Path):
    """``logits = head ((W E x + b_w) * (V E x + b_v)) + b_head``, blocks.0.weight = [W; V]."""
    p = weights(folder)
    E, WV, H = p["embed.weight"], p["blocks.0.weight"], p["head.weight"]
    h = WV.shape[0] // 2
    W, V = WV[:h], WV[h:]
    b = p.get("blocks.0.bias")
    b_w, b_v = (None, None) if b is None else (b[:h], b[h:])
    b_head = p.get("head.bias")

    def f(x: np.ndarray) -> np.ndarray:  # x (n, 784)
        e = x @ E.T
        left, right = e @ W.T, e @ V.T
        if b_w is not None:
            left += b_w
            right += b_v
        out = (left * right) @ H.T
        return out + b_head if b_head is not None else out

    return f, E.shape[1]


def transformer_forward(folder: Path):
    """MLPs with their residual path and the unembedding (attention left out), linear
    scales: ``x = x + w_proj((w_m (s x)) * (w_n (s x)))`` per block, ``unembed(s_f x)``."""
    p = weights(folder)
    n_layers = json.loads((folder / "config.json").read_text())["n_layers"]
    one = np.float64(1.0)
    blocks = [(p.get(f"blocks.{i}.norm_mlp.scale", one), p[f"blocks.{i}.mlp.w_m.weight"],
               p[f"blocks.{i}.mlp.w_n.weight"], p[f"blocks.{i}.mlp.w_proj.weight"])
              for i in range(n_layers)]
    s_f, U = p.get("final_norm.scale", one), p["unembed.weight"]

    def f(x: np.ndarray) -> np.ndarray:  # x (n, d)
        for s, Wm, Wn, Wp in blocks:
            m = x * s
            x = x + ((m @ Wm.T) * (m @ Wn.T)) @ Wp.T
        return (x * s_f) @ U.T

    return f, U.shape[1]


def mc_pilot(forwards: list, n_in: int, pairs: list[tuple[int, int]], n: int, batch: int,
             seed: int = 0) -> dict:
    """Per-sample ``u = f_a.f_b`` for each pair and ``|f_a|^2`` for each network over ``n``
    Gaussian samples; the cosine per pair, its per-sample delta-method variance and the
    seconds spent sampling, in forwards and in the per-pair dots."""
    rng = np.random.default_rng(seed)
    nets = sorted({i for pr in pairs for i in pr})
    uu = np.empty((n, len(pairs)))
    sq = {i: np.empty(n) for i in nets}
    t_rng = t_fwd = t_dot = 0.0
    for lo in range(0, n, batch):
        m = min(batch, n - lo)
        t0 = time.perf_counter()
        x = rng.standard_normal((m, n_in))
        t1 = time.perf_counter()
        outs = {i: forwards[i](x) for i in nets}
        t2 = time.perf_counter()
        for i in nets:
            sq[i][lo:lo + m] = np.einsum("ij,ij->i", outs[i], outs[i])
        for k, (a, b) in enumerate(pairs):
            uu[lo:lo + m, k] = np.einsum("ij,ij->i", outs[a], outs[b])
        t3 = time.perf_counter()
        t_rng, t_fwd, t_dot = t_rng + t1 - t0, t_fwd + t2 - t1, t_dot + t3 - t2
    cos, var = np.empty(len(pairs)), np.empty(len(pairs))
    for k, (a, b) in enumerate(pairs):
        Y = np.stack([uu[:, k], sq[a], sq[b]])
        U, Va, Vb = Y.mean(axis=1)
        g = U / np.sqrt(Va * Vb)
        grad = np.array([1.0 / np.sqrt(Va * Vb), -g / (2 * Va), -g / (2 * Vb)])
        cos[k], var[k] = g, float(grad @ np.cov(Y) @ grad)
    return {"cos": cos, "var": var, "n": n, "t_rng": t_rng, "t_fwd": t_fwd, "t_dot": t_dot,
            "nets": len(nets), "pairs": len(pairs)}


def pair_row(name: str, exact_s: float, exact_cos: float, is_exact: bool, pilot: dict,
             se: float) -> dict:
    per_sample = (pilot["t_rng"] + pilot["t_fwd"] + pilot["t_dot"]) / pilot["n"]
    N = max(int(np.ceil(pilot["var"][0] / se**2)), 1)
    mc_se = float(np.sqrt(pilot["var"][0] / pilot["n"]))
    return {"case": name, "exact_s": exact_s, "is_exact": is_exact, "N": N,
            "per_sample": per_sample, "mc_s": N * per_sample, "cos": exact_cos,
            "mc_cos": float(pilot["cos"][0]), "mc_se": mc_se,
            "z": (float(pilot["cos"][0]) - exact_cos) / mc_se if mc_se > 0 else float("nan")}


# ------------------------------------------------------------------------------- the cases


def case_mnist_pair(args) -> list[dict]:
    models = [bilin.load(str(MNIST)), bilin.load(str(MNIST_BIAS))]
    t_in, s = best(lambda: bilin.network_similarity(models), args.repeat)
    t_cli = run_bilin(["compare", "--network", str(MNIST), str(MNIST_BIAS)])
    fa, n_in = classifier_forward(MNIST)
    fb, _ = classifier_forward(MNIST_BIAS)
    pilot = mc_pilot([fa, fb], n_in, [(0, 1)], args.pilot, args.batch, seed=1)
    cos = float(s.cosine[0, 1])
    return [pair_row("1 mnist vs mnist-bias (in process)", t_in, cos, bool(s.exact), pilot,
                     args.se),
            pair_row("1 mnist vs mnist-bias (whole process)", t_cli, cos,
                     bool(s.exact), pilot, args.se)]


def perturb_transformer(src: Path, dst: Path, rel: float, seed: int) -> None:
    """``src`` with Gaussian noise of relative Frobenius size ``rel`` on every MLP weight
    and the unembedding (norm scales, embedding and attention untouched)."""
    rng = np.random.default_rng(seed)
    t = load_file(str(src / "model.safetensors"))
    for k, v in t.items():
        if ".mlp." in k or k == "unembed.weight":
            noise = rng.standard_normal(v.shape) * (rel * np.linalg.norm(v) / np.sqrt(v.size))
            t[k] = (v + noise).astype(v.dtype)
    dst.mkdir(parents=True)
    save_file(t, str(dst / "model.safetensors"))
    shutil.copy(src / "config.json", dst / "config.json")


def case_transformers(args, tmp: Path) -> list[dict]:
    sys.path.insert(0, str(ROOT / "tests"))
    from bilinear_transformer_ref import write_checkpoint

    a, b, c = tmp / "lm_a", tmp / "lm_b", tmp / "lm_a_perturbed"
    shape = dict(vocab=4096, d=256, n_layers=2, n_heads=4, d_head=64, h=1024)
    write_checkpoint(a, seed=11, **shape)
    write_checkpoint(b, seed=12, **shape)
    perturb_transformer(a, c, 0.3, seed=13)
    rows = []
    for name, other in (("2 transformers d=256 L=2, seeds 11/12", b),
                        ("2b transformer vs perturbed copy (0.3)", c)):
        models = [bilin.load(str(a)), bilin.load(str(other))]
        t_in, s = best(lambda m=models: bilin.network_similarity(m), args.repeat)
        fa, n_in = transformer_forward(a)
        fb, _ = transformer_forward(other)
        pilot = mc_pilot([fa, fb], n_in, [(0, 1)], args.pilot, args.batch // 2, seed=2)
        rows.append(pair_row(name, t_in, float(s.cosine[0, 1]),
                             bool(s.exact), pilot, args.se))
    return rows


def case_matrix(args, tmp: Path) -> dict:
    n = args.checkpoints
    src = load_file(str(MNIST / "model.safetensors"))
    rels = np.linspace(0.05, 0.5, n)
    t0 = time.perf_counter()
    folders = []
    for i, rel in enumerate(rels):
        rng = np.random.default_rng(1000 + i)
        t = dict(src)
        for k in ("blocks.0.weight", "head.weight"):
            v = src[k]
            noise = rng.standard_normal(v.shape) * (rel * np.linalg.norm(v) / np.sqrt(v.size))
            t[k] = (v + noise).astype(v.dtype)
        folder = tmp / f"ckpt{i:03d}"
        folder.mkdir()
        save_file(t, str(folder / "model.safetensors"))
        shutil.copy(MNIST / "config.json", folder / "config.json")
        folders.append(folder)
    t_write = time.perf_counter() - t0
    k = min(args.matrix_pilot_nets, n)
    pick = sorted({int(round(j)) for j in np.linspace(0, n - 1, k)})
    fwd = [classifier_forward(folders[i])[0] for i in pick]
    pairs = list(combinations(range(len(pick)), 2))

    def per_sample(p: dict) -> float:
        """Seconds per sample of the whole matrix's Monte Carlo: every network's forward,
        every pair's dot (and every network's |f|^2), the samples shared."""
        return (p["t_rng"] + p["t_fwd"] * n / len(pick)
                + p["t_dot"] * (n * (n + 1) // 2) / (len(pairs) + len(pick))) / p["n"]

    # The machine's speed can drift over a long run: the Monte Carlo is timed both before
    # and after the long bilin process, and the ratio uses the mean.
    before = per_sample(mc_pilot(fwd, 784, pairs, 2 * args.batch, args.batch, seed=4))
    out = tmp / "sim.csv"
    t_cli = run_bilin(["compare", "--network", *map(str, folders), "-o", str(out)])
    with open(out) as fh:
        rows = list(csv.reader(fh))
    names = rows[0][1:]
    cos = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    assert names == [f.name for f in folders], "sim.csv rows are not in checkpoint order"

    pilot = mc_pilot(fwd, 784, pairs, args.pilot, args.batch, seed=3)
    after = per_sample(pilot)
    N = max(int(np.ceil(pilot["var"].max() / args.se**2)), 1)
    ref = np.array([cos[pick[a], pick[b]] for a, b in pairs])
    se = np.sqrt(pilot["var"] / pilot["n"])
    z = (pilot["cos"] - ref) / se
    off = cos[~np.eye(n, dtype=bool)]
    return {"case": f"3 {n}-ckpt mnist matrix, {n * (n + 1) // 2} pairs (whole process)",
            "exact_s": t_cli, "is_exact": True, "N": N, "per_sample": 0.5 * (before + after),
            "before": before, "after": after, "mc_s": N * 0.5 * (before + after),
            "cos_range": (float(off.min()), float(off.max())),
            "z_max": float(np.abs(z).max()), "z_pairs": len(pairs), "pick": len(pick),
            "t_write": t_write, "worst": float(ref[int(np.argmax(pilot["var"]))])}


# ---------------------------------------------------------------------------------- output


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="10 checkpoints, 8192 pilot samples, best of 1: a smoke run")
    ap.add_argument("--checkpoints", type=int, default=None, help="case 3 size (default 100)")
    ap.add_argument("--pilot", type=int, default=None, help="Monte Carlo pilot samples (20000)")
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--se", type=float, default=1e-4,
                    help="standard error on the cosine the Monte Carlo must reach")
    ap.add_argument("--repeat", type=int, default=None, help="best of N in process (3)")
    ap.add_argument("--matrix-pilot-nets", type=int, default=10)
    ap.add_argument("--skip", default="", help="comma list of cases to skip: 1,2,3")
    args = ap.parse_args()
    args.checkpoints = args.checkpoints or (10 if args.quick else 100)
    args.pilot = args.pilot or (8192 if args.quick else 20000)
    args.repeat = args.repeat or (1 if args.quick else 3)
    skip = set(args.skip.split(","))
    start = time.perf_counter()
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, python "
          f"{platform.python_version()}, numpy {np.__version__}")
    print(f"Monte Carlo: float64 numpy forwards from the raw safetensors, batches of "
          f"{args.batch}; pilot {args.pilot} samples; N = samples for a standard error "
          f"{args.se:g} on the cosine; MC time = N x per-sample time (EXTRAPOLATED, not run)")
    print("bilin: closed form (float64); `exact` = bilin's own flag (no: Gaussian closure); "
          "in process = on loaded models, best of N; whole process = one `bilin compare "
          "--network` run\n", flush=True)

    rows, matrix = [], None
    with tempfile.TemporaryDirectory() as tmp:
        if "1" not in skip:
            print("case 1: mnist pair ...", flush=True)
            rows += case_mnist_pair(args)
        if "2" not in skip:
            print("case 2: transformer pairs ...", flush=True)
            rows += case_transformers(args, Path(tmp))
        if "3" not in skip:
            print(f"case 3: {args.checkpoints}-checkpoint matrix (whole `bilin compare "
                  f"--network` process, then the Monte Carlo pilot) ...", flush=True)
            mdir = Path(tmp) / "matrix"
            mdir.mkdir()
            matrix = case_matrix(args, mdir)

    w = 52
    print(f"\n{'case':<{w}s} {'exact':>5s} {'bilin s':>9s} {'MC N':>11s} {'MC s (extr.)':>13s} "
          f"{'MC/bilin':>9s}  values")
    for r in rows:
        print(f"{r['case']:<{w}s} {'yes' if r['is_exact'] else 'no':>5s} {r['exact_s']:9.3f} "
              f"{r['N']:11.3g} {r['mc_s']:13.3g} {r['mc_s'] / r['exact_s']:9.3g}  "
              f"bilin cos {r['cos']:.6f}; MC pilot {r['mc_cos']:.6f} +- {r['mc_se']:.1e} "
              f"(z = {r['z']:+.1f})")
    if matrix:
        m = matrix
        print(f"{m['case']:<{w}s} {'yes':>5s} {m['exact_s']:9.3f} {m['N']:11.3g} "
              f"{m['mc_s']:13.3g} {m['mc_s'] / m['exact_s']:9.3g}  "
              f"off-diagonal cos {m['cos_range'][0]:.4f}..{m['cos_range'][1]:.4f}; "
              f"max |z| {m['z_max']:.1f} over {m['z_pairs']} piloted pairs")
    print()
    for r in rows:
        print(f"  {r['case']}: MC per sample {r['per_sample'] * 1e6:.2f} us (both forwards "
              f"and dots); per-sample variance of the cosine {r['N'] * args.se**2:.3g}")
    if matrix:
        m = matrix
        print(f"  matrix: {m['t_write']:.1f} s to write the checkpoints (not timed in either); "
              f"MC variance piloted on {m['pick']} of the networks spread over the noise "
              f"range ({m['z_pairs']} pairs; N is the largest they need, at a pair of cosine "
              f"{m['worst']:.4f}); MC per sample {m['per_sample'] * 1e3:.2f} ms = "
              f"{args.checkpoints} forwards + every pair's dot, sharing the samples (mean of "
              f"{m['before'] * 1e3:.2f} ms timed before the bilin process and "
              f"{m['after'] * 1e3:.2f} ms after)")
    if any(not r["is_exact"] for r in rows):
        print("  transformers: bilin is not exact there (Gaussian closure from layer 2 on): "
              "|z| measures the closure error with the Monte Carlo noise, and MC of 'equal "
              "accuracy' means equal standard error, not equal bias")
    print(f"\ntotal benchmark time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()

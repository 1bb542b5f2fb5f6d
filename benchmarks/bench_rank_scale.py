"""Benchmark: `rank-features --top N` at the paper's scale, the certified route.

A synthetic bilinear transformer layer (d=1024, h=4096, P: (d, h)) with 8192 output-SAE
encoder rows; some output directions are planted low-rank (P^T u reads a few hidden units;
W, V and every other feature stay random): by default 300 of them, reading 3 to 5 units,
so hundreds of shares lie close to each other around the cut. bilin's certified route
(Gram-identity sum lambda^2 for every feature, batched Lanczos with rigorous bounds on the
measure, dense float64 for every reported feature) is timed on all features, in process or
(--cli) as a whole `bilin` process on files in the paper's formats. In the same run, on a
random subset extrapolated to all features: the dense per-feature route (`rank_features`:
Q built and eigvalsh'd for every feature, float32 as the CLI's dense route) and the paper's
approach (torch einsum for each Q, batched torch eigvalsh). Agreement: the reported rows
against an independent float64 einsum + eigvalsh, and features not reported (the planted
ones and a random sample) re-checked densely against the cut.

    python benchmarks/bench_rank_scale.py [--quick] [--cli] [--top 10]
        [--measure top_k_share|effective_rank|sq_top_k_share] [--planted 300] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from bilin_cli.analyses.features import rank_features
from bilin_cli.analyses.lowrank_search import rank_abs_share, rank_sq_share
from bilin_cli.model.bilinear import BilinearLayer


def synthetic(d: int, h: int, f: int, planted: int, seed: int = 0, units=(1, 3),
              noise: float = 0.02):
    """Random W, V, P; ``planted`` output directions ``u_i`` get a low-rank ``Q`` by making
    ``P^T u_i`` read only ``units`` hidden units (P is changed on the span of the ``u_i`` only,
    W and V are untouched, so the other features stay as random as before). SAE encoder
    rows: random unit vectors, and ``u_i`` plus a little noise for the planted features."""
    r = np.random.default_rng(seed)
    W = (r.standard_normal((h, d)) / np.sqrt(d)).astype(np.float32)
    V = (r.standard_normal((h, d)) / np.sqrt(d)).astype(np.float32)
    P = r.standard_normal((d, h)) / np.sqrt(h)
    U, _ = np.linalg.qr(r.standard_normal((d, planted)))  # (d, planted) orthonormal
    Cs = np.zeros((planted, h))
    for i in range(planted):
        reads = r.choice(h, units[0] + i % (units[1] - units[0] + 1), replace=False)
        Cs[i, reads] = r.standard_normal(reads.size)
        Cs[i] *= 1.0 / np.linalg.norm(Cs[i])
    P = P - U @ (U.T @ P) + U @ Cs  # P^T u_i = Cs_i
    enc = r.standard_normal((f, d))
    enc /= np.linalg.norm(enc, axis=1, keepdims=True)
    where = r.choice(f, planted, replace=False)
    enc[where] = U.T + noise * r.standard_normal((planted, d)) / np.sqrt(d)
    enc /= np.linalg.norm(enc, axis=1, keepdims=True)
    return BilinearLayer(W, V, P.astype(np.float32)), enc.astype(np.float32), np.sort(where)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_checkpoint(folder: Path, layer: BilinearLayer, enc: np.ndarray) -> tuple[Path, Path]:
    """The layer as a one-layer bilinear transformer in the paper's keys, and the encoder as
    an SAE in the paper's format, so the CLI can be timed as a whole process."""
    from safetensors.numpy import save_file

    h, d = layer.W.shape
    r = np.random.default_rng(3)
    model, sae = folder / "model", folder / "sae"
    model.mkdir(parents=True, exist_ok=True)
    sae.mkdir(parents=True, exist_ok=True)
    save_file({"transformer.wte.weight": r.standard_normal((64, d)).astype(np.float32),
               "lm_head.weight": r.standard_normal((64, d)).astype(np.float32),
               "transformer.h.0.mlp.w.weight": np.concatenate([layer.W, layer.V]),
               "transformer.h.0.mlp.p.weight": layer.P}, str(model / "model.safetensors"))
    (model / "config.json").write_text(json.dumps({"n_layer": 1, "d_model": d}))
    f = enc.shape[0]
    save_file({"w_enc.weight": enc, "w_enc.bias": np.zeros(f, np.float32),
               "w_dec.weight": np.ascontiguousarray(enc.T), "b_dec": np.zeros(d, np.float32)},
              str(sae / "model.safetensors"))
    (sae / "config.json").write_text(json.dumps({"d_model": d, "n_features": f, "k": 32}))
    return model, sae


def reference_share(layer: BilinearLayer, e: np.ndarray, k: int,
                    measure: str = "sq_top_k_share") -> float:
    """Independent dense reference: Q in float64 from the factors, eigvalsh, then the measure
    (``effective_rank`` negated, so larger is always more low-rank)."""
    W, V = layer.W.astype(np.float64), layer.V.astype(np.float64)
    c = layer.P.astype(np.float64).T @ e.astype(np.float64)
    A = W.T @ (c[:, None] * V)  # sum_h c_h w_h v_h^T
    lam = np.linalg.eigvalsh(0.5 * (A + A.T))
    if measure == "sq_top_k_share":
        sq = np.sort(lam**2)[::-1]
        return float(sq[:k].sum() / sq.sum())
    a = np.sort(np.abs(lam))[::-1]
    if measure == "top_k_share":
        return float(a[:k].sum() / a.sum())
    return -float(a.sum() ** 2 / (lam**2).sum())


def papers_approach(layer: BilinearLayer, enc: np.ndarray, k: int) -> None:
    """The paper's own route, for timing: each Q by torch einsum, batched eigvalsh."""
    import torch

    W, V = torch.from_numpy(layer.W), torch.from_numpy(layer.V)
    C = torch.from_numpy(enc @ layer.P)  # (n, h)
    Q = torch.einsum("hi,nh,hj->nij", W, C, V)
    Q = 0.5 * (Q + Q.transpose(1, 2))
    lam = torch.linalg.eigvalsh(Q).abs()
    top = lam.sort(dim=1, descending=True).values[:, :k].sum(1) / lam.sum(1)
    return top


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--h", type=int, default=4096)
    ap.add_argument("--features", type=int, default=8192)
    ap.add_argument("--planted", type=int, default=300)
    ap.add_argument("--units", default="3,5", help="hidden units a planted feature reads: lo,hi")
    ap.add_argument("--noise", type=float, default=0.002,
                    help="relative noise on a planted feature's encoder row")
    ap.add_argument("--measure", default="top_k_share",
                    choices=("top_k_share", "effective_rank", "sq_top_k_share"))
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--sample", type=int, default=16, help="features timed on the dense route")
    ap.add_argument("--check", type=int, default=32,
                    help="excluded features re-checked densely against the cut")
    ap.add_argument("--quick", action="store_true", help="d=256, h=1024, 2048 features")
    ap.add_argument("--cli", action="store_true",
                    help="time the whole `bilin rank-features` process on files written here")
    ap.add_argument("--device", default=None, help="torch device for the Lanczos products")
    args = ap.parse_args()
    if args.quick:
        args.d, args.h, args.features = 256, 1024, 2048
    units = tuple(int(u) for u in args.units.split(","))
    layer, enc, planted = synthetic(args.d, args.h, args.features, args.planted, units=units,
                                    noise=args.noise)
    key = "effective_rank" if args.measure == "effective_rank" else args.measure
    sign = -1.0 if args.measure == "effective_rank" else 1.0
    base = rss_mb()
    print(f"synthetic layer d={args.d}, h={args.h}, {args.features} features "
          f"({args.planted} planted low-rank), k={args.k}, top {args.top}, measure "
          f"{args.measure}; "
          f"RSS after building it {base:.0f} MB")

    if args.cli:
        with tempfile.TemporaryDirectory() as tmp:
            model, sae = write_checkpoint(Path(tmp), layer, enc)
            cmd = ["bilin", "rank-features", str(model), "--layer", "0", "--sae-out", str(sae),
                   "--k", str(args.k), "--top", str(args.top), "--json",
                   "--measure", args.measure]
            if args.device:
                cmd += ["--device", args.device]
            t0 = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            t_fast = time.perf_counter() - t0
            doc = json.loads(out)
        rows, cert = doc["features"], doc["certificate"]
        peak, base = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 112.0
        what = "whole `bilin rank-features` process"
    else:
        t0 = time.perf_counter()
        if args.measure == "sq_top_k_share":
            res = rank_sq_share(layer, enc, args.k, top=args.top, device=args.device)
        else:
            res = rank_abs_share(layer, enc, args.k, top=args.top, device=args.device,
                                 sort_by=args.measure)
        t_fast = time.perf_counter() - t0
        rows, cert = res.rows, res.certificate
        peak = rss_mb()
        what = "certified route in process"

    r = np.random.default_rng(1)
    sample = np.sort(r.choice(args.features, args.sample, replace=False))
    t0 = time.perf_counter()
    rank_features(layer, enc, args.k, features=sample, unfold_limit=0)
    t_dense = (time.perf_counter() - t0) * args.features / args.sample
    t0 = time.perf_counter()
    papers_approach(layer, enc[sample], args.k)
    t_paper = (time.perf_counter() - t0) * args.features / args.sample

    ref = {row["feature"]: reference_share(layer, enc[row["feature"]], args.k, args.measure)
           for row in rows}
    err = max(abs(sign * row[key] - ref[row["feature"]]) / abs(ref[row["feature"]])
              for row in rows)
    reported = {row["feature"] for row in rows}
    others = [a for a in range(args.features) if a not in reported]
    missed = sorted(set(planted.tolist()) - reported)
    check = r.choice(missed, min(args.check, len(missed)), replace=False).tolist() + \
        r.choice(others, min(args.check, len(others)), replace=False).tolist()
    below = max((reference_share(layer, enc[a], args.k, args.measure) for a in check),
                default=-np.inf)
    print(f"  bilin ({what})  {t_fast:8.1f} s")
    print(f"  dense per-feature route  {t_dense:8.1f} s   (extrapolated from {args.sample} "
          "features, float32 as the CLI)")
    print(f"  paper's approach (torch einsum + batched eigvalsh)  {t_paper:8.1f} s   "
          f"(extrapolated from {args.sample} features)")
    print(f"  ratio  {t_dense / t_fast:8.1f}x the dense route, {t_paper / t_fast:.1f}x the "
          "paper's approach")
    print(f"  certificate: {cert}")
    print(f"  max relative difference of the reported top {args.top} vs an independent float64 "
          f"Q + eigvalsh: {err:.1e}")
    print(f"  {len(check)} features not reported ({min(args.check, len(missed))} planted, "
          f"{min(args.check, len(others))} random) re-checked densely: "
          f"largest {below:.4f} {'<' if below < cert.get('cut', 1) else '>='} cut "
          f"{cert.get('cut', float('nan')):.4f} (effective rank negated)")
    if peak == peak:
        print(f"  peak RSS {peak:.0f} MB ({peak - base:.0f} MB above the layer and encoders, "
              f"{'112 MB of float32 files' if args.cli else 'as built here'})")
    print(f"  best: feature {rows[0]['feature']} {key} {rows[0][key]:.4f}; "
          f"planted {planted.tolist()[:8]}...")


if __name__ == "__main__":
    main()

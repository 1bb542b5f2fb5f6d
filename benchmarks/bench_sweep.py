"""Benchmark: the accuracy-versus-rank sweep (K = 0..30) on the MNIST sample's 10k test set.

bilin: one eigendecomposition per class from the factored form, then one projection
per class whose cumulative sum gives every K at once. Naive reference: materialize
B (o, d, d) with einsum, eigendecompose each B_c, and for every K rebuild the
truncated Q_K = sum lambda v v^T and evaluate x^T Q_K x on all inputs.

    python benchmarks/bench_sweep.py [--ckpt sample_checkpoints/mnist]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bilin_cli.analyses.truncation import accuracy_sweep, class_spectra
from bilin_cli.storage.containers import open_checkpoint
from bilin_cli.storage.data import default_data_path, load_dataset
from bilin_cli.storage.layouts import recognise


def bilin_sweep(model, data, ks):
    doc = accuracy_sweep(model, class_spectra(model), data, ks)
    return {r["k"]: r["accuracy"] for r in doc["sweep"]}


def naive_sweep(model, x, y, ks):
    L = model.layer(0)
    E = model.embed()
    B = np.einsum("ca,ai,aj->cij", L.P, L.W, L.V, optimize=True)  # (o, d, d)
    B = 0.5 * (B + B.transpose(0, 2, 1))
    h = x @ E.T
    eig = [np.linalg.eigh(Bc) for Bc in B]
    out = {}
    for k in ks:
        logits = np.zeros((len(x), B.shape[0]), np.float32)
        for c, (lam, vecs) in enumerate(eig):
            order = np.argsort(-np.abs(lam))[:k]
            Qk = (vecs[:, order] * lam[order]) @ vecs[:, order].T
            logits[:, c] = ((h @ Qk) * h).sum(1)
        out[k] = float(np.mean(logits.argmax(1) == y))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default="sample_checkpoints/mnist")
    args = ap.parse_args()
    ckpt = open_checkpoint(args.ckpt)
    model = recognise(ckpt)
    data = load_dataset(default_data_path(args.ckpt, ckpt.config))
    ks = list(range(31))
    t0 = time.perf_counter()
    fast = bilin_sweep(model, data, ks)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = naive_sweep(model, data.x, data.y, ks)
    t_slow = time.perf_counter() - t0
    worst = max(abs(fast[k] - slow[k]) for k in ks)
    print(f"sweep K=0..30 on {len(data.y)} inputs ({args.ckpt})")
    print(f"  bilin  {t_fast:8.2f} s")
    print(f"  naive  {t_slow:8.2f} s")
    print(f"  ratio  {t_slow / t_fast:8.1f}x faster; max accuracy difference {worst:.2e}")
    print("  K=0,5,10,20,30 accuracy:", " ".join(f"{fast[k]:.4f}" for k in (0, 5, 10, 20, 30)))


if __name__ == "__main__":
    main()

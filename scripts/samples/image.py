"""The image samples ``mnist``, ``fmnist`` and ``mnist-bias``: embed(784->512) ->
bilinear(512->2x512) -> head(512->10), trained with AdamW on noisy inputs."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .common import _torch, env_line, fmt_cmd, log, save_dir, to_np_state
from .data import (
    FMNIST_CLASSES,
    FMNIST_LICENCE,
    MNIST_LICENCE,
    load_fmnist,
    load_mnist,
    write_image_test_split,
)

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

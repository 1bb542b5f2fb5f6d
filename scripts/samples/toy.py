"""The ``toy`` sample: 4 boolean inputs -> AND/XOR of all 6 pairs (12 outputs) through
one bilinear layer, evaluated exhaustively on all 16 input patterns."""
from __future__ import annotations

import time
from itertools import combinations
from pathlib import Path

import numpy as np

from .common import _torch, env_line, fmt_cmd, log, save_dir, to_np_state

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

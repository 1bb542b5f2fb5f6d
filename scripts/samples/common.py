"""Helpers every sample recipe shares: logging, paths, writing checkpoint folders, the
command line recorded in each config, and the warmup-then-cosine learning-rate schedule
(also used by ``scripts/train_bilinear_transformer.py``)."""
from __future__ import annotations

import json
import math
import os
import platform
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "sample_checkpoints"
PY = "python scripts/train_samples.py"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def _torch():
    import torch
    return torch


class DataError(RuntimeError):
    """Missing or unexpected training data (the CLI prints it and exits with status 2)."""


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
# Learning-rate schedule
# --------------------------------------------------------------------------------------
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

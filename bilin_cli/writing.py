"""Writing checkpoints that bilin (and PyTorch users) read back: atomically, never half-done.

``-o NAME.safetensors`` writes one file with the config embedded in the safetensors
metadata (key ``bilin_config``); any other ``-o DIR`` writes a Hugging Face style
directory (``model.safetensors`` + ``config.json``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save

from bilin_cli.atomic import atomic_write, check_writable
from bilin_cli.errors import BilinError


def save_checkpoint(
    path: str | os.PathLike, tensors: dict[str, np.ndarray], config: dict, force: bool = False
) -> Path:
    p = Path(path)
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    if p.suffix == ".safetensors":
        blob = save(tensors, metadata={"bilin_config": json.dumps(config)})
        return atomic_write(p, lambda fh: fh.write(blob), force)
    if p.exists() and not force:
        raise BilinError(f"{p} already exists; pass --force to overwrite it")
    if p.exists() and not p.is_dir():
        raise BilinError(f"{p} is a file; give a directory name or NAME.safetensors")
    check_writable(p, force=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.", dir=p.parent))
    try:
        (tmp / "model.safetensors").write_bytes(save(tensors))
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        if p.exists():
            old = p.with_name(f".{p.name}.old")
            os.replace(p, old)
            os.replace(tmp, p)
            shutil.rmtree(old)
        else:
            os.replace(tmp, p)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return p

"""Where the heavy linear algebra runs: the CPU cores bilin may use, or a torch device.

torch is imported here only when a device is asked for (``--device cuda``):
everything runs on NumPy without it.
"""

from __future__ import annotations

import os
from typing import Any

from bilin_cli.core.errors import BilinError, option


def torch_device(name: str) -> tuple[Any, Any]:
    """``(torch, torch.device(name))``, or a one-line error if it cannot be used here."""
    try:
        import torch
    except ImportError:
        raise BilinError(f"{option('--device', 'device')} {name} needs torch: pip install "
                         f"'bilin[torch]'") from None
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise BilinError(f"{option('--device', 'device')} {name!r}: use cpu, cuda, cuda:N or "
                         f"mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BilinError(f"{option('--device', 'device')} {name}: torch sees no CUDA device on "
                         f"this machine")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise BilinError(f"{option('--device', 'device')} {name}: torch sees no Apple MPS device "
                         f"on this machine")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise BilinError(f"{option('--device', 'device')} {name}: use cpu, cuda, cuda:N or mps")
    return torch, dev


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity mask
        return os.cpu_count() or 1

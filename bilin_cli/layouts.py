"""Recognising checkpoint layouts (DESIGN section 2) and building a BilinearModel.

Each layout is described by a :class:`LayerKeys` per layer (which tensor holds W,
V or the stacked WV, P and biases) plus the embedding and head keys. Recognition
only looks at tensor names and shapes; data is read when a layer is asked for.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bilin_cli.errors import BilinError
from bilin_cli.loading import Checkpoint
from bilin_cli.model import BilinearLayer, BilinearModel, LayerShape

IDENTITY_ACTS = {None, "identity", "linear", "none", "bilinear"}

MAP_HELP = (
    "write a map: --map map.json with "
    '{"layers": [{"w": KEY, "v": KEY} or {"wv": KEY}, optional "p", "w_bias", "v_bias", '
    '"wv_bias", "p_bias"], "embed": KEY, "head": KEY} (a "layers" object whose keys '
    'contain {i} is expanded for i = 0, 1, ...)'
)


@dataclass
class LayerKeys:
    """Where one layer's tensors live. ``wv`` is a stacked (2h, d) matrix: W = [:h]."""

    w: str | None = None
    v: str | None = None
    wv: str | None = None
    p: str | None = None
    w_bias: str | None = None
    v_bias: str | None = None
    wv_bias: str | None = None
    p_bias: str | None = None


def _layer_indices(keys, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    found = sorted({int(m.group(1)) for k in keys if (m := rx.fullmatch(k))})
    if found and found != list(range(len(found))):
        raise BilinError(f"layer indices are not contiguous from 0: found {found}")
    return found


def _present(ckpt: Checkpoint, key: str) -> str | None:
    return key if key in ckpt.tensors else None


def _shape(ckpt: Checkpoint, key: str, ndim: int) -> tuple[int, ...]:
    if key not in ckpt.tensors:
        raise BilinError(f"{ckpt.path}: the map names {key!r}, which is not in the checkpoint")
    shape = ckpt.tensors[key].shape
    if len(shape) != ndim:
        raise BilinError(f"{ckpt.path}: {key!r} has shape {shape}, expected {ndim} dimensions")
    return shape


def _layer_dims(ckpt: Checkpoint, lk: LayerKeys) -> tuple[int, int, int | None]:
    """(d, h, o or None) of a layer from shapes alone, checking they fit together."""
    if lk.wv:
        two_h, d = _shape(ckpt, lk.wv, 2)
        if two_h % 2:
            raise BilinError(f"{ckpt.path}: stacked {lk.wv!r} has an odd number of rows {two_h}")
        h = two_h // 2
    else:
        if not (lk.w and lk.v):
            raise BilinError(f"{ckpt.path}: a layer needs either 'wv' or both 'w' and 'v'")
        h, d = _shape(ckpt, lk.w, 2)
        if _shape(ckpt, lk.v, 2) != (h, d):
            raise BilinError(
                f"{ckpt.path}: {lk.w!r} {(h, d)} and {lk.v!r} "
                f"{ckpt.tensors[lk.v].shape} must have the same shape"
            )
    o = None
    if lk.p:
        o, hp = _shape(ckpt, lk.p, 2)
        if hp != h:
            raise BilinError(f"{ckpt.path}: {lk.p!r} has {hp} columns, the layer has h = {h}")
    return d, h, o


def _make_loader(ckpt: Checkpoint, layers: list[LayerKeys]):
    def load_layer(i: int, dtype: type) -> BilinearLayer:
        lk = layers[i]
        if lk.wv:
            WV = ckpt.get(lk.wv, dtype)
            h = WV.shape[0] // 2
            W, V = WV[:h], WV[h:]
        else:
            W, V = ckpt.get(lk.w, dtype), ckpt.get(lk.v, dtype)
        b_w = b_v = None
        if lk.wv_bias:
            b = ckpt.get(lk.wv_bias, dtype)
            b_w, b_v = b[: W.shape[0]], b[W.shape[0] :]
        if lk.w_bias:
            b_w = ckpt.get(lk.w_bias, dtype)
        if lk.v_bias:
            b_v = ckpt.get(lk.v_bias, dtype)
        # A bias on only one side still makes the layer affine: the other side's is 0.
        if (b_w is None) != (b_v is None):
            b_w = np.zeros(W.shape[0], dtype) if b_w is None else b_w
            b_v = np.zeros(W.shape[0], dtype) if b_v is None else b_v
        P = ckpt.get(lk.p, dtype) if lk.p else None
        b_p = ckpt.get(lk.p_bias, dtype) if lk.p_bias else None
        return BilinearLayer(W, V, P, b_w, b_v, b_p)

    def load_tensor(key: str, dtype: type, rows: slice | None = None) -> np.ndarray:
        return ckpt.get(key, dtype, rows)

    return load_layer, load_tensor


def _build(
    ckpt: Checkpoint,
    layout: str,
    kind: str,
    layers: list[LayerKeys],
    embed: str | None,
    head: str | None,
    residual: bool = False,
) -> BilinearModel:
    config = ckpt.config
    shapes: list[LayerShape] = []
    prev_out = None
    for i, lk in enumerate(layers):
        d, h, o = _layer_dims(ckpt, lk)
        if kind == "classifier" and prev_out is not None and prev_out != d:
            raise BilinError(
                f"{ckpt.path}: layer {i} takes d = {d} inputs but layer {i - 1} gives {prev_out}"
            )
        if residual and kind == "classifier" and h != d:
            raise BilinError(
                f"{ckpt.path}: a residual layer needs h == d; layer {i} has h={h}, d={d}"
            )
        bias = bool(lk.wv_bias or lk.w_bias or lk.v_bias)
        out_space = "residual" if kind == "lm" else "hidden"
        shapes.append(LayerShape(d, h, o if o is not None else h, bias, out_space))
        prev_out = o if o is not None else h
    if embed:
        rows, _ = _shape(ckpt, embed, 2)
        if kind != "lm" and rows != shapes[0].d:
            raise BilinError(
                f"{ckpt.path}: embedding {embed!r} gives {rows} features, layer 0 takes "
                f"{shapes[0].d}"
            )
    if head:
        rows, cols = _shape(ckpt, head, 2)
        if kind != "lm":
            last = layers[-1]
            if last.p is not None:
                raise BilinError(f"{ckpt.path}: the last layer has both a 'p' and a head")
            if cols != shapes[-1].h:
                raise BilinError(
                    f"{ckpt.path}: head {head!r} takes {cols} inputs, the last layer gives "
                    f"{shapes[-1].h}"
                )
            # The head is the last layer's output projection P: its output is the logits.
            last.p = head
            if head.endswith(".weight"):
                last.p_bias = last.p_bias or _present(ckpt, head.removesuffix("weight") + "bias")
            shapes[-1].o = rows
            shapes[-1].out_space = "outputs" if kind == "toy" else "logits"
    load_layer, load_tensor = _make_loader(ckpt, layers)
    model = BilinearModel(
        layout=layout,
        kind=kind,
        shapes=shapes,
        _load_layer=load_layer,
        _load_tensor=load_tensor,
        residual=residual,
        embed_key=embed,
        head_key=head,
        embed_shape=tuple(ckpt.tensors[embed].shape) if embed else None,
    )
    names = config.get("classes") or config.get("outputs")
    if isinstance(names, list) and kind != "lm" and len(names) == shapes[-1].o:
        model.output_names = [str(n) for n in names]
    shape = config.get("input_shape")
    if isinstance(shape, list) and all(isinstance(s, int) for s in shape):
        model.input_shape = tuple(shape)
    folder = ckpt.path if ckpt.path.is_dir() else ckpt.path.parent
    if (folder / "tokenizer.json").is_file():
        model.meta["tokenizer"] = str(folder / "tokenizer.json")
    if kind == "lm" and head:
        model.meta["head_rows"] = ckpt.tensors[head].shape[0]
        vocab = config.get("vocab")
        if isinstance(vocab, list) and len(vocab) == model.meta["head_rows"]:
            model.meta["vocab"] = [str(t) for t in vocab]
    declared_bias = config.get("bias")
    if isinstance(declared_bias, bool) and declared_bias != any(s.bias for s in shapes):
        model.notes.append(
            f"config.json says bias={declared_bias}, but the tensors say otherwise; "
            "bilin follows the tensors"
        )
    return model


def _image(ckpt: Checkpoint) -> BilinearModel | None:
    idx = _layer_indices(ckpt.tensors, r"blocks\.(\d+)\.weight")
    if not idx or "head.weight" not in ckpt.tensors:
        return None
    layers = [
        LayerKeys(wv=f"blocks.{i}.weight", wv_bias=_present(ckpt, f"blocks.{i}.bias")) for i in idx
    ]
    residual = bool(ckpt.config.get("residual", False))
    return _build(
        ckpt, "image classifier", "classifier", layers,
        _present(ckpt, "embed.weight"), "head.weight", residual,
    )


def _transformer(ckpt: Checkpoint) -> BilinearModel | None:
    idx = _layer_indices(ckpt.tensors, r"transformer\.h\.(\d+)\.mlp\.w\.weight")
    if not idx:
        return None
    pre = "transformer.h.{}.mlp."
    layers = [
        LayerKeys(
            wv=pre.format(i) + "w.weight",
            wv_bias=_present(ckpt, pre.format(i) + "w.bias"),
            p=_present(ckpt, pre.format(i) + "p.weight"),
            p_bias=_present(ckpt, pre.format(i) + "p.bias"),
        )
        for i in idx
    ]
    missing = [i for i, lk in enumerate(layers) if lk.p is None]
    if missing:
        raise BilinError(f"{ckpt.path}: transformer layer(s) {missing} have no mlp.p.weight")
    head = _present(ckpt, "lm_head.weight") or _present(ckpt, "transformer.wte.weight")
    return _build(
        ckpt, "bilinear transformer", "lm", layers, _present(ckpt, "transformer.wte.weight"), head
    )


def _toy(ckpt: Checkpoint) -> BilinearModel | None:
    if not {"left.weight", "right.weight", "head.weight"} <= set(ckpt.tensors):
        return None
    layers = [
        LayerKeys(
            w="left.weight", v="right.weight",
            w_bias=_present(ckpt, "left.bias"), v_bias=_present(ckpt, "right.bias"),
        )
    ]
    return _build(ckpt, "toy model", "toy", layers, None, "head.weight")


def _llama(ckpt: Checkpoint) -> BilinearModel | None:
    idx = _layer_indices(ckpt.tensors, r"model\.layers\.(\d+)\.mlp\.gate_proj\.weight")
    if not idx:
        return None
    pre = "model.layers.{}.mlp."
    layers = [
        LayerKeys(
            w=pre.format(i) + "gate_proj.weight",
            v=pre.format(i) + "up_proj.weight",
            p=pre.format(i) + "down_proj.weight",
            w_bias=_present(ckpt, pre.format(i) + "gate_proj.bias"),
            v_bias=_present(ckpt, pre.format(i) + "up_proj.bias"),
            p_bias=_present(ckpt, pre.format(i) + "down_proj.bias"),
        )
        for i in idx
    ]
    for lk in layers:
        for key in (lk.v, lk.p):
            if key not in ckpt.tensors:
                raise BilinError(f"{ckpt.path}: {key!r} is missing")
    head = _present(ckpt, "lm_head.weight") or _present(ckpt, "model.embed_tokens.weight")
    model = _build(
        ckpt, "LLaMA-style gated MLP", "lm", layers,
        _present(ckpt, "model.embed_tokens.weight"), head,
    )
    model.mlp_norm_keys = [_present(ckpt, f"model.layers.{i}.post_attention_layernorm.weight")
                           for i in idx]
    act = ckpt.config.get("hidden_act", ckpt.config.get("hidden_activation"))
    if act not in IDENTITY_ACTS:
        model.warnings.append(
            f"config.json says hidden_act={act!r}: the MLP is gated by a nonlinearity, so the "
            "decomposition describes the bilinear (identity-gate) part only and is NOT exact"
        )
    elif "hidden_act" not in ckpt.config:
        model.notes.append(
            "no hidden_act in config.json: assuming an identity gate (a bilinear fine-tune)"
        )
    return model


_RECOGNISERS = (_image, _transformer, _toy, _llama)


def _expand_template(ckpt: Checkpoint, template: dict) -> list[dict]:
    out = []
    i = 0
    anchor = next(v for v in template.values() if isinstance(v, str) and "{i}" in v)
    while anchor.replace("{i}", str(i)) in ckpt.tensors:
        out.append({k: v.replace("{i}", str(i)) for k, v in template.items()})
        i += 1
    if not out:
        raise BilinError(f"{ckpt.path}: map template {anchor!r} matches no tensor for i = 0")
    return out


def model_from_map(ckpt: Checkpoint, mapping: dict, source: str = "map") -> BilinearModel:
    """Build a model from an explicit key mapping (the ``--map`` file)."""
    raw = mapping.get("layers")
    if isinstance(raw, dict):
        if not any(isinstance(v, str) and "{i}" in v for v in raw.values()):
            raw = [raw]
        else:
            raw = _expand_template(ckpt, raw)
    if not isinstance(raw, list) or not raw:
        raise BilinError(f"{source}: 'layers' must be a non-empty list or a {{i}} template")
    fields = set(LayerKeys.__dataclass_fields__)
    layers = []
    for entry in raw:
        if not isinstance(entry, dict) or set(entry) - fields:
            bad = set(entry) - fields if isinstance(entry, dict) else entry
            raise BilinError(f"{source}: unknown layer entry {bad}; allowed: {sorted(fields)}")
        for key in entry.values():
            if key not in ckpt.tensors:
                raise BilinError(f"{source}: {key!r} is not in {ckpt.path}")
        layers.append(LayerKeys(**entry))
    embed, head = mapping.get("embed"), mapping.get("head")
    for key in (embed, head):
        if key is not None and key not in ckpt.tensors:
            raise BilinError(f"{source}: {key!r} is not in {ckpt.path}")
    has_p = any(lk.p for lk in layers)
    kind = "lm" if has_p else "classifier"
    model = _build(
        ckpt, "custom map", kind, layers, embed, head, bool(mapping.get("residual", False))
    )
    if not has_p and head is None:
        model.shapes[-1].out_space = "hidden"
    return model


def read_map(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise BilinError(f"{p}: map file not found")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BilinError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BilinError(f"{p}: a map must be a JSON object; {MAP_HELP}")
    return data


def recognise(ckpt: Checkpoint, mapping: dict | None = None) -> BilinearModel:
    """The model in ``ckpt``: from ``mapping`` if given, else the first layout that fits."""
    if mapping is not None:
        return model_from_map(ckpt, mapping)
    embedded = ckpt.config.get("bilin_map")
    if isinstance(embedded, dict):
        return model_from_map(ckpt, embedded, "config.json bilin_map")
    for recogniser in _RECOGNISERS:
        model = recogniser(ckpt)
        if model is not None:
            return model
    keys = sorted(ckpt.tensors)
    shown = ", ".join(f"{k} {ckpt.tensors[k].shape}" for k in keys[:6])
    more = f" and {len(keys) - 6} more" if len(keys) > 6 else ""
    raise BilinError(
        f"{ckpt.path}: no known bilinear layout; found {shown}{more}. To read it, {MAP_HELP}"
    )

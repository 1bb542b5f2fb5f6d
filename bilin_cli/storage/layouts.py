"""Recognising checkpoint layouts and building a BilinearModel.

The layouts are described in docs/architecture.md, "Checkpoint layouts".

Each layout is described by a :class:`LayerKeys` per layer (which tensor holds W,
V or the stacked WV, P and biases) plus the embedding and head keys. Recognition
only looks at tensor names and shapes; data is read when a layer is asked for.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace

import numpy as np

from bilin_cli.core.errors import BilinError, option
from bilin_cli.core.printable import printable
from bilin_cli.model.bilinear import BilinearLayer, BilinearModel, LayerShape
from bilin_cli.storage.containers import Checkpoint
from bilin_cli.storage.maps import LAYER_FIELDS, MAP_HELP, read_map, validate

__all__ = ["LayerKeys", "model_from_map", "read_map", "recognise", "suggest_map"]

IDENTITY_ACTS = {None, "identity", "linear", "none", "bilinear"}


@dataclass
class LayerKeys:
    """Where one layer's tensors live. ``wv`` is a stacked (2h, d) matrix: W = [:h].

    ``head``/``head_bias`` are set on a classifier's last layer when a down projection
    ``p`` comes before the head: the loader folds them, ``P <- H P``, ``b_p <- H b_p + b_h``,
    so the layer's output is the logits and every command reads classes as usual."""

    w: str | None = None
    v: str | None = None
    wv: str | None = None
    p: str | None = None
    w_bias: str | None = None
    v_bias: str | None = None
    wv_bias: str | None = None
    p_bias: str | None = None
    head: str | None = None
    head_bias: str | None = None
    in_scale: str | None = None  # a linear scale y = s x in front of the layer, folded


def _layer_indices(keys, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    found = sorted({int(m.group(1)) for k in keys if (m := rx.fullmatch(k))})
    if found and found != list(range(len(found))):
        raise BilinError(f"layer indices are not contiguous from 0: found {found}")
    return found


def _present(ckpt: Checkpoint, key: str) -> str | None:
    return key if key in ckpt.tensors else None


def _where(ckpt: Checkpoint) -> str:
    return printable(ckpt.path)


def _shape(ckpt: Checkpoint, key: str, ndim: int) -> tuple[int, ...]:
    if key not in ckpt.tensors:
        raise BilinError(f"{_where(ckpt)}: {printable(key)!r} is not in the checkpoint")
    shape = ckpt.tensors[key].shape
    if len(shape) != ndim:
        raise BilinError(f"{_where(ckpt)}: {printable(key)!r} has shape {shape}, expected "
                         f"{ndim} dimension{'s' if ndim > 1 else ''}")
    if 0 in shape:
        raise BilinError(f"{_where(ckpt)}: {printable(key)!r} has shape {shape}, which is empty")
    return shape


def _check_len(ckpt: Checkpoint, key: str | None, n: int, what: str) -> None:
    if key is not None and _shape(ckpt, key, 1)[0] != n:
        raise BilinError(f"{_where(ckpt)}: {printable(key)!r} has "
                         f"{ckpt.tensors[key].shape[0]} entries; {what} needs {n}")


def _layer_dims(ckpt: Checkpoint, lk: LayerKeys) -> tuple[int, int, int | None]:
    """(d, h, o or None) of a layer from shapes alone, checking they fit together."""
    if lk.wv:
        two_h, d = _shape(ckpt, lk.wv, 2)
        if two_h % 2:
            raise BilinError(f"{_where(ckpt)}: stacked {printable(lk.wv)!r} has an odd "
                             f"number of rows {two_h}")
        h = two_h // 2
    else:
        if not (lk.w and lk.v):
            raise BilinError(f"{_where(ckpt)}: a layer needs either 'wv' or both 'w' and 'v'")
        h, d = _shape(ckpt, lk.w, 2)
        if _shape(ckpt, lk.v, 2) != (h, d):
            raise BilinError(
                f"{_where(ckpt)}: {printable(lk.w)!r} {(h, d)} and {printable(lk.v)!r} "
                f"{ckpt.tensors[lk.v].shape} must have the same shape"
            )
    _check_len(ckpt, lk.wv_bias, 2 * h, "a stacked bias (2h)")
    _check_len(ckpt, lk.w_bias, h, "W's bias (h)")
    _check_len(ckpt, lk.v_bias, h, "V's bias (h)")
    o = None
    if lk.p:
        o, hp = _shape(ckpt, lk.p, 2)
        if hp != h:
            raise BilinError(f"{_where(ckpt)}: {printable(lk.p)!r} has {hp} columns, the "
                             f"layer has h = {h} hidden units")
        _check_len(ckpt, lk.p_bias, o, "the projection's bias (o)")
    elif lk.p_bias:
        raise BilinError(f"{_where(ckpt)}: a 'p_bias' needs a 'p'")
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
        # Folding can overflow a float32 near its limit: the layer's consumers check for
        # non-finite values and redo the work in float64, so numpy is not to warn here.
        if lk.in_scale:
            # (W (s x)) = (W diag(s)) x: the layer then reads the residual stream itself.
            s = ckpt.get(lk.in_scale, dtype)
            with np.errstate(over="ignore", invalid="ignore"):
                W, V = W * s, V * s
        P = ckpt.get(lk.p, dtype) if lk.p else None
        b_p = ckpt.get(lk.p_bias, dtype) if lk.p_bias else None
        if lk.head:
            # logits = H (P g + b_p) + b_h: the head folded into the projection.
            H = ckpt.get(lk.head, dtype)
            with np.errstate(over="ignore", invalid="ignore"):
                P = H @ P
                b_p = None if b_p is None else H @ b_p
            if lk.head_bias:
                b_h = ckpt.get(lk.head_bias, dtype)
                b_p = b_h if b_p is None else b_p + b_h
        return BilinearLayer(W, V, P, b_w, b_v, b_p)

    def load_tensor(key: str, dtype: type, rows: slice | None = None) -> np.ndarray:
        return ckpt.get(key, dtype, rows)

    return load_layer, load_tensor


def _as_map(kind: str, layers: list[LayerKeys], embed: str | None, head: str | None,
            head_bias: str | None, residual: bool, norm: dict | None,
            attention: dict | None = None, final_scale: str | None = None) -> dict:
    """The ``--map`` document that describes this model (``info --suggest-map``)."""
    mapping: dict = {"kind": "classifier" if kind == "toy" else kind, "layers": []}
    for lk in layers:
        entry = {k: getattr(lk, k) for k in LAYER_FIELDS if getattr(lk, k)}
        if lk.head is None and head and kind != "lm" and lk is layers[-1] and lk.p == head:
            entry.pop("p")  # the head doubles as the last projection
            entry.pop("p_bias", None)
        mapping["layers"].append(entry)
    for key, value in (("embed", embed), ("head", head), ("head_bias", head_bias)):
        if value:
            mapping[key] = value
    if residual:
        mapping["residual"] = True
    if norm:
        mapping["norm"] = norm
    if attention:
        mapping["attention"] = attention
    if final_scale:
        mapping["final_scale"] = final_scale
    return mapping


def _build(
    ckpt: Checkpoint,
    layout: str,
    kind: str,
    layers: list[LayerKeys],
    embed: str | None,
    head: str | None,
    residual: bool = False,
    head_bias: str | None = None,
    norm: dict | None = None,
    attention: dict | None = None,
    final_scale: str | None = None,
) -> BilinearModel:
    """The model these keys describe, every shape checked against the next and against
    config.json, with its map (``meta["map"]``), notes and warnings."""
    _fold_mlp_scales(ckpt, layers, norm)
    shapes = _layer_shapes(ckpt, kind, layers, residual)
    embed_shape = _embed_shape(ckpt, kind, embed, shapes)
    head, head_bias, head_after_p = _attach_head(ckpt, kind, layers, shapes, head, head_bias,
                                                 residual)
    load_layer, load_tensor = _loaders(ckpt, kind, layers, shapes, head, final_scale)
    model = BilinearModel(
        layout=layout,
        kind=kind,
        shapes=shapes,
        _load_layer=load_layer,
        _load_tensor=load_tensor,
        residual=residual,
        embed_key=embed,
        head_key=head,
        embed_shape=embed_shape,
    )
    model.meta["map"] = _as_map(kind, layers, embed, head, head_bias, residual, norm,
                                attention, final_scale)
    if attention:
        _attach_attention(ckpt, model, attention)
    _note_folds(model, layers, head, final_scale, head_after_p)
    _read_output_config(ckpt, model, kind, embed_shape)
    _attach_tokens(ckpt, model, kind, head)
    _attach_mlp_norm(ckpt, model, norm)
    _note_declared_bias(ckpt, model)
    return model


def _fold_mlp_scales(ckpt: Checkpoint, layers: list[LayerKeys], norm: dict | None) -> None:
    """Sets each layer's ``in_scale`` where the norm in front of the MLPs is a linear scale."""
    if norm and norm.get("kind") == "scale":
        if not norm.get("gain"):
            raise BilinError(f"{_where(ckpt)}: norm kind 'scale' needs its 'gain' tensor")
        for i, lk in enumerate(layers):
            lk.in_scale = _scale_key(ckpt, norm["gain"], i, None)


def _layer_shapes(ckpt: Checkpoint, kind: str, layers: list[LayerKeys],
                  residual: bool) -> list[LayerShape]:
    """Each layer's shape, checked to read what the layer before writes."""
    shapes: list[LayerShape] = []
    for i, lk in enumerate(layers):
        d, h, o = _layer_dims(ckpt, lk)
        _check_layer_fits(ckpt, kind, residual, i, (d, h, o), shapes)
        bias = bool(lk.wv_bias or lk.w_bias or lk.v_bias)
        out_space = "residual" if kind == "lm" else "hidden"
        shapes.append(LayerShape(d, h, o if o is not None else h, bias, out_space))
    return shapes


def _check_layer_fits(ckpt: Checkpoint, kind: str, residual: bool, i: int,
                      dims: tuple[int, int, int | None], before: list[LayerShape]) -> None:
    """Raises where layer ``i`` (``dims`` = (d, h, o)) does not read what the ``before``
    layers write: the layer below's output, or a language model's one residual stream."""
    d, h, o = dims
    prev_out = before[-1].o if before else None
    if kind != "lm" and prev_out is not None and prev_out != d:
        raise BilinError(
            f"{_where(ckpt)}: layer {i} takes d = {d} inputs but layer {i - 1} gives "
            f"{prev_out}"
        )
    if kind == "lm":
        if o is None:
            raise BilinError(f"{_where(ckpt)}: language-model layer {i} has no output "
                             "projection 'p' into the residual stream")
        if o != d or (before and d != before[0].d):
            raise BilinError(
                f"{_where(ckpt)}: layer {i} reads d = {d} and writes o = {o}; every layer "
                f"of a language model reads and writes the same residual stream"
            )
    if residual and kind != "lm" and (o if o is not None else h) != d:
        raise BilinError(
            f"{_where(ckpt)}: a residual layer must write as many dimensions as it reads; "
            f"layer {i} reads {d} and writes {o if o is not None else h}"
        )


def _embed_shape(ckpt: Checkpoint, kind: str, embed: str | None,
                 shapes: list[LayerShape]) -> tuple[int, ...] | None:
    """The embedding's shape, checked to give what layer 0 reads; None without one."""
    if not embed:
        return None
    rows, cols = embed_shape = _shape(ckpt, embed, 2)
    if kind == "lm" and cols != shapes[0].d:
        raise BilinError(f"{_where(ckpt)}: token embedding {printable(embed)!r} "
                         f"({rows}x{cols}) gives {cols} dimensions, layer 0 reads "
                         f"{shapes[0].d}")
    if kind != "lm" and rows != shapes[0].d:
        raise BilinError(
            f"{_where(ckpt)}: embedding {printable(embed)!r} gives {rows} features, "
            f"layer 0 takes {shapes[0].d}"
        )
    return embed_shape


def _output_space(kind: str) -> str:
    return "outputs" if kind == "toy" else "logits"


def _attach_head(ckpt: Checkpoint, kind: str, layers: list[LayerKeys],
                 shapes: list[LayerShape], head: str | None,
                 head_bias: str | None,
                 residual: bool = False) -> tuple[str | None, str | None, bool]:
    """``(head, head_bias, after a down projection)``: the head checked against the last
    layer and, in a classifier, made its output (the last shape then writes the logits);
    a classifier without one reads its last projection as the head. A residual stack's
    last projection writes the stream, not logits: without a head it has none."""
    if not head:
        if kind != "lm" and layers[-1].p is not None and not residual:
            # A classifier whose last projection has no head after it: P is the head.
            shapes[-1].out_space = _output_space(kind)
            head = layers[-1].p
        return head, head_bias, False
    rows, cols = _shape(ckpt, head, 2)
    if head_bias is None and head.endswith(".weight") and kind != "lm":
        head_bias = _present(ckpt, head.removesuffix("weight") + "bias")
    _check_len(ckpt, head_bias, rows, "the head's bias")
    last = layers[-1]
    if kind == "lm":
        if cols != shapes[-1].o:
            raise BilinError(f"{_where(ckpt)}: unembedding {printable(head)!r} reads "
                             f"{cols} dimensions, the residual stream has {shapes[-1].o}")
        return head, head_bias, False
    if cols != shapes[-1].o:
        raise BilinError(
            f"{_where(ckpt)}: head {printable(head)!r} takes {cols} inputs, the last "
            f"layer gives {shapes[-1].o}"
        )
    after_p = last.p is not None
    if after_p:
        last.head, last.head_bias = head, head_bias
    else:
        # The head is the last layer's output projection P: its output is the logits.
        last.p, last.p_bias = head, head_bias
    shapes[-1].o = rows
    shapes[-1].out_space = _output_space(kind)
    return head, head_bias, after_p


def _loaders(ckpt: Checkpoint, kind: str, layers: list[LayerKeys], shapes: list[LayerShape],
             head: str | None, final_scale: str | None):
    """``(load_layer, load_tensor)``; the latter folds a language model's final linear scale
    into the unembedding."""
    load_layer, load_tensor = _make_loader(ckpt, layers)
    if final_scale:
        if kind != "lm" or not head:
            raise BilinError(f"{_where(ckpt)}: 'final_scale' needs a language model's "
                             "unembedding ('head')")
        _scale_key(ckpt, final_scale, 0, shapes[-1].o)
        load_tensor = _folding_head(ckpt, load_tensor, head, final_scale)
    return load_layer, load_tensor


def _note_folds(model: BilinearModel, layers: list[LayerKeys], head: str | None,
                final_scale: str | None, head_after_p: bool) -> None:
    """Records what the loader folds into the weights (scales, a head after a down
    projection) in ``model.meta`` and its notes."""
    folded = [lk.in_scale for lk in layers if lk.in_scale]
    if folded:
        model.meta["folded_scales"] = {"mlp": folded}
        model.notes.append(
            f"linear scales {printable(folded[0])}{', ...' if len(folded) > 1 else ''} in "
            "front of each MLP folded into its factors (W diag(s), V diag(s)): Q reads the "
            "residual stream itself")
    if final_scale:
        model.meta.setdefault("folded_scales", {})["final"] = final_scale
        model.notes.append(f"final linear scale {printable(final_scale)} folded into the "
                           "unembedding: --token T reads u = s * U[T]")
    if head_after_p:
        model.notes.append(
            f"the last layer's projection {printable(layers[-1].p)!r} is followed by the head "
            f"{printable(head)!r}: --class C reads u = P^T (head row C), folded into the layer"
        )


def _read_output_config(ckpt: Checkpoint, model: BilinearModel, kind: str,
                        embed_shape: tuple[int, ...] | None) -> None:
    """Sets the class names and image shape config.json gives, checked against the model."""
    names = _config_names(ckpt, kind, model.shapes[-1].o)
    if names is not None:
        model.output_names = names
    model.input_shape = _config_input_shape(ckpt, kind, embed_shape)


def _attach_tokens(ckpt: Checkpoint, model: BilinearModel, kind: str, head: str | None) -> None:
    """Records the tokenizer beside the checkpoint and a language model's vocabulary (the
    unembedding's rows, and config.json's ``vocab``, checked to name each)."""
    folder = ckpt.path if ckpt.path.is_dir() else ckpt.path.parent
    if (folder / "tokenizer.json").is_file():
        model.meta["tokenizer"] = str(folder / "tokenizer.json")
    if kind == "lm" and head:
        model.meta["head_rows"] = ckpt.tensors[head].shape[0]
        vocab = ckpt.config.get("vocab")
        if vocab is not None:
            if not (isinstance(vocab, list) and all(isinstance(t, str) for t in vocab)
                    and len(vocab) == model.meta["head_rows"]):
                raise BilinError(f"{_where(ckpt)}: config.json 'vocab' must list the "
                                 f"{model.meta['head_rows']} tokens as strings")
            model.meta["vocab"] = list(vocab)


def _attach_mlp_norm(ckpt: Checkpoint, model: BilinearModel, norm: dict | None) -> None:
    """Sets the kind of the norm in front of each MLP and, unless it was folded, each
    layer's gain and bias keys."""
    if norm and norm.get("kind") == "scale":
        model.norm_kind = "none"  # folded: token readings and --chain see x itself
    elif norm:
        model.norm_kind = norm.get("kind", "rms")
        gain, bias = norm.get("gain"), norm.get("bias")
        shapes = model.shapes
        model.mlp_norm_keys = [_norm_key(ckpt, gain, i, shapes[i].d) for i in range(len(shapes))]
        model.mlp_norm_bias_keys = [_norm_key(ckpt, bias, i, shapes[i].d)
                                    for i in range(len(shapes))]


def _note_declared_bias(ckpt: Checkpoint, model: BilinearModel) -> None:
    """Notes a config.json ``bias`` that the tensors contradict (the tensors win)."""
    declared_bias = ckpt.config.get("bias")
    if isinstance(declared_bias, bool) and declared_bias != any(s.bias for s in model.shapes):
        model.notes.append(
            f"config.json says bias={declared_bias}, but the tensors say otherwise; "
            "bilin follows the tensors"
        )


def _scale_key(ckpt: Checkpoint, template: str, i: int, d: int | None) -> str:
    """The layer-``i`` key of a linear scale, checked to be 0-d or ``(d,)``."""
    key = template.replace("{i}", str(i))
    if key not in ckpt.tensors:
        raise BilinError(f"{_where(ckpt)}: scale tensor {printable(key)!r} (layer {i}) is "
                         "not in the checkpoint")
    shape = ckpt.tensors[key].shape
    if len(shape) > 1 or (d is not None and shape not in ((), (1,), (d,))):
        raise BilinError(f"{_where(ckpt)}: scale {printable(key)!r} has shape {shape}; a "
                         f"linear scale is a number or one entry per dimension"
                         + (f" ({d})" if d else ""))
    return key


def _folding_head(ckpt: Checkpoint, load_tensor, head: str, scale: str):
    """``load_tensor`` that returns the unembedding with the final scale folded in."""
    def load(key: str, dtype: type, rows: slice | None = None) -> np.ndarray:
        arr = load_tensor(key, dtype, rows)
        if key != head:
            return arr
        with np.errstate(over="ignore", invalid="ignore"):  # checked where it is used
            return arr * ckpt.get(scale, dtype)

    return load


def _attach_attention(ckpt: Checkpoint, model: BilinearModel, attention: dict) -> None:
    """Per-block bilinear attention: keys, shapes against the residual stream, settings."""
    from bilin_cli.model.attention import AttentionKeys, AttentionLayer, split_heads
    from bilin_cli.storage.transformer_keys import attention_settings

    if model.kind != "lm":
        raise BilinError(f"{_where(ckpt)}: bilinear attention needs a language model")
    d = model.shapes[0].d
    keys = [AttentionKeys(**entry) for entry in attention["layers"]]
    for i, ak in enumerate(keys):
        q = _shape(ckpt, ak.q1, 2)
        for name in (ak.q2, ak.k1, ak.k2):
            if _shape(ckpt, name, 2) != q:
                raise BilinError(f"{_where(ckpt)}: attention block {i}: {printable(name)!r} "
                                 f"{ckpt.tensors[name].shape} differs from "
                                 f"{printable(ak.q1)!r} {q}")
        v = _shape(ckpt, ak.v, 2)
        if q[1] != d or v[1] != d or _shape(ckpt, ak.o, 2) != (d, v[0]):
            raise BilinError(f"{_where(ckpt)}: attention block {i} does not fit the residual "
                             f"stream d = {d}: q {q}, v {v}, o {ckpt.tensors[ak.o].shape}")
        if ak.scale:
            _scale_key(ckpt, ak.scale, i, d)
    q_rows, v_rows = ckpt.tensors[keys[0].q1].shape[0], ckpt.tensors[keys[0].v].shape[0]
    config = dict(ckpt.config)
    if "n_heads" in attention:
        config["n_heads"] = attention["n_heads"]
    rotary_keys = [k for k in ckpt.tensors if "rotary" in k or "inv_freq" in k]
    half = {ckpt.tensors[k].shape[0] for k in rotary_keys
            if k.endswith("inv_freq") and len(ckpt.tensors[k].shape) == 1}
    settings = attention_settings(config, q_rows, v_rows, bool(rotary_keys),
                                  half.pop() if len(half) == 1 else None)
    H = settings.n_heads

    def load(i: int, dtype: type) -> AttentionLayer:
        ak = keys[i]
        s = ckpt.get(ak.scale, dtype) if ak.scale else None

        def proj(key: str) -> np.ndarray:
            w = ckpt.get(key, dtype)
            return split_heads(w if s is None else w * s, H)

        Wo = split_heads(ckpt.get(ak.o, dtype), H, out=True)
        return AttentionLayer(proj(ak.q1), proj(ak.q2), proj(ak.k1), proj(ak.k2), proj(ak.v),
                              Wo, settings)

    model.attention_keys = keys
    model.attention_settings = settings
    biases = [k.removesuffix("weight") + "bias" for ak in keys for k in ak.names()
              if k.endswith(".weight") and k.removesuffix("weight") + "bias" in ckpt.tensors]
    if biases:
        model.warnings.append(f"attention biases ({printable(biases[0])}, ...) are left out of "
                              "the attention readings: the QK forms and OV map are the weights'")
    model.attention_norm = attention.get("norm", "scale") if any(k.scale for k in keys) \
        else "none"
    model._load_attention = load
    if model.attention_norm != "none":
        what = ("linear scales" if model.attention_norm == "scale" else "RMS norm gains")
        model.notes.append(f"{what} in front of each attention folded into its q, k and v "
                           "projections" + ("; the norm's 1/rms(x) is left out"
                                            if model.attention_norm == "rms" else ""))
    missing = [w for w in ("n_heads", "rope", "causal") if w not in settings.stated]
    if "n_heads" in missing and "d_head" in settings.stated:
        missing.remove("n_heads")
    if missing:
        rope = "unknown" if settings.rope is None else settings.rope
        causal = "assumed" if settings.causal is None else settings.causal
        model.notes.append(f"attention: config.json does not state {', '.join(missing)}; "
                           f"read as {H} head{'s' if H != 1 else ''} of d_head = "
                           f"{settings.d_head}, RoPE {rope}, causal {causal}")


def _config_error(ckpt: Checkpoint, key: str, wants: str) -> BilinError:
    value = printable(json.dumps(ckpt.config.get(key))[:40])
    return BilinError(f"{_where(ckpt)}: config.json {key!r} must be {wants}, found {value}; "
                      "fix or remove it")


def _config_names(ckpt: Checkpoint, kind: str, n: int) -> list[str] | None:
    """Class names from config.json (``classes`` or ``outputs``), checked against the head."""
    key = "classes" if "classes" in ckpt.config else "outputs"
    names = ckpt.config.get(key)
    if names is None or kind == "lm":
        return None
    if type(names) is int and names == n:
        return None
    if not (isinstance(names, list) and len(names) == n
            and all(type(x) in (str, int, float) for x in names)):
        raise _config_error(ckpt, key, f"a list of {n} names (one per output)")
    # Kept exact (JSON is for machines); tables and messages escape them when shown.
    return [str(x) for x in names]


def _config_input_shape(ckpt: Checkpoint, kind: str, embed_shape) -> tuple[int, ...] | None:
    """An image shape from config.json, checked against the embedding's input size."""
    shape = ckpt.config.get("input_shape")
    if shape is None or kind == "lm":
        return None
    n_in = embed_shape[1] if embed_shape is not None else None
    if not (isinstance(shape, list) and shape and all(type(s) is int and s > 0 for s in shape)
            and (n_in is None or int(np.prod(shape, dtype=object)) == n_in)):
        raise _config_error(ckpt, "input_shape", "a list of positive sizes" + (
            f" whose product is the {n_in} inputs" if n_in else ""))
    return tuple(shape) if n_in is not None else None


def _norm_key(ckpt: Checkpoint, template: str | None, i: int, d: int) -> str | None:
    if template is None:
        return None
    key = template.replace("{i}", str(i))
    if key not in ckpt.tensors:
        raise BilinError(f"{_where(ckpt)}: norm tensor {printable(key)!r} (layer {i}) is "
                         "not in the checkpoint")
    _check_len(ckpt, key, d, f"layer {i}'s norm")
    return key


def _residual_flag(ckpt: Checkpoint) -> bool:
    value = ckpt.config.get("residual", False)
    if not isinstance(value, bool):
        raise BilinError(f"{_where(ckpt)}: config.json 'residual' must be true or false, "
                         f"found {printable(repr(value), 40)}")
    return value


def _check_gate(ckpt: Checkpoint, model: BilinearModel) -> None:
    """A gated MLP is bilinear only with an identity gate: say so loudly otherwise."""
    key = "hidden_act" if "hidden_act" in ckpt.config else "hidden_activation"
    act = ckpt.config.get(key)
    if not isinstance(act, (str, type(None))):
        raise _config_error(ckpt, key, "the name of the gate's activation")
    if act not in IDENTITY_ACTS:
        model.warnings.append(
            f"config.json says hidden_act={act!r}: the MLP is gated by a nonlinearity, so the "
            "decomposition describes the bilinear (identity-gate) part only and is NOT exact"
        )
    elif "hidden_act" not in ckpt.config:
        model.notes.append(
            "no hidden_act in config.json: assuming an identity gate (a bilinear fine-tune)"
        )


def _unexplained(ckpt: Checkpoint, used: set[str]) -> bool:
    """Whether a classifier layout would leave a matrix unused (a down projection, an
    embedding under another name): then its names only look like the layout, and the
    structure decides."""
    return any(len(i.shape) == 2 and k not in used for k, i in ckpt.tensors.items())


def _image(ckpt: Checkpoint) -> BilinearModel | None:
    idx = _layer_indices(ckpt.tensors, r"blocks\.(\d+)\.weight")
    if not idx or "head.weight" not in ckpt.tensors:
        return None
    layers = [
        LayerKeys(wv=f"blocks.{i}.weight", wv_bias=_present(ckpt, f"blocks.{i}.bias")) for i in idx
    ]
    if _unexplained(ckpt, {"embed.weight", "head.weight", *(lk.wv for lk in layers)}):
        return None
    residual = _residual_flag(ckpt)
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
    keys = {"left.weight", "right.weight", "head.weight"}
    if not keys <= set(ckpt.tensors) or _unexplained(ckpt, keys):
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
    for i, key in enumerate(model.mlp_norm_keys):
        _check_len(ckpt, key, model.shapes[i].d, f"layer {i}'s post_attention_layernorm")
    if any(model.mlp_norm_keys):
        model.meta["map"]["norm"] = {"kind": "rms",
                                     "gain": "model.layers.{i}.post_attention_layernorm.weight"}
    _check_gate(ckpt, model)
    return model


_RECOGNISERS = (_image, _transformer, _toy, _llama)


def _infer_kind(ckpt: Checkpoint, mapping: dict) -> str:
    """``classifier`` or ``lm`` for a map that does not say: a token embedding ``(vocab, d)``,
    or several layers that all write back into one residual stream, make a language model."""
    if "kind" in mapping:
        return mapping["kind"]
    layers = mapping["layers"]

    def dims(entry: dict) -> tuple[int, int | None]:
        factor = ckpt.tensors[entry.get("wv") or entry["w"]].shape
        p = ckpt.tensors[entry["p"]].shape if "p" in entry else None
        return factor[-1], (p[0] if p is not None and len(p) == 2 else None)

    d0 = dims(layers[0])[0]
    embed = mapping.get("embed")
    if embed is not None:
        shape = ckpt.tensors[embed].shape
        if len(shape) == 2 and shape[1] == d0 and shape[0] != d0:
            return "lm"
        return "classifier"
    if len(layers) > 1 and all(dims(e) == (d0, d0) for e in layers) and "head" in mapping:
        return "lm"
    return "classifier"


def model_from_map(ckpt: Checkpoint, mapping: object, source: str = "map",
                   layout: str = "custom map") -> BilinearModel:
    """Build a model from an explicit key mapping (``--map``, ``bilin_map``, structure)."""
    m = validate(mapping, ckpt.tensors, source)
    kind = _infer_kind(ckpt, m)
    layers = [LayerKeys(**entry) for entry in m["layers"]]
    norm = m.get("norm")
    if norm is None and kind == "lm":
        norm = {"kind": "rms"}
    model = _build(ckpt, layout, kind, layers, m.get("embed"), m.get("head"), m["residual"],
                   m.get("head_bias"), norm, m.get("attention"), m.get("final_scale"))
    if kind == "lm" and "hidden_act" in ckpt.config:
        _check_gate(ckpt, model)
    if m.get("inputs") == 2:
        _two_inputs(model)
    return model


def _two_inputs(model: BilinearModel) -> None:
    """Layer 0 as a form of ``z = [x_a; x_b]``: ``W' = [W_l | 0]``, ``V' = [0 | W_r]``, so
    ``Q = 1/2 [[0, M], [M^T, 0]]`` with ``M = W_l^T diag(c) W_r`` and every command works on
    ``z`` unchanged."""
    n = model.shapes[0].d
    load = model._load_layer

    def load_layer(i: int, dtype: type) -> BilinearLayer:
        layer = load(i, dtype)
        if i != 0:
            return layer
        zeros = np.zeros_like(layer.W)
        return replace(layer, W=np.concatenate([layer.W, zeros], axis=1),
                       V=np.concatenate([zeros, layer.V], axis=1))

    model._load_layer = load_layer
    model.shapes[0].d = 2 * n
    model.meta["inputs"] = 2
    model.meta["operands"] = {"x_a": [0, n], "x_b": [n, 2 * n]}
    model.meta["map"]["inputs"] = 2
    model.notes.append(f"two-input form (map 'inputs': 2): layer 0 reads z = [x_a; x_b], "
                       f"entries 0..{n - 1} of every input-space vector are x_a (W_l), "
                       f"{n}..{2 * n - 1} are x_b (W_r)")


def _unrecognised(ckpt: Checkpoint, why: str = "") -> BilinError:
    from bilin_cli.storage.subnetworks import activation_chains, chain_text

    n = len(ckpt.tensors)
    chains = activation_chains(ckpt.tensors)
    if chains and not why:
        prefix, idx = chains[0]
        return BilinError(
            f"no bilinear layer in {_where(ckpt)} (Linear layers separated by activations: "
            f"{chain_text(prefix, idx)}): a bilinear layer reads two factor matrices together, "
            "with no activation between")
    return BilinError(
        f"{_where(ckpt)}: no known bilinear layout among its {n} tensors{why}; "
        f"bilin info {printable(ckpt.path)} lists them all. To read it, {MAP_HELP}"
    )


def _by_structure(ckpt: Checkpoint) -> BilinearModel | None:
    from bilin_cli.storage.structure import propose  # only for layouts no name settles

    found = propose(ckpt.tensors, ckpt.config)
    if found is None or found.mapping is None or _only_activation_chains(ckpt, found.mapping):
        return None
    if found.ambiguous:
        raise BilinError(
            f"{_where(ckpt)}: the bilinear structure is ambiguous ({found.ambiguous[0]}); run "
            f"bilin info {printable(ckpt.path)} --suggest-map > map.json, edit it, and pass "
            f"{option('--map map.json', 'map=map.json')}"
        )
    try:
        kind = "language model" if found.mapping.get("kind") == "lm" else "classifier"
        if "attention" in found.mapping:
            kind = "fully bilinear transformer"
        model = model_from_map(ckpt, found.mapping, "recognised by structure",
                               layout=f"{kind} (recognised by structure)")
    except BilinError as exc:
        raise _unrecognised(ckpt, f" (the closest structure does not fit: {exc})") from None
    model.notes.insert(0, "recognised by structure: " + "; ".join(found.roles))
    return model


def recognise(ckpt: Checkpoint, mapping: dict | None = None) -> BilinearModel:
    """The model in ``ckpt``: from ``mapping`` if given, else a known layout, else its
    structure."""
    if mapping is not None:  # a map file's errors name the file
        return model_from_map(ckpt, mapping, getattr(mapping, "source", "map"))
    if "bilin_map" in ckpt.config:
        return model_from_map(ckpt, ckpt.config["bilin_map"], "config.json bilin_map")
    # A known layout by its names first; then the network beside side groups (a ReLU
    # encoder, a decomposition's factors), which must not lend it an embedding or a head;
    # then the whole file by its structure.
    model = _known(ckpt) or _inside(ckpt) or _by_structure(ckpt)
    if model is None:
        raise _unrecognised(ckpt)
    return model


def _only_activation_chains(ckpt: Checkpoint, mapping: dict) -> bool:
    """Whether every factor the structure found is a member of an activation chain
    (``net.0`` -> ReLU -> ``net.2``): Linear layers with activations between, not bilinear."""
    from bilin_cli.storage.subnetworks import activation_chains

    chains = {f"{prefix}.{i}.weight" for prefix, idx in activation_chains(ckpt.tensors)
              for i in idx}
    factors = [lay.get(k) for lay in mapping.get("layers", []) for k in ("w", "v", "wv")]
    factors = [f for f in factors if f]
    return bool(factors) and all(f in chains for f in factors)


def _inside(ckpt: Checkpoint) -> BilinearModel | None:
    """The network inside a larger file: side groups (private ones, activation chains; see
    :mod:`bilin_cli.storage.subnetworks`) set aside, the rest read as a network."""
    from bilin_cli.storage.subnetworks import side_groups

    aside = side_groups(ckpt.tensors)
    if not aside:
        return None
    kept = {k: v for k, v in ckpt.tensors.items()
            if (k.split(".", 1)[0] if "." in k else "") not in aside}
    view = replace(ckpt, tensors=kept)
    try:
        model = _known(view) or _by_structure(view)
    except BilinError:
        return None
    if model is None:
        return None
    n_aside = len(ckpt.tensors) - len(kept)
    model.notes.insert(0, f"read the network beside {', '.join(printable(a) + '.*' for a in aside)}"
                          f" ({n_aside} tensor{'s' if n_aside != 1 else ''} set aside: "
                          "private groups and activation chains are not the bilinear network)")
    model.meta["set_aside"] = aside
    return model


def _common_prefix(names) -> str:
    """The dotted prefix every name shares (``model.``, ``net.``), up to two levels."""
    prefix = ""
    for _ in range(2):
        heads = {n[len(prefix):].split(".", 1)[0] for n in names}
        if len(heads) != 1 or not all(n[len(prefix):].count(".") for n in names):
            break
        prefix += heads.pop() + "."
    return prefix


def _prefixed(mapping: dict, prefix: str) -> dict:
    """``mapping`` with every tensor name under ``prefix``."""
    out = {**mapping, "layers": [{k: prefix + v for k, v in lay.items()}
                                 for lay in mapping["layers"]]}
    for key in ("embed", "head", "head_bias"):
        if key in out:
            out[key] = prefix + out[key]
    if "norm" in out:
        out["norm"] = {k: v if k == "kind" else prefix + v for k, v in out["norm"].items()}
    return out


def _known(ckpt: Checkpoint) -> BilinearModel | None:
    """A known layout, also under a prefix that a wrapper put on every name (``model.``)."""
    for recogniser in _RECOGNISERS:
        model = recogniser(ckpt)
        if model is not None:
            return model
    prefix = _common_prefix(ckpt.tensors)
    if not prefix:
        return None
    view = replace(ckpt, tensors={k[len(prefix):]: v for k, v in ckpt.tensors.items()})
    for recogniser in _RECOGNISERS:
        model = recogniser(view)
        if model is not None:
            mapping = {**_prefixed(model.meta["map"], prefix),
                       "kind": "lm" if model.kind == "lm" else "classifier"}
            found = model_from_map(ckpt, mapping, f"the {model.layout} layout under "
                                   f"{printable(prefix)!r}", layout=model.layout)
            found.notes.insert(0, f"{model.layout} layout under the prefix "
                                  f"{printable(prefix)!r}")
            found.warnings = model.warnings + [w for w in found.warnings
                                               if w not in model.warnings]
            return found
    return None


def suggest_map(ckpt: Checkpoint) -> tuple[dict, list[str]]:
    """A ready-to-edit map for ``ckpt`` and the ambiguities a user should settle in it."""
    try:
        model = recognise(ckpt)
        return model.meta["map"], []
    except BilinError:
        pass
    from bilin_cli.storage.structure import propose

    found = propose(ckpt.tensors, ckpt.config)
    if found is None or found.mapping is None:
        example = {"_note": "no bilinear structure found: fill in the tensor names",
                   "layers": [{"w": "?", "v": "?", "p": "?"}], "embed": "?", "head": "?"}
        return example, (found.ambiguous if found is not None
                         else ["no two sibling matrices of one shape were found"])
    mapping = dict(found.mapping)
    if found.ambiguous:
        mapping = {"_ambiguous": found.ambiguous, **mapping}
    return mapping, found.ambiguous

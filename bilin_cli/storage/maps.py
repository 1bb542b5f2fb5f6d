"""The key map: which tensor plays which role, as a JSON document (``--map``).

A map is what a user writes for a layout bilin does not know, what ``config.json`` may
carry as ``bilin_map``, what recognition by structure produces, and what
``bilin info --suggest-map`` prints. Every key it accepts (values are tensor names;
``{i}`` in a ``layers`` template expands over 0, 1, ...; keys that start with ``_`` are
comments and are ignored):

``layers``
    a list with one object per bilinear layer, or one object whose names contain ``{i}``.
    Per layer: ``w`` and ``v`` (the two ``(h, d)`` factors; their order does not change
    ``Q``), or ``wv`` (stacked ``(2h, d)``, W = first half of the rows); optional ``p``
    ``(o, h)``, ``w_bias``, ``v_bias`` ``(h)``, ``wv_bias`` ``(2h)``, ``p_bias`` ``(o)``.
``embed``
    a classifier's input embedding ``(d, n_in)``, or a language model's token embedding
    ``(vocab, d)``.
``head``, ``head_bias``
    what reads the last layer's outputs: a classifier's head ``(classes, o)`` (after the
    last layer's ``p`` when it has one: ``logits = H (P g + b_p) + b_h``), or a language
    model's unembedding ``(vocab, d)``.
``kind``
    ``classifier`` (the default where it cannot be told apart) or ``lm`` (each layer
    writes through ``p`` into a residual stream; ``--token`` reads the head's rows).
``residual``
    ``true`` when each layer adds its input back (``x + P g(x)``).
``norm``
    the normalisation in front of each MLP, for token readings and ``--chain``:
    ``{"kind": "rms" | "layer" | "none" | "scale", "gain": KEY, "bias": KEY}`` (``{i}``
    templates allowed; ``rms`` without a gain is the default for language models). ``scale``
    is a linear pre-scale ``y = s x`` (0-d or ``(d,)``), folded into each MLP's factors, so
    ``Q`` then lives on the residual stream itself.
``attention``
    a fully bilinear transformer's attention: ``{"layers": [{"q1": KEY, "q2": KEY, "k1": KEY,
    "k2": KEY, "v": KEY, "o": KEY, "scale": KEY}] (or one {i} template), "norm": "scale" |
    "rms" | "none", "n_heads": N}``: per block the two query and two key projections
    ``(H d_head, d)``, the value ``(H d_v, d)`` and output ``(d, H d_v)`` projections and the
    optional pre-scale (a linear scale, or an RMS norm's gain by ``norm``); ``n_heads``
    overrides config.json.
``final_scale``
    a linear scale ``y = s x`` in front of the unembedding, folded into every ``--token``
    direction (``u = s * U[T]``).
``inputs``
    ``2`` for a two-input form ``W_p((W_l x_a) * (W_r x_b))`` (modular arithmetic with one
    one-hot per operand), which a state dict cannot tell from a one-input layer: ``Q`` then
    lives on ``z = [x_a; x_b]``, ``Q = 1/2 [[0, M], [M^T, 0]]``, ``M = W_l^T diag(W_p^T u) W_r``
    (eigenvalues ``+-sigma_i(M) / 2``); ``w`` is ``W_l``, ``v`` is ``W_r``.
"""

from __future__ import annotations

import json
from pathlib import Path

from bilin_cli.core.errors import BilinError
from bilin_cli.core.printable import printable
from bilin_cli.storage.files import read_json
from bilin_cli.storage.inputs import register_input

LAYER_FIELDS = ("w", "v", "wv", "p", "w_bias", "v_bias", "wv_bias", "p_bias")
TOP_FIELDS = ("layers", "embed", "head", "head_bias", "kind", "residual", "norm", "attention",
              "final_scale", "inputs")
KINDS = ("classifier", "lm", "toy")
NORM_KINDS = ("rms", "layer", "none", "scale")
ATTENTION_FIELDS = ("q1", "q2", "k1", "k2", "v", "o", "scale")
ATTENTION_NORMS = ("scale", "rms", "none")

MAP_HELP = (
    "write a map (bilin info CKPT --suggest-map > map.json, then edit it): "
    '{"layers": [{"w": KEY, "v": KEY} or {"wv": KEY}, optional "p", "w_bias", "v_bias", '
    '"wv_bias", "p_bias"], "embed": KEY, "head": KEY}; see bilin info --help'
)


def _name(value: object, where: str, source: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BilinError(f"{source}: {where} must be a tensor name (a string), found "
                         f"{type(value).__name__}")
    if not value:
        raise BilinError(f"{source}: {where} is an empty string; give a tensor name")
    return value


def _expand(template: dict, tensors, source: str) -> list[dict]:
    anchor = next((v for v in template.values() if "{i}" in v), None)
    if anchor is None:
        return [template]
    out, i = [], 0
    while anchor.replace("{i}", str(i)) in tensors and i < 100_000:
        out.append({k: v.replace("{i}", str(i)) for k, v in template.items()})
        i += 1
    if not out:
        raise BilinError(f"{source}: template {printable(anchor)!r} matches no tensor for i = 0")
    return out


def validate(mapping: object, tensors, source: str) -> dict:
    """A checked, normalised copy of ``mapping``: layers expanded, every name present."""
    if not isinstance(mapping, dict):
        raise BilinError(f"{source}: a map must be a JSON object; {MAP_HELP}")
    unknown = [k for k in mapping if not (isinstance(k, str) and k.startswith("_"))
               and k not in TOP_FIELDS]
    if unknown:
        raise BilinError(f"{source}: unknown key {printable(unknown[0])!r}; a map takes "
                         f"{', '.join(TOP_FIELDS)} (and _comments)")
    raw = mapping.get("layers")
    if isinstance(raw, dict):
        raw = [raw]
        templated = True
    else:
        templated = False
    if not isinstance(raw, list) or not raw:
        raise BilinError(f"{source}: 'layers' must be a non-empty list of objects or one "
                         "{i} template object")
    layers = []
    for n, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise BilinError(f"{source}: layers[{n}] must be an object, found "
                             f"{type(entry).__name__}")
        bad = [k for k in entry if k not in LAYER_FIELDS and not str(k).startswith("_")]
        if bad:
            raise BilinError(f"{source}: unknown layer key {printable(bad[0])!r}; allowed: "
                             f"{', '.join(LAYER_FIELDS)}")
        clean = {k: _name(v, f"layers[{n}].{k}", source) for k, v in entry.items()
                 if k in LAYER_FIELDS and v is not None}
        if not ("wv" in clean or ("w" in clean and "v" in clean)):
            raise BilinError(f"{source}: layers[{n}] needs either 'wv' or both 'w' and 'v'")
        if "wv" in clean and ("w" in clean or "v" in clean):
            raise BilinError(f"{source}: layers[{n}] gives both 'wv' and 'w'/'v'; pick one")
        layers.extend(_expand(clean, tensors, source) if templated else [clean])
    out: dict = {"layers": layers}
    for key in ("embed", "head", "head_bias"):
        value = _name(mapping.get(key), key, source)
        if value is not None:
            out[key] = value
    kind = mapping.get("kind")
    if kind is not None:
        if kind not in KINDS:
            raise BilinError(f"{source}: 'kind' must be one of {', '.join(KINDS)}, found "
                             f"{printable(json.dumps(kind))[:60]}")
        out["kind"] = kind
    residual = mapping.get("residual", False)
    if not isinstance(residual, bool):
        raise BilinError(f"{source}: 'residual' must be true or false")
    out["residual"] = residual
    inputs = mapping.get("inputs", 1)
    if type(inputs) is not int or inputs not in (1, 2):  # not True, not 2.0
        raise BilinError(f"{source}: 'inputs' must be 1 or 2 (a two-input form "
                         "W_p((W_l x_a) * (W_r x_b)) reads two operands)")
    if inputs == 2:
        if len(layers) != 1 or "wv" in layers[0]:
            raise BilinError(f"{source}: 'inputs': 2 is for one layer with separate 'w' and "
                             "'v' (W_l reads x_a, W_r reads x_b)")
        if mapping.get("embed") is not None:
            raise BilinError(f"{source}: 'inputs': 2 reads the operands directly; drop 'embed'")
        out["inputs"] = 2
    norm = mapping.get("norm")
    if norm is not None:
        if not isinstance(norm, dict) or set(norm) - {"kind", "gain", "bias"}:
            raise BilinError(f"{source}: 'norm' must be an object with 'kind' "
                             f"({' | '.join(NORM_KINDS)}), optional 'gain' and 'bias'")
        if norm.get("kind", "rms") not in NORM_KINDS:
            raise BilinError(f"{source}: norm kind must be one of {', '.join(NORM_KINDS)}")
        out["norm"] = {"kind": norm.get("kind", "rms")}
        for key in ("gain", "bias"):
            value = _name(norm.get(key), f"norm.{key}", source)
            if value is not None:
                out["norm"][key] = value
    final = _name(mapping.get("final_scale"), "final_scale", source)
    if final is not None:
        out["final_scale"] = final
    if mapping.get("attention") is not None:
        out["attention"] = _attention(mapping["attention"], tensors, source)
    names = [v for lay in layers for v in lay.values()]
    names += [v for lay in out.get("attention", {}).get("layers", []) for v in lay.values()]
    names += [out[k] for k in ("embed", "head", "head_bias", "final_scale") if k in out]
    names += [v.replace("{i}", "0") for k, v in out.get("norm", {}).items() if k != "kind"]
    for key in names:
        if key not in tensors:
            raise BilinError(f"{source}: {printable(key)!r} is not a tensor of this checkpoint")
    return out


def _attention(raw: object, tensors, source: str) -> dict:
    """The checked ``attention`` entry: layers expanded, ``norm`` and ``n_heads`` typed."""
    if not isinstance(raw, dict) or set(raw) - {"layers", "norm", "n_heads"} - {
            k for k in raw if str(k).startswith("_")}:
        raise BilinError(f"{source}: 'attention' must be an object with 'layers', optional "
                         "'norm' and 'n_heads'")
    entries = raw.get("layers")
    templated = isinstance(entries, dict)
    entries = [entries] if templated else entries
    if not isinstance(entries, list) or not entries:
        raise BilinError(f"{source}: attention 'layers' must be a non-empty list of objects or "
                         "one {i} template object")
    out_layers = []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise BilinError(f"{source}: attention.layers[{n}] must be an object")
        bad = [k for k in entry if k not in ATTENTION_FIELDS and not str(k).startswith("_")]
        if bad:
            raise BilinError(f"{source}: unknown attention key {printable(str(bad[0]))!r}; "
                             f"allowed: {', '.join(ATTENTION_FIELDS)}")
        clean = {k: _name(v, f"attention.layers[{n}].{k}", source) for k, v in entry.items()
                 if k in ATTENTION_FIELDS and v is not None}
        missing = [k for k in ATTENTION_FIELDS[:6] if k not in clean]
        if missing:
            raise BilinError(f"{source}: attention.layers[{n}] needs {', '.join(missing)}")
        out_layers.extend(_expand(clean, tensors, source) if templated else [clean])
    out: dict = {"layers": out_layers, "norm": raw.get("norm", "scale")}
    if out["norm"] not in ATTENTION_NORMS:
        raise BilinError(f"{source}: attention 'norm' must be one of "
                         f"{', '.join(ATTENTION_NORMS)}")
    heads = raw.get("n_heads")
    if heads is not None:
        if type(heads) is not int or heads < 1:
            raise BilinError(f"{source}: attention 'n_heads' must be a positive integer")
        out["n_heads"] = heads
    return out


class MapFile(dict):
    """A map read from a file: its errors name the file (``source``), not "map"."""

    source: str = "map"


def read_map(path: str | Path) -> dict:
    """A map file's JSON object (validated against a checkpoint later, by :func:`validate`);
    registered as an input of the running command."""
    mapping = read_json(path, "map file")
    register_input(path)
    if isinstance(mapping, dict):
        mapping = MapFile(mapping)
        mapping.source = printable(path)
    return mapping

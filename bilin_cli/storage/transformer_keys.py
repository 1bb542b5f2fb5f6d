"""Transformer parts found by rule: embedding vs unembedding, bilinear attention, norm scales.

Rules, not spellings (each is general; none is keyed to one file's names):

* **Embedding vs unembedding.** Two ``(vocab, d)`` matrices are told apart by name
  (``embed``, ``wte``, ``tok_embeddings``, ``embed_tokens``, ``word_embeddings``, ``W_E`` vs
  ``unembed``, ``lm_head``, ``output``, ``head``, ``W_U``) and, failing that, by state-dict
  order: the first is the embedding.
* **Bilinear attention.** A module holding two query and two key projections, a value and an
  output projection (``q1``/``q2``/``k1``/``k2``/``v``/``o``, with or without ``_proj``,
  ``W_`` or ``.weight``) is one block's bilinear attention.
* **Scales.** A 0-d, ``(1,)`` or ``(d,)`` parameter named like a norm (``norm``, ``ln``,
  ``scale``) in a block, read as the scale in front of its attention (``attn``, ``1``,
  ``input``) or MLP (``mlp``, ``ffn``, ``2``, ``post``), and one outside the blocks as the
  final scale. A parameter named ``scale`` (or a single number) is a *linear* map
  ``y = s x`` unless the config states a normalisation (``"norm": "rms"``, an ``eps``); a
  ``weight``/``gain`` named like a norm is an RMS norm's gain, as in LLaMA and the paper's
  models.
"""

from __future__ import annotations

import re

from bilin_cli.core.errors import BilinError
from bilin_cli.core.names import leaf_name, module_name, natural_key, parent_name
from bilin_cli.core.printable import printable

_UNEMBED = re.compile(r"unembed|lm_head|^output$|^head$|^w_?u$|^out_embed|readout|logit",
                      re.IGNORECASE)
_EMBED = re.compile(r"embed|^wte$|^tok|word_emb|^w_?e$|^emb", re.IGNORECASE)
_ROLE = re.compile(r"^(?:w_?)?(?:(q|k|query|key)_?([12])|(v|value)|(o|out|output))(?:_?proj)?$",
                   re.IGNORECASE)
_NORMISH = re.compile(r"norm|(^|[._])ln|scale|rms", re.IGNORECASE)
_BEFORE_ATTN = re.compile(r"attn|attention|1$|_1|input|pre_?attn", re.IGNORECASE)
_BEFORE_MLP = re.compile(r"mlp|ffn|ff|2$|_2|post", re.IGNORECASE)
_EPS_KEYS = ("rms_norm_eps", "norm_eps", "layer_norm_eps", "layer_norm_epsilon", "ln_eps",
             "norm_epsilon", "eps")
_NORM_KEYS = ("norm", "norm_type", "normalization", "norm_kind", "normalisation")
_HEADS_KEYS = ("n_heads", "n_head", "num_heads", "num_attention_heads", "heads", "nheads")
_DHEAD_KEYS = ("d_head", "head_dim", "head_size", "dim_head", "d_k")


# A norm's parameter is often its ``scale``, ``gain`` or ``g``, not its ``weight``: cut them
# all, so ``blocks.0.norm_mlp.scale`` is the module ``norm_mlp`` of the block ``blocks.0``.
_PARAMETERS = (".weight", ".scale", ".gain", ".g")


def _module(key: str) -> str:
    return module_name(key, _PARAMETERS)


def _leaf(key: str) -> str:
    return leaf_name(key, _PARAMETERS)


def _parent(key: str) -> str:
    return parent_name(key, _PARAMETERS)


# ------------------------------------------------------------------ embedding vs unembedding


def end_role(key: str) -> str | None:
    """``"unembed"``, ``"embed"`` or None, from the name alone (unembed checked first:
    ``unembed`` contains ``embed``)."""
    for part in (_leaf(key), _module(key).replace(".", "_")):
        if _UNEMBED.search(part):
            return "unembed"
        if _EMBED.search(part):
            return "embed"
    return None


def split_ends(candidates: list[str], order: list[str]) -> tuple[str | None, str | None, str]:
    """``(embedding, unembedding, how)`` among two ``(vocab, d)`` candidates: by name, else
    by state-dict ``order`` (the first is the embedding). Not two: ``(None, None, "")``."""
    if len(candidates) != 2:
        return None, None, ""
    a, b = candidates
    roles = {a: end_role(a), b: end_role(b)}
    if roles[a] != roles[b] and None not in roles.values():
        emb = a if roles[a] == "embed" else b
        return emb, b if emb == a else a, "by name"
    if roles[a] != roles[b]:
        named = a if roles[a] is not None else b
        other = b if named == a else a
        emb = named if roles[named] == "embed" else other
        return emb, other if emb == named else named, "by name"
    position = {k: i for i, k in enumerate(order)}
    first, second = sorted(candidates, key=lambda k: position.get(k, 0))
    return first, second, "by state-dict order (the first is the embedding)"


# ------------------------------------------------------------------------- bilinear attention


_LISTED = re.compile(r"^(?:w_?)?(q|k|query|key)(?:_?proj)?$", re.IGNORECASE)


def attention_role(key: str) -> str | None:
    """``q1``, ``q2``, ``k1``, ``k2``, ``v`` or ``o`` from a projection's name, else None;
    a ``ModuleList`` of two (``q.0``, ``q.1``) counts from 0."""
    leaf = _leaf(key)
    m = _ROLE.match(leaf)
    if m is not None:
        if m.group(1):
            return m.group(1)[0].lower() + m.group(2)
        return "v" if m.group(3) else "o"
    if leaf in ("0", "1"):
        listed = _LISTED.match(_leaf(_parent(key) + ".weight"))
        if listed:
            return listed.group(1)[0].lower() + str(int(leaf) + 1)
    return None


def _module_of(key: str) -> str:
    """The attention module a projection belongs to (a listed ``q.0`` belongs two up)."""
    parent = _parent(key)
    return _parent(parent + ".weight") if _leaf(key) in ("0", "1") else parent


def find_attention(mats: dict[str, tuple[int, ...]]) -> list[dict]:
    """Bilinear attention modules: ``[{"q1": KEY, ..., "o": KEY, "_block": PREFIX}]`` in
    natural order of their module names; only modules with all six roles and shapes that fit
    (four ``(H e, d)`` q/k projections, ``v : (H e_v, d)``, ``o : (d, H e_v)``)."""
    groups: dict[str, dict[str, list[str]]] = {}
    for key in mats:
        role = attention_role(key)
        if role is not None:
            groups.setdefault(_module_of(key), {}).setdefault(role, []).append(key)
    found = []
    for parent in sorted(groups, key=natural_key):
        roles = groups[parent]
        if set(roles) != {"q1", "q2", "k1", "k2", "v", "o"} or any(
                len(v) != 1 for v in roles.values()):
            continue
        entry = {r: roles[r][0] for r in ("q1", "q2", "k1", "k2", "v", "o")}
        qk = {mats[entry[r]] for r in ("q1", "q2", "k1", "k2")}
        v, o = mats[entry["v"]], mats[entry["o"]]
        if len(qk) != 1 or v[1] != next(iter(qk))[1] or o != (v[1], v[0]):
            continue
        entry["_block"] = _parent(parent) if "." in parent else parent
        found.append(entry)
    return found


def attention_settings(config: dict, qk_rows: int, v_rows: int, has_rotary_tensor: bool,
                       rotary_half: int | None = None):
    """Heads, head size, score scale, RoPE and mask from config.json (where stated);
    ``rotary_half``: the length of a stored RoPE ``inv_freq`` (``d_head / 2``)."""
    from bilin_cli.model.attention import AttentionSettings

    stated = []
    n_heads = _config_int(config, _HEADS_KEYS)
    d_head = _config_int(config, _DHEAD_KEYS)
    if n_heads is not None:
        stated.append("n_heads")
    if d_head is not None:
        stated.append("d_head")
    elif rotary_half and qk_rows % (2 * rotary_half) == 0:
        d_head = 2 * rotary_half
        stated.append("d_head")  # from the stored rotary frequencies
    if n_heads is None and d_head is not None and qk_rows % d_head == 0:
        n_heads = qk_rows // d_head
    if n_heads is None:
        n_heads = 1
    if qk_rows % n_heads or v_rows % n_heads:
        raise BilinError(f"config.json says {n_heads} attention heads, but the query "
                         f"projections have {qk_rows} rows and the value {v_rows}: not a whole "
                         "number of rows per head")
    if d_head is not None and d_head * n_heads != qk_rows:
        raise BilinError(f"config.json says d_head = {d_head} and {n_heads} heads, but the "
                         f"query projections have {qk_rows} rows")
    d_head = qk_rows // n_heads
    scale, scale_text = _score_scale(config, d_head, stated)
    rope = None
    for key in ("rope", "use_rope", "rotary", "use_rotary", "pos_emb", "positional",
                "position_embedding", "position_embedding_type", "pos_encoding"):
        if key in config:
            value = config[key]
            rope = value if isinstance(value, bool) else (
                isinstance(value, str) and "rot" in value.lower() or value == "rope")
            stated.append("rope")
            break
    if rope is None and (has_rotary_tensor or any(
            k in config for k in ("rope_theta", "rope_base", "rotary_base"))):
        rope = True
        stated.append("rope")
    base = 10000.0
    for key in ("rope_base", "rope_theta", "rotary_base", "rotary_emb_base"):
        if isinstance(config.get(key), (int, float)) and not isinstance(config[key], bool):
            base = float(config[key])
    causal = config.get("causal", config.get("is_causal"))
    if isinstance(causal, bool):
        stated.append("causal")
    else:
        causal = None
    return AttentionSettings(n_heads, d_head, scale, scale_text, rope, base, causal, stated)


def _config_int(config: dict, keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = config.get(key)
        if type(value) is int and value > 0:
            return value
    return None


def _score_scale(config: dict, d_head: int, stated: list[str]) -> tuple[float, str]:
    """The constant the score ``(q1.k1)(q2.k2)`` is multiplied by: ``1/d_head^2`` unless
    config.json says otherwise (a number, or a text naming ``d_head`` or ``sqrt``)."""
    for key in ("attn_scale", "attention_scale", "score_scale", "qk_scale"):
        value = config.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            stated.append("scale")
            return float(value), f"{value:g} (config.json {key})"
        if isinstance(value, str):
            text = value.replace(" ", "").lower()
            stated.append("scale")
            if "sqrt" in text:
                return 1.0 / d_head, "1/d_head (two factors of 1/sqrt(d_head))"
            if "^2" in text or "**2" in text or "squared" in text:
                return 1.0 / d_head**2, "1/d_head^2"
            if "d_head" in text or "dhead" in text:
                return 1.0 / d_head, "1/d_head"
            if text in ("1", "none", "one"):
                return 1.0, "1"
    return 1.0 / d_head**2, "1/d_head^2 (the default; config.json states none)"


# ---------------------------------------------------------------------------------- scales


def norm_reading(config: dict) -> str | None:
    """``"rms"``, ``"layer"`` or ``"scale"`` where config.json states a normalisation, else
    None (the parameters' names decide)."""
    for key in _NORM_KEYS:
        value = config.get(key)
        if isinstance(value, str):
            text = value.lower()
            if "rms" in text:
                return "rms"
            if "layer" in text:
                return "layer"
            if text in ("none", "scale", "linear", "identity", "free", "norm-free"):
                return "scale"
        if value is False or value is None and key in config:
            return "scale"
    for key in _EPS_KEYS:
        if isinstance(config.get(key), (int, float)) and not isinstance(config.get(key), bool):
            return "layer" if "layer" in key else "rms"
    return None


def is_linear_scale(key: str, shape: tuple[int, ...], config_reading: str | None) -> bool:
    """Whether a norm-like parameter acts as ``y = s x``: a single number (0-d or ``(1,)``)
    always; a ``scale`` unless the config states a normalisation."""
    if tuple(shape) in ((), (1,)):
        return True
    if config_reading is not None:
        return config_reading == "scale"
    return key.endswith(".scale") or _leaf(key).lower() == "scale"


def block_scales(vecs: dict[str, tuple[int, ...]], block: str, d: int) -> dict[str, str]:
    """``{"attn": KEY, "mlp": KEY}``: the norm-like 0-d or ``(d,)`` parameters directly in
    ``block`` (``blocks.0.norm_mlp.scale``, ``blocks.0.ln_2.weight``), by the role their name
    says; a lone unnamed one is not guessed."""
    found: dict[str, list[str]] = {"attn": [], "mlp": []}
    for key, shape in vecs.items():
        if shape not in ((), (1,), (d,)) or key.endswith(".bias") or not _NORMISH.search(key):
            continue
        if _parent(key) != block and not (_parent(_parent(key)) == block
                                          and _leaf(key) in ("norm", "ln", "scale")):
            continue
        name = _leaf(key) if _leaf(key).lower() not in ("scale", "norm") else _module(key)
        name = name[len(block) + 1:] if name.startswith(block + ".") else name
        if _BEFORE_MLP.search(name):
            found["mlp"].append(key)
        elif _BEFORE_ATTN.search(name):
            found["attn"].append(key)
    return {role: keys[0] for role, keys in found.items() if len(keys) == 1}


def final_scale(vecs: dict[str, tuple[int, ...]], blocks: set[str], d: int) -> str | None:
    """The one norm-like 0-d or ``(d,)`` parameter outside every block (``final_norm.scale``,
    ``ln_f.weight``, ``norm.weight``), else None."""
    cands = [k for k, shape in vecs.items() if shape in ((), (1,), (d,))
             and not k.endswith(".bias")
             and _NORMISH.search(k) and not any(k.startswith(b + ".") for b in blocks)]
    finals = [k for k in cands if re.search(r"final|ln_f|(^|\.)norm(\.|$)|out", k, re.I)]
    pick = finals if len(finals) == 1 else cands
    return pick[0] if len(pick) == 1 else None


def describe_scale(key: str, linear: bool, where: str) -> str:
    if linear:
        return (f"{printable(key)} read as a linear scale y = s * x in front of {where} and "
                "folded into it (config.json states no normalisation; if it is an RMS norm's "
                'gain, add "norm": "rms" to config.json)')
    return (f"{printable(key)} read as the gain of an RMS norm in front of {where} (config.json "
            'or the name says so; "norm": "scale" in config.json reads it as a linear scale)')

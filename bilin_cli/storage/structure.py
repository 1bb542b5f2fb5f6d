"""Finding bilinear layers by the shapes of a checkpoint's tensors, not by their names.

Researchers name their tensors as they like (``W_l / W_r / W_p``, ``left / right / down``,
``body.left.weight``, ``w_m / w_n / w_proj``). What every bilinear layer shares is its
structure: two sibling matrices of one shape ``(h, d)`` (the factors ``W`` and ``V``; their
order does not change the symmetrized ``Q``), or one stacked ``(2h, d)`` matrix beside its
projection, an optional ``(o, h)`` projection ``P``, biases of matching length, an
embedding ``(d, n_in)`` (or a token embedding ``(vocab, d)``) before, and a head after.

:func:`propose` returns what it found as a map, in exactly the format of ``--map``, so one
builder serves both, and ``bilin info --suggest-map`` prints the same document for a user
to edit. Where a role has more than one candidate, the proposal is marked ambiguous and
lists the candidates instead of guessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bilin_cli.core.names import leaf_name, natural_key, parent_name
from bilin_cli.core.printable import printable
from bilin_cli.storage import transformer_keys as tk
from bilin_cli.storage.containers import TensorInfo

# Names that mark attention or normalisation modules, whose equal-shaped siblings
# (q/k/v) must not be taken for a bilinear pair.
_NOT_BILINEAR = re.compile(r"attn|attention|q_proj|k_proj|v_proj|qkv|query|key|value|norm|ln",
                           re.IGNORECASE)
_HEAD_HINT = re.compile(r"head|classif|readout|unembed|logit|out$|fc_out|output", re.IGNORECASE)
_EMBED_HINT = re.compile(r"embed|wte|tok|emb|enc|input|in_proj|stem", re.IGNORECASE)
_PROJ_HINT = re.compile(r"proj|down|(^|_)(p|o|out|w2|fc2)$", re.IGNORECASE)
# An embedding and an unembedding often share a shape; they are never a factor pair.
_ENDS_HINT = re.compile(r"embed|wte|tok|lm_head|unembed|^output$|^head$|classifier",
                        re.IGNORECASE)
_NORM_HINT = re.compile(r"norm|(^|_)ln", re.IGNORECASE)
_MLP_NORM_HINT = re.compile(r"ffn|mlp|post|2", re.IGNORECASE)
_LM_HINT = re.compile(r"attn|attention|wte|embed_tokens|lm_head|rotary", re.IGNORECASE)
_OUTER_PROJ_HINT = re.compile(r"proj|down|head|out", re.IGNORECASE)


@dataclass
class Proposal:
    """A map found from structure, the roles it assigns, and what stayed ambiguous.

    ``mapping`` is None when no layer could be settled but something was ambiguous (two
    pairs that could each be the factors): the ambiguity is still worth saying."""

    mapping: dict | None
    roles: list[str] = field(default_factory=list)
    ambiguous: list[str] = field(default_factory=list)


def _bias_of(weight: str, n: int, vecs: dict[str, int]) -> str | None:
    """The 1-D bias beside ``weight`` (``x.weight`` -> ``x.bias``; ``W_l`` -> ``b_l``)."""
    if weight.endswith(".weight"):
        key = weight.removesuffix("weight") + "bias"
        return key if vecs.get(key) == n else None
    head, _, name = weight.rpartition(".")
    prefix = head + "." if head else ""
    guesses = {name.replace("weight", "bias"), name.replace("Weight", "Bias")}
    if name[:1] in "Ww":
        guesses |= {"b" + name[1:], "B" + name[1:], "bias" + name[1:]}
    guesses.discard(name)
    found = [prefix + g for g in guesses if vecs.get(prefix + g) == n]
    return found[0] if len(found) == 1 else None


def _pick(cands: list[str], hint: re.Pattern) -> str | None:
    """The one candidate, or the one whose name carries the role's hint."""
    if len(cands) == 1:
        return cands[0]
    for name in (leaf_name, str):
        hinted = [c for c in cands if hint.search(name(c))]
        if hinted:
            return hinted[0] if len(hinted) == 1 else None
    return None


def _shape(s: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in s)


def _chain_order(layers: list[dict], mats: dict) -> list[dict]:
    """Layers in the order their shapes chain (each reads what the one before writes), where
    their names carry no layer numbers to sort by."""
    if len(layers) < 2 or all(re.search(r"\d", parent_name(_factor(lay))) for lay in layers):
        return layers

    def out(lay: dict) -> int:
        return mats[lay["p"]][0] if "p" in lay else lay["_dims"][1]

    firsts = [lay for lay in layers if not any(out(o) == lay["_dims"][0]
                                               for o in layers if o is not lay)]
    if len(firsts) != 1:
        return layers
    ordered, left = [firsts[0]], [lay for lay in layers if lay is not firsts[0]]
    while left:
        nxt = [lay for lay in left if lay["_dims"][0] == out(ordered[-1])]
        if len(nxt) != 1:
            return layers
        ordered.append(nxt[0])
        left.remove(nxt[0])
    return ordered


def _mlp_norm(layers: list[dict], vecs: dict[str, int], d: int) -> dict | None:
    """The norm in front of each MLP of a language model, as a map's ``norm`` entry: a
    ``(d)`` gain named like a norm beside the MLP (``ffn_norm``, ``post_attention_layernorm``,
    ``ln_2``), the same for every layer up to the layer number."""
    templates = set()
    for i, lay in enumerate(layers):
        block = parent_name(parent_name(_factor(lay)))
        cands = [k for k, n in vecs.items() if n == d and parent_name(k) == block
                 and _NORM_HINT.search(leaf_name(k)) and not k.endswith(".bias")]
        pick = _pick(cands, _MLP_NORM_HINT) if cands else None
        if pick is None or f".{i}." not in pick + ".":
            return None
        templates.add(pick.replace(f".{i}.", ".{i}.", 1))
    if len(templates) != 1:
        return None
    gain = templates.pop()
    bias = gain.removesuffix("weight") + "bias" if gain.endswith(".weight") else None
    if bias and bias.replace("{i}", "0") in vecs:
        return {"kind": "layer", "gain": gain, "bias": bias}
    return {"kind": "rms", "gain": gain}


def _lone_stacked(mats: dict) -> tuple[str, str] | None:
    """One stacked ``(2h, d)`` factor with nothing beside it, and the one ``(o, h)`` matrix
    that reads its ``h`` products (the paper's ``blocks.0.weight`` under other names)."""
    found = _stacked_pairs([k for k in mats if not _NOT_BILINEAR.search(k)
                            and not _ENDS_HINT.search(leaf_name(k))], list(mats), mats)
    return found[0] if len(found) == 1 else None


def _stacked_pairs(factors: list[str], readers: list[str], mats: dict) -> list[tuple]:
    """(stacked, reader) pairs: a (2h, d) matrix and a matrix with h columns; by lookup, so
    a file with many tensors costs linear time. At most two are returned (one is the answer,
    two say it is ambiguous)."""
    by_cols: dict[int, list[str]] = {}
    for p in readers:
        by_cols.setdefault(mats[p][1], []).append(p)
    found = []
    for k in factors:
        if mats[k][0] % 2 == 0:
            found += [(k, p) for p in by_cols.get(mats[k][0] // 2, ()) if p != k]
            if len(found) > 1:
                break
    return found


def _factor(layer: dict) -> str:
    return layer.get("wv") or layer["w"]


def _in_blocks(parent: str, blocks: set[str]) -> bool:
    return any(parent == b or parent.startswith(b + ".") for b in blocks)


def propose(tensors: dict[str, TensorInfo], config: dict | None = None) -> Proposal | None:
    """A map for the bilinear layers found by structure, or None where there is none."""
    mats = {k: i.shape for k, i in tensors.items() if len(i.shape) == 2 and min(i.shape) > 0}
    vecs = {k: i.shape[0] for k, i in tensors.items() if len(i.shape) == 1}
    attention = tk.find_attention(mats)
    groups, in_attention = _candidate_groups(mats, attention)
    roles: list[str] = []
    ambiguous: list[str] = []
    layers, used = _group_layers(groups, mats, vecs, ambiguous)
    if not layers:
        lone = _lone_layer(mats, vecs)
        if lone is None:
            return Proposal(None, roles, ambiguous) if ambiguous else None
        layers = [lone]
        used.update((lone["wv"], lone["p"]))
        roles.append("a stacked factor alone under its prefix, read by the one matrix "
                     "with half as many columns as it has rows")
    layers = _chain_order(layers, mats)
    _drop_headless_last(layers, mats, used, ambiguous)

    rest = sorted((k for k in mats if k not in used and k not in in_attention
                   and not _NOT_BILINEAR.search(k)), key=natural_key)
    d0 = layers[0]["_dims"][0]
    last = layers[-1]
    if "p" not in last:
        _outer_projection(last, rest, mats, vecs, ambiguous)
    o_last = mats[last["p"]][0] if "p" in last else last["_dims"][1]
    lm_like = bool(attention) or any(_LM_HINT.search(k) for k in tensors)
    embed, head = _embedding_and_head(rest, mats, list(tensors), (d0, o_last), lm_like,
                                      roles, ambiguous)
    mapping = _assemble(layers, embed, head, mats, vecs, _kind(layers, embed, mats, d0, lm_like),
                        roles)
    if mapping["kind"] == "lm":
        _transformer_parts(mapping, tensors, config or {}, attention, d0, roles)
    return Proposal(mapping, roles, ambiguous)


# ---------------------------------------------------------------- the layers, group by group


def _candidate_groups(mats: dict, attention: list[dict]) -> tuple[dict[str, list[str]], set[str]]:
    """``({parent: [matrix keys]}, attention keys)``: the matrices grouped by the module they
    sit in, the ones that can hold an MLP's factors only, and every attention projection."""
    # Where a file has transformer blocks, MLP factors live inside them: an equal-shaped
    # pair outside every block is an embedding beside an unembedding, not a layer.
    blocks = {a["_block"] for a in attention}
    in_attention = {v for a in attention for r, v in a.items() if not r.startswith("_")}
    groups: dict[str, list[str]] = {}
    for k in mats:
        if attention and (k in in_attention or not _in_blocks(parent_name(k), blocks)):
            continue
        groups.setdefault(parent_name(k), []).append(k)
    return groups, in_attention


def _group_layers(groups: dict[str, list[str]], mats: dict, vecs: dict[str, int],
                  ambiguous: list[str]) -> tuple[list[dict], set[str]]:
    """``(layers, used)``: one layer per group that holds one, in natural order of the
    groups' names, and every matrix key those layers took."""
    layers: list[dict] = []
    used: set[str] = set()
    for parent in sorted(groups, key=natural_key):
        if _NOT_BILINEAR.search(parent):
            continue
        layer = _group_layer(parent, sorted(groups[parent], key=natural_key), mats, vecs,
                             ambiguous)
        if layer is not None:
            layers.append(layer)
            used.update(layer[k] for k in ("w", "v", "wv", "p") if k in layer)
    return layers, used


def _group_layer(parent: str, keys: list[str], mats: dict, vecs: dict[str, int],
                 ambiguous: list[str]) -> dict | None:
    """The layer in one group (its factors, biases and projection, and ``_dims`` = (d, h)),
    or None where the group holds none or several could be the factors."""
    pairs, crowds = _equal_shapes(keys, mats)
    found = _factors(keys, pairs, crowds, mats)
    if found is None:
        if len(pairs) > 1:
            shown = [k for ks in pairs + crowds for k in ks]
            ambiguous.append(
                f"under {printable(parent or '(top level)')!r} several pairs of equal "
                f"shape could be the factors: {', '.join(map(printable, shown[:8]))}")
        return None
    layer, (d, h), projs = found
    _attach_factor_biases(layer, h, vecs)
    p = _group_projection(parent, projs, ambiguous)
    if p is not None:
        _attach_projection(layer, p, mats, vecs)
    layer["_dims"] = (d, h)
    return layer


def _equal_shapes(keys: list[str], mats: dict) -> tuple[list[list[str]], list[list[str]]]:
    """``(pairs, crowds)``: the group's matrices that share a shape two by two (neither named
    like an embedding or a head), and three or more to a shape."""
    by_shape: dict[tuple, list[str]] = {}
    for k in keys:
        if not _NOT_BILINEAR.search(leaf_name(k)):
            by_shape.setdefault(mats[k], []).append(k)
    pairs = [ks for ks in by_shape.values() if len(ks) == 2
             and not any(_ENDS_HINT.search(leaf_name(k)) for k in ks)]
    crowds = [ks for ks in by_shape.values() if len(ks) > 2]
    if not pairs and len(crowds) == 1 and len(crowds[0]) == 3:
        # Square layers (d = h = o): the factors and the projection share one shape;
        # the projection's name tells them apart (down, proj, W_p, out, ...).
        hinted = [k for k in crowds[0] if _PROJ_HINT.search(leaf_name(k))]
        if len(hinted) == 1:
            pairs, crowds = [[k for k in crowds[0] if k != hinted[0]]], []
    return pairs, crowds


def _factors(keys: list[str], pairs: list[list[str]], crowds: list[list[str]],
             mats: dict) -> tuple[dict, tuple[int, int], list[str]] | None:
    """``(layer, (d, h), projection candidates)`` for a group with exactly one factor pair,
    or with one stacked ``(2h, d)`` factor beside its ``(o, h)`` projection; else None."""
    if len(pairs) == 1 and not crowds:
        w, v = pairs[0]
        h, d = mats[w]
        return {"w": w, "v": v}, (d, h), [k for k in keys if k not in (w, v) and mats[k][1] == h]
    if not pairs and not crowds:
        stacked = _stacked_pairs(keys, keys, mats)
        if len(stacked) == 1:
            wv, p = stacked[0]
            return {"wv": wv}, (mats[wv][1], mats[wv][0] // 2), [p]
    return None


def _attach_factor_biases(layer: dict, h: int, vecs: dict[str, int]) -> None:
    """Adds the factors' biases that lie beside them to ``layer`` (W's before V's)."""
    if "wv" in layer:
        sides = (("wv", "wv_bias", 2 * h),)
    else:
        sides = (("w", "w_bias", h), ("v", "v_bias", h))
    for factor, role, n in sides:
        b = _bias_of(layer[factor], n, vecs)
        if b:
            layer[role] = b


def _group_projection(parent: str, projs: list[str], ambiguous: list[str]) -> str | None:
    """The projection among a group's candidates: the one there is, the one named like a
    projection, else the first (noted as ambiguous); None where there is none."""
    if len(projs) > 1:
        pick = _pick(projs, _PROJ_HINT)
        if pick is None:
            ambiguous.append(f"layer {printable(parent or '(top level)')!r}: several "
                             f"projections could follow: {', '.join(map(printable, projs))}")
            return projs[0]
        return pick
    return projs[0] if projs else None


def _attach_projection(layer: dict, p: str, mats: dict, vecs: dict[str, int]) -> None:
    """Sets ``p`` as ``layer``'s projection, with its bias where one lies beside it."""
    layer["p"] = p
    b = _bias_of(p, mats[p][0], vecs)
    if b:
        layer["p_bias"] = b


def _lone_layer(mats: dict, vecs: dict[str, int]) -> dict | None:
    """The one layer of a file whose groups hold none: a stacked factor alone, read by the
    one matrix with half as many columns as it has rows; None where there is not one."""
    lone = _lone_stacked(mats)
    if lone is None:
        return None
    wv, p = lone
    layer = {"wv": wv, "p": p, "_dims": (mats[wv][1], mats[wv][0] // 2)}
    b = _bias_of(wv, mats[wv][0], vecs)
    if b:
        layer["wv_bias"] = b
    return layer


def _drop_headless_last(layers: list[dict], mats: dict, used: set[str],
                        ambiguous: list[str]) -> None:
    """Removes a last factor pair that no matrix reads, noting it as ambiguous."""
    last = layers[-1]
    if len(layers) > 1 and "p" not in last and "w" in last:
        h_last = last["_dims"][1]
        readers = [k for k in mats if k not in used and mats[k][1] == h_last]
        if not readers:
            # Two equal matrices reading the layer below and read by nothing: the last layer
            # of a headless stack, or two heads side by side. Say so rather than guess.
            ambiguous.append(f"{printable(last['w'])} and {printable(last['v'])} could be "
                             "the factors of a last bilinear layer or two heads")
            layers.pop()
            used.difference_update((last["w"], last["v"]))


def _outer_projection(last: dict, rest: list[str], mats: dict, vecs: dict[str, int],
                      ambiguous: list[str]) -> None:
    """Gives the last layer the projection found only outside its group (a down projection
    or the head itself), and takes it out of ``rest``."""
    h_last = last["_dims"][1]
    projs = _readers_of(h_last, rest, mats)
    pick = _pick_or_first(projs, _OUTER_PROJ_HINT, ambiguous,
                          f"several matrices could read the last layer's {h_last} hidden units",
                          8)
    if pick:
        _attach_projection(last, pick, mats, vecs)
        rest.remove(pick)


def _readers_of(h: int, rest: list[str], mats: dict) -> list[str]:
    """The matrices of ``rest`` that read ``h`` hidden units; of several, the one whose
    output another of them reads (a down projection before its head), where there is one."""
    projs = [k for k in rest if mats[k][1] == h]
    if len(projs) > 1:
        rows = {mats[b][1] for b in projs}
        chained = [a for a in projs if mats[a][0] in rows
                   and any(b != a and mats[b][1] == mats[a][0] for b in projs)]
        projs = chained if len(chained) == 1 else projs
    return projs


def _pick_or_first(cands: list[str], hint: re.Pattern, ambiguous: list[str], doubt: str,
                   shown: int | None = None) -> str | None:
    """The candidate :func:`_pick` settles on; failing that the first, with ``doubt`` and
    (the first ``shown`` of) the candidates noted as ambiguous. None where there is none."""
    if not cands:
        return None
    pick = _pick(cands, hint)
    if pick is None:
        ambiguous.append(f"{doubt}: {', '.join(map(printable, cands[:shown]))}")
        pick = cands[0]
    return pick


# ------------------------------------------------------------------ embedding and head


def _embedding_and_head(rest: list[str], mats: dict, order: list[str], dims: tuple[int, int],
                        lm_like: bool, roles: list[str],
                        ambiguous: list[str]) -> tuple[str | None, str | None]:
    """``(embedding, head)`` among the matrices no layer took; ``dims`` = (what layer 0
    reads, what the last layer writes)."""
    d0, o_last = dims
    ends = [k for k in rest if mats[k][1] == d0 and mats[k][0] != d0]
    if (len(ends) == 2 and mats[ends[0]] == mats[ends[1]] and o_last == d0
            and (lm_like or all(tk.end_role(k) for k in ends))):
        # Untied embedding and unembedding of one shape: by name, else by order.
        embed, head, how = tk.split_ends(ends, order)
        roles.append(f"embedding {printable(embed)} and unembedding {printable(head)} told "
                     f"apart {how}")
        return embed, head
    return _embedding_and_head_by_shape(rest, mats, d0, o_last, lm_like, ambiguous)


def _embedding_and_head_by_shape(rest: list[str], mats: dict, d0: int, o_last: int,
                                 lm_like: bool,
                                 ambiguous: list[str]) -> tuple[str | None, str | None]:
    """``(embedding, head)``: a matrix that writes layer 0's input (or, in a language model,
    reads the residual stream) and one that reads the last layer's output, by name where
    several fit."""
    embeds = [k for k in rest if mats[k][0] == d0 or (mats[k][1] == d0 and lm_like)]
    heads = [k for k in rest if mats[k][1] == o_last and k not in embeds]
    if not heads:
        heads = [k for k in rest if mats[k][1] == o_last]
    embed = _pick_or_first(embeds, _EMBED_HINT, ambiguous,
                           "several matrices could be the embedding", 8)
    heads = [k for k in heads if k != embed]
    head = _pick_or_first(heads, _HEAD_HINT, ambiguous, "several matrices could be the head")
    return embed, head


# ---------------------------------------------------------------------------- the map


def _kind(layers: list[dict], embed: str | None, mats: dict, d0: int, lm_like: bool) -> str:
    """``"lm"`` for a token embedding ``(vocab, d)`` or a stack of layers that all project
    back, in a file named like a language model; else ``"classifier"``."""
    token_embed = embed is not None and mats[embed][1] == d0 and mats[embed][0] != d0
    if token_embed or (lm_like and len(layers) > 1 and all("p" in lay for lay in layers)):
        return "lm"
    return "classifier"


def _assemble(layers: list[dict], embed: str | None, head: str | None, mats: dict,
              vecs: dict[str, int], kind: str, roles: list[str]) -> dict:
    """The map (``kind``, ``embed``, ``head``, ``head_bias``, ``layers``), each part's role
    added to ``roles``; the layers lose their ``_dims``."""
    mapping: dict = {"kind": kind}
    if embed:
        mapping["embed"] = embed
        roles.append(f"embedding {printable(embed)} ({_shape(mats[embed])})")
    if head:
        mapping["head"] = head
        b = _bias_of(head, mats[head][0], vecs)
        if b:
            mapping["head_bias"] = b
    for i, lay in enumerate(layers):
        d, h = lay.pop("_dims")
        tag = f"layer {i}: " if len(layers) > 1 else ""
        roles.append(tag + _describe_layer(lay, mats, d, h))
    if head:
        roles.append(f"head {printable(head)} ({_shape(mats[head])})")
    mapping["layers"] = layers
    return mapping


def _describe_layer(lay: dict, mats: dict, d: int, h: int) -> str:
    """One layer's factors, biases and projection, as the roles list shows them."""
    if "wv" in lay:
        text = f"W;V = {printable(lay['wv'])} ({_shape(mats[lay['wv']])}, stacked)"
    else:
        text = (f"W = {printable(lay['w'])}, V = {printable(lay['v'])} ({h}x{d} each)")
    if any(k.endswith("bias") for k in lay):
        text += ", biases " + ", ".join(printable(lay[k]) for k in sorted(lay)
                                        if k.endswith("bias"))
    if "p" in lay:
        text += f", P = {printable(lay['p'])} ({_shape(mats[lay['p']])})"
    return text


# ------------------------------------------------------------------ transformer parts


def _template(keys: list[str | None]) -> str | None:
    """``blocks.{i}.norm_mlp.scale`` from one key per layer, if they differ only there."""
    if not keys or any(k is None or f".{i}." not in k + "." for i, k in enumerate(keys)):
        return None
    found = {k.replace(f".{i}.", ".{i}.", 1) for i, k in enumerate(keys)}
    return found.pop() if len(found) == 1 else None


def _transformer_parts(mapping: dict, tensors: dict[str, TensorInfo], config: dict,
                       attention: list[dict], d: int, roles: list[str]) -> None:
    """A language model's norms or linear scales, bilinear attention and final scale."""
    layers = mapping["layers"]
    vecs = {k: i.shape[0] for k, i in tensors.items() if len(i.shape) == 1}
    small = {k: i.shape for k, i in tensors.items() if len(i.shape) <= 1}
    reading = tk.norm_reading(config)
    norm = _mlp_norm(layers, vecs, d)
    blocks = [parent_name(parent_name(_factor(lay))) for lay in layers]
    scales = {b: tk.block_scales(small, b, d) for b in blocks}
    if norm is None:
        gain = _template([scales[b].get("mlp") for b in blocks])
        if gain is not None:
            first = gain.replace("{i}", "0")
            linear = tk.is_linear_scale(first, tensors[first].shape, reading)
            norm = {"kind": "scale" if linear else (reading or "rms"), "gain": gain}
            roles.append(tk.describe_scale(gain, linear, "each MLP"))
    elif reading == "scale":
        norm = {"kind": "scale", "gain": norm["gain"]}
    if norm:
        mapping["norm"] = norm
        if norm["kind"] != "scale":
            roles.append(f"norm in front of each MLP: {norm['kind']}, gain "
                         f"{printable(norm['gain'])}")
    if attention:
        entries = []
        for a in attention:
            entry = {k: v for k, v in a.items() if not k.startswith("_")}
            pre = tk.block_scales(small, a["_block"], d).get("attn")
            if pre is not None:
                entry["scale"] = pre
            entries.append(entry)
        pre_keys = [e.get("scale") for e in entries]
        att: dict = {"layers": entries}
        if any(pre_keys):
            first = next(k for k in pre_keys if k)
            linear = tk.is_linear_scale(first, tensors[first].shape, reading)
            att["norm"] = "scale" if linear else "rms"
            roles.append(tk.describe_scale(_template(pre_keys) or first, linear,
                                           "each attention"))
        mapping["attention"] = att
        roles.append(f"bilinear attention in {len(entries)} block"
                     f"{'s' if len(entries) != 1 else ''}: "
                     f"{printable(entries[0]['q1'])}, ... {printable(entries[0]['o'])}")
    top = tk.final_scale(small, set(blocks) | {a["_block"] for a in attention}, d)
    if top is not None and tk.is_linear_scale(top, tensors[top].shape, reading):
        mapping["final_scale"] = top
        roles.append(tk.describe_scale(top, True, "the unembedding"))

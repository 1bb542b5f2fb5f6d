"""Direct unit tests of ``bilin_cli.storage.structure.propose``: small synthetic
tensor-name/shape dicts (Hugging Face llama names, the paper's MNIST and transformer names,
nn.Sequential names, research-code names) and the map it proposes; the proposal is a valid
``--map`` that loads the layer bilin's reference math expects."""

from __future__ import annotations

import random

import numpy as np
import pytest
from conftest import Ref, reference_eigvals
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

import bilin_cli as bilin
from bilin_cli.storage.containers import TensorInfo, open_checkpoint
from bilin_cli.storage.maps import validate
from bilin_cli.storage.structure import Proposal, propose


def infos(shapes: dict[str, tuple]) -> dict[str, TensorInfo]:
    return {k: TensorInfo(tuple(v), "F32") for k, v in shapes.items()}


def proposed(shapes: dict[str, tuple], config: dict | None = None) -> Proposal:
    found = propose(infos(shapes), config)
    assert found is not None
    # whatever it proposes is a map --map accepts for these tensors
    validate(found.mapping, shapes, "proposal")
    return found


def no_control(texts: list[str]) -> None:
    for t in texts:
        assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in t), repr(t)


def factor_names(layer: dict) -> set[str]:
    return {layer["w"], layer["v"]} if "w" in layer else {layer["wv"]}


def reader(mapping: dict) -> str:
    """What reads the (one) layer's hidden units: its p, else the head."""
    return mapping["layers"][-1].get("p") or mapping["head"]


# ---------------------------------------------------------------------------- layouts


def llama_shapes(n_layer=2, d=8, h=12, vocab=9) -> dict:
    t = {"model.embed_tokens.weight": (vocab, d), "lm_head.weight": (vocab, d),
         "model.norm.weight": (d,)}
    for i in range(n_layer):
        p = f"model.layers.{i}."
        t.update({p + "mlp.gate_proj.weight": (h, d), p + "mlp.up_proj.weight": (h, d),
                  p + "mlp.down_proj.weight": (d, h)})
        for q in ("q", "k", "v", "o"):
            t[p + f"self_attn.{q}_proj.weight"] = (d, d)
        t[p + "input_layernorm.weight"] = (d,)
        t[p + "post_attention_layernorm.weight"] = (d,)
    return t


def test_hf_llama_names():
    found = proposed(llama_shapes())
    m = found.mapping
    assert m["kind"] == "lm"
    assert m["embed"] == "model.embed_tokens.weight" and m["head"] == "lm_head.weight"
    assert len(m["layers"]) == 2
    for i, lay in enumerate(m["layers"]):
        pre = f"model.layers.{i}.mlp."
        assert factor_names(lay) == {pre + "gate_proj.weight", pre + "up_proj.weight"}
        assert lay["p"] == pre + "down_proj.weight"
    # the norm in front of each MLP is the post-attention one, not the input or final norm
    assert m["norm"] == {"kind": "rms", "gain": "model.layers.{i}.post_attention_layernorm.weight"}
    # attention projections are never taken as factors
    used = {v for lay in m["layers"] for v in lay.values()}
    assert not any("self_attn" in k for k in used)
    assert found.ambiguous == []


def test_the_papers_mnist_names():
    shapes = {"embed.weight": (8, 16), "blocks.0.weight": (16, 8), "head.weight": (3, 8)}
    m = proposed(shapes).mapping
    assert m["kind"] == "classifier"
    assert m["embed"] == "embed.weight"
    assert m["layers"][0]["wv"] == "blocks.0.weight" and "w" not in m["layers"][0]
    assert reader(m) == "head.weight"


def test_the_papers_mnist_with_biases():
    shapes = {"embed.weight": (8, 16), "blocks.0.weight": (16, 8), "blocks.0.bias": (16,),
              "head.weight": (3, 8)}
    m = proposed(shapes).mapping
    assert m["layers"][0]["wv_bias"] == "blocks.0.bias"


def test_the_papers_transformer_names():
    t = {"transformer.wte.weight": (11, 8), "lm_head.weight": (11, 8)}
    for i in range(3):
        p = f"transformer.h.{i}."
        t.update({p + "attn.qkv.weight": (24, 8), p + "attn.o.weight": (8, 8),
                  p + "n1.weight": (8,), p + "mlp.w.weight": (32, 8), p + "mlp.p.weight": (8, 16)})
    m = proposed(t).mapping
    assert m["kind"] == "lm"
    assert m["embed"] == "transformer.wte.weight" and m["head"] == "lm_head.weight"
    assert [lay["wv"] for lay in m["layers"]] == [f"transformer.h.{i}.mlp.w.weight"
                                                  for i in range(3)]
    assert [lay["p"] for lay in m["layers"]] == [f"transformer.h.{i}.mlp.p.weight"
                                                 for i in range(3)]


@pytest.mark.parametrize("prefix", ["", "net.", "model.body."])
def test_nn_sequential_names(prefix):
    shapes = {f"{prefix}0.weight": (8, 16), f"{prefix}1.weight": (6, 8),
              f"{prefix}2.weight": (6, 8), f"{prefix}3.weight": (3, 6)}
    m = proposed(shapes).mapping
    assert m["kind"] == "classifier"
    assert m["embed"] == f"{prefix}0.weight"
    assert factor_names(m["layers"][0]) == {f"{prefix}1.weight", f"{prefix}2.weight"}
    assert reader(m) == f"{prefix}3.weight"


def test_sequential_of_named_modules():
    shapes = {"net.0.weight": (8, 16), "net.1.left.weight": (6, 8),
              "net.1.right.weight": (6, 8), "net.2.weight": (3, 6)}
    m = proposed(shapes).mapping
    assert m["embed"] == "net.0.weight"
    assert factor_names(m["layers"][0]) == {"net.1.left.weight", "net.1.right.weight"}
    assert reader(m) == "net.2.weight"


@pytest.mark.parametrize("names", [("left.weight", "right.weight", "head.weight"),
                                   ("W_l", "W_r", "W_p"),
                                   ("mlp.w_m", "mlp.w_n", "mlp.w_proj"),
                                   ("body.left.weight", "body.right.weight", "body.down.weight")])
def test_research_code_names(names):
    w, v, p = names
    m = proposed({w: (6, 4), v: (6, 4), p: (3, 6)}).mapping
    assert factor_names(m["layers"][0]) == {w, v}
    assert reader(m) == p
    assert "embed" not in m


def test_biases_beside_their_weights():
    shapes = {"body.left.weight": (6, 4), "body.right.weight": (6, 4),
              "body.left.bias": (6,), "body.right.bias": (6,),
              "body.down.weight": (3, 6), "body.down.bias": (3,)}
    lay = proposed(shapes).mapping["layers"][0]
    assert lay["w"] == "body.left.weight" and lay["w_bias"] == "body.left.bias"
    assert lay["v"] == "body.right.weight" and lay["v_bias"] == "body.right.bias"
    assert lay["p"] == "body.down.weight" and lay["p_bias"] == "body.down.bias"


def test_research_biases_b_l_b_r():
    shapes = {"W_l": (6, 4), "W_r": (6, 4), "W_p": (3, 6), "b_l": (6,), "b_r": (6,)}
    lay = proposed(shapes).mapping["layers"][0]
    assert {(lay["w"], lay["w_bias"]), (lay["v"], lay["v_bias"])} == {("W_l", "b_l"),
                                                                     ("W_r", "b_r")}


def test_a_bias_of_the_wrong_length_is_not_taken():
    shapes = {"body.left.weight": (6, 4), "body.right.weight": (6, 4),
              "body.left.bias": (5,), "body.down.weight": (3, 6)}
    lay = proposed(shapes).mapping["layers"][0]
    assert "w_bias" not in lay and "v_bias" not in lay


@pytest.mark.parametrize("order", [("first", "second"), ("b", "a")])
def test_layers_without_numbers_chain_by_shape(order):
    one, two = order  # `one` reads the input, `two` reads what `one` writes
    shapes = {f"{two}.left": (7, 5), f"{two}.right": (7, 5), f"{two}.down": (3, 7),
              f"{one}.left": (6, 4), f"{one}.right": (6, 4), f"{one}.down": (5, 6)}
    m = proposed(shapes).mapping
    assert [lay["p"] for lay in m["layers"]] == [f"{one}.down", f"{two}.down"]


def test_numbered_layers_sort_naturally():
    shapes = {}
    for i in (10, 2, 1):  # 1 < 2 < 10, not "1" < "10" < "2"
        shapes.update({f"blocks.{i}.left": (4, 4), f"blocks.{i}.right": (4, 4),
                       f"blocks.{i}.down": (4, 4)})
    m = proposed(shapes).mapping
    assert [lay["p"] for lay in m["layers"]] == ["blocks.1.down", "blocks.2.down",
                                                 "blocks.10.down"]


def test_square_layer_told_apart_by_the_projection_name():
    m = proposed({"W": (4, 4), "V": (4, 4), "W_p": (4, 4)}).mapping
    assert factor_names(m["layers"][0]) == {"W", "V"} and reader(m) == "W_p"


def test_fully_bilinear_transformer_names():
    d, h, vocab, hd = 8, 16, 11, 4
    t = {"embed.weight": (vocab, d), "unembed.weight": (vocab, d), "final_norm.scale": ()}
    for i in range(2):
        p = f"blocks.{i}."
        for q in ("q1", "q2", "k1", "k2", "v"):
            t[p + f"attn.{q}_proj.weight"] = (hd, d)
        t[p + "attn.o_proj.weight"] = (d, hd)
        t.update({p + "mlp.w_m.weight": (h, d), p + "mlp.w_n.weight": (h, d),
                  p + "mlp.w_proj.weight": (d, h), p + "norm_attn.scale": (),
                  p + "norm_mlp.scale": ()})
    m = proposed(t).mapping
    assert m["kind"] == "lm" and m["embed"] == "embed.weight" and m["head"] == "unembed.weight"
    assert [lay["p"] for lay in m["layers"]] == ["blocks.0.mlp.w_proj.weight",
                                                 "blocks.1.mlp.w_proj.weight"]
    att = m["attention"]["layers"]
    assert [a["q1"] for a in att] == ["blocks.0.attn.q1_proj.weight",
                                      "blocks.1.attn.q1_proj.weight"]
    assert att[0]["o"] == "blocks.0.attn.o_proj.weight"
    assert m["norm"]["gain"] == "blocks.{i}.norm_mlp.scale"
    assert m["final_scale"] == "final_norm.scale"


# ---------------------------------------------------------------------------- nothing / ambiguous


@pytest.mark.parametrize("shapes", [
    {"a.weight": (6, 4), "b.weight": (3, 5)},  # no pair, nothing stacked
    {"attn.q": (6, 4), "attn.k": (6, 4), "head": (3, 6)},  # an attention pair is no layer
    {"enc.0.weight": (8, 16), "enc.1.weight": (3, 8)},  # a plain MLP
    {"scalar": (), "vector": (4,)},
    {},
])
def test_no_bilinear_structure_is_none(shapes):
    assert propose(infos(shapes)) is None


def test_two_candidate_heads_are_marked_ambiguous_and_listed():
    shapes = {"enc.weight": (8, 16), "mlp.a": (6, 8), "mlp.b": (6, 8), "mlp.down": (8, 6),
              "x1": (3, 8), "x2": (3, 8)}
    found = propose(infos(shapes))
    assert found is not None and found.ambiguous
    text = " ".join(found.ambiguous)
    assert "x1" in text and "x2" in text
    assert factor_names(found.mapping["layers"][0]) == {"mlp.a", "mlp.b"}


def test_names_in_roles_and_ambiguities_are_escaped():
    shapes = {"\x1b[31mx1": (3, 8), "x2": (3, 8), "enc.weight": (8, 16), "mlp.a": (6, 8),
              "mlp.b": (6, 8), "mlp.down": (8, 6)}
    found = propose(infos(shapes))
    assert found.ambiguous
    no_control(found.roles + found.ambiguous)
    assert any("\\x1b" in a for a in found.ambiguous)
    # the map itself keeps the real name (it must name the tensor)
    assert found.mapping["head"] == "\x1b[31mx1"


def test_roles_describe_each_part():
    found = proposed({"embed.weight": (8, 16), "blocks.0.weight": (16, 8),
                      "head.weight": (3, 8)})
    text = "\n".join(found.roles)
    assert "embed.weight (8x16)" in text and "blocks.0.weight (16x8, stacked)" in text


# ---------------------------------------------------------------------------- properties


FAMILIES = [("left", "right", "down"), ("W_l", "W_r", "W_p"), ("w_m", "w_n", "w_proj"),
            ("gate_proj", "up_proj", "down_proj"), ("a", "b", "out")]


@settings(max_examples=40, derandomize=True, database=None, deadline=None)
@given(family=st.sampled_from(FAMILIES), dims=st.lists(st.integers(2, 40), min_size=3,
                                                      max_size=3, unique=True),
       prefix=st.sampled_from(["", "mlp.", "model.ffn.", "layer0."]),
       suffix=st.sampled_from(["", ".weight"]), seed=st.integers(0, 1000))
def test_a_named_family_is_found_whatever_the_dims_and_order(family, dims, prefix, suffix,
                                                             seed):
    d, h, o = dims
    w, v, p = (prefix + n + suffix for n in family)
    items = [(w, (h, d)), (v, (h, d)), (p, (o, h))]
    random.Random(seed).shuffle(items)
    found = proposed(dict(items))
    assert factor_names(found.mapping["layers"][0]) == {w, v}
    assert reader(found.mapping) == p
    # the proposal does not depend on the order of the file's tensors
    again = propose(infos(dict(reversed(items))))
    assert again.mapping == found.mapping


# ---------------------------------------------------------------------------- end to end


def test_proposal_loads_the_layer_the_reference_expects(tmp_path):
    """A checkpoint with research-code names: propose from its headers, load with that map
    (and without, by structure): Q's eigenvalues are the reference's."""
    r = np.random.default_rng(0)
    W, V, P = (r.standard_normal(s).astype(np.float32) for s in ((6, 4), (6, 4), (3, 6)))
    b_l, b_r = (r.standard_normal(6).astype(np.float32) for _ in range(2))
    path = tmp_path / "odd.safetensors"
    save_file({"W_l": W, "W_r": V, "W_p": P, "b_l": b_l, "b_r": b_r}, str(path))
    ckpt = open_checkpoint(path)
    mapping = propose(ckpt.tensors, ckpt.config).mapping
    ref = Ref(*(a.astype(np.float64) for a in (W, V, P)), b_w=b_l.astype(np.float64),
              b_v=b_r.astype(np.float64))
    u = np.array([0.3, -1.0, 0.5])
    expected = reference_eigvals(ref, u)
    for model in (bilin.load(path, map=mapping), bilin.load(path)):
        got = bilin.eig(model, direction=u, top=None, dtype=np.float64).eigenvalues
        np.testing.assert_allclose(got, expected, atol=1e-5)
    assert any("recognised by structure" in n for n in bilin.load(path).notes)

"""Direct unit tests of ``bilin_cli.storage.maps``: ``validate`` on valid and invalid maps
(each error message), ``read_map`` on files, and ``--map`` through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import reference_eigvals, write_toy
from hypothesis import given, settings
from hypothesis import strategies as st

from bilin_cli.core.errors import BilinError
from bilin_cli.storage.containers import TensorInfo
from bilin_cli.storage.maps import LAYER_FIELDS, TOP_FIELDS, read_map, validate

SRC = "m.json"


def tensors(*names: str) -> dict[str, TensorInfo]:
    return {n: TensorInfo((2, 2), "F32") for n in names}


BASE = tensors("left", "right", "down", "head", "embed", "b_l", "b_r", "b_p", "stacked",
               "stacked_b", "head_b", "final", "norm.gain", "norm.bias",
               *(f"blocks.{i}.{r}" for i in range(3) for r in ("w", "v", "p", "g")),
               *(f"att.{i}.{r}" for i in range(2) for r in ("q1", "q2", "k1", "k2", "v", "o",
                                                            "s")))


def check(mapping) -> dict:
    return validate(mapping, BASE, SRC)


def fails(mapping, says: str) -> str:
    with pytest.raises(BilinError) as exc:
        check(mapping)
    msg = str(exc.value)
    assert msg.startswith(f"{SRC}: "), msg
    assert says in msg, msg
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------------------- valid maps


def test_a_minimal_map_is_normalised():
    out = check({"layers": [{"w": "left", "v": "right"}]})
    assert out == {"layers": [{"w": "left", "v": "right"}], "residual": False}


def test_every_field():
    mapping = {
        "_comment": "ignored", "kind": "classifier", "residual": True, "embed": "embed",
        "head": "head", "head_bias": "head_b", "final_scale": "final",
        "layers": [{"w": "left", "v": "right", "p": "down", "w_bias": "b_l", "v_bias": "b_r",
                    "p_bias": "b_p", "_why": "a comment"},
                   {"wv": "stacked", "wv_bias": "stacked_b"}],
        "norm": {"kind": "layer", "gain": "norm.gain", "bias": "norm.bias"},
    }
    out = check(mapping)
    assert "_comment" not in out
    assert out["layers"][0] == {"w": "left", "v": "right", "p": "down", "w_bias": "b_l",
                                "v_bias": "b_r", "p_bias": "b_p"}
    assert out["layers"][1] == {"wv": "stacked", "wv_bias": "stacked_b"}
    assert out["residual"] is True and out["kind"] == "classifier"
    assert out["norm"] == {"kind": "layer", "gain": "norm.gain", "bias": "norm.bias"}
    for k in ("embed", "head", "head_bias", "final_scale"):
        assert out[k] == mapping[k]


def test_null_values_are_left_out():
    out = check({"layers": [{"w": "left", "v": "right", "p": None}], "embed": None})
    assert out["layers"] == [{"w": "left", "v": "right"}] and "embed" not in out


def test_a_template_expands_over_every_layer_present():
    out = check({"layers": {"w": "blocks.{i}.w", "v": "blocks.{i}.v", "p": "blocks.{i}.p"}})
    assert out["layers"] == [{"w": f"blocks.{i}.w", "v": f"blocks.{i}.v", "p": f"blocks.{i}.p"}
                             for i in range(3)]


def test_a_norm_template_is_checked_at_layer_0():
    out = check({"layers": {"w": "blocks.{i}.w", "v": "blocks.{i}.v"},
                 "norm": {"gain": "blocks.{i}.g"}})
    assert out["norm"] == {"kind": "rms", "gain": "blocks.{i}.g"}  # rms by default
    fails({"layers": [{"w": "left", "v": "right"}], "norm": {"gain": "nope.{i}.g"}},
          "'nope.0.g' is not a tensor of this checkpoint")


def test_attention_entry():
    att = {"layers": {"q1": "att.{i}.q1", "q2": "att.{i}.q2", "k1": "att.{i}.k1",
                      "k2": "att.{i}.k2", "v": "att.{i}.v", "o": "att.{i}.o",
                      "scale": "att.{i}.s"},
           "norm": "rms", "n_heads": 2}
    out = check({"layers": [{"w": "left", "v": "right"}], "attention": att})
    assert [a["q1"] for a in out["attention"]["layers"]] == ["att.0.q1", "att.1.q1"]
    assert out["attention"]["norm"] == "rms" and out["attention"]["n_heads"] == 2
    # norm defaults to a linear scale, n_heads to config.json's
    att2 = {"layers": [{k: f"att.0.{k}" for k in ("q1", "q2", "k1", "k2", "v", "o")}]}
    out2 = check({"layers": [{"w": "left", "v": "right"}], "attention": att2})
    assert out2["attention"]["norm"] == "scale" and "n_heads" not in out2["attention"]


def test_two_inputs():
    out = check({"layers": [{"w": "left", "v": "right", "p": "down"}], "inputs": 2})
    assert out["inputs"] == 2
    assert "inputs" not in check({"layers": [{"w": "left", "v": "right"}], "inputs": 1})


def test_validate_does_not_change_its_argument():
    mapping = {"layers": {"w": "blocks.{i}.w", "v": "blocks.{i}.v"}, "_c": 1}
    before = json.dumps(mapping, sort_keys=True)
    check(mapping)
    assert json.dumps(mapping, sort_keys=True) == before


# ---------------------------------------------------------------------------- invalid maps


LR = [{"w": "left", "v": "right"}]


@pytest.mark.parametrize("mapping,says", [
    ([LR], "a map must be a JSON object"),
    ("layers", "a map must be a JSON object"),
    ({"layers": LR, "heads": "head"}, "unknown key 'heads'; a map takes layers, embed"),
    ({}, "'layers' must be a non-empty list of objects or one {i} template object"),
    ({"layers": []}, "'layers' must be a non-empty list"),
    ({"layers": "left"}, "'layers' must be a non-empty list"),
    ({"layers": ["left"]}, "layers[0] must be an object, found str"),
    ({"layers": [LR[0], 3]}, "layers[1] must be an object, found int"),
    ({"layers": [{"w": "left", "v": "right", "q": "x"}]},
     "unknown layer key 'q'; allowed: w, v, wv, p"),
    ({"layers": [{"w": "left"}]}, "layers[0] needs either 'wv' or both 'w' and 'v'"),
    ({"layers": [{"p": "down"}]}, "layers[0] needs either 'wv' or both 'w' and 'v'"),
    ({"layers": [{"wv": "stacked", "w": "left"}]},
     "layers[0] gives both 'wv' and 'w'/'v'; pick one"),
    ({"layers": [{"w": 3, "v": "right"}]},
     "layers[0].w must be a tensor name (a string), found int"),
    ({"layers": [{"w": "left", "v": ["right"]}]},
     "layers[0].v must be a tensor name (a string), found list"),
    ({"layers": {"w": "gone.{i}.w", "v": "gone.{i}.v"}},
     "template 'gone.{i}.w' matches no tensor for i = 0"),
    ({"layers": [{"w": "left", "v": "missing"}]},
     "'missing' is not a tensor of this checkpoint"),
    ({"layers": LR, "head": "nohead"}, "'nohead' is not a tensor of this checkpoint"),
    ({"layers": LR, "embed": 5}, "embed must be a tensor name (a string), found int"),
    ({"layers": LR, "head_bias": {}}, "head_bias must be a tensor name (a string), found dict"),
    ({"layers": LR, "final_scale": 1.5},
     "final_scale must be a tensor name (a string), found float"),
    ({"layers": LR, "kind": "transformer"},
     "'kind' must be one of classifier, lm, toy, found \"transformer\""),
    ({"layers": LR, "kind": 1}, "'kind' must be one of classifier, lm, toy, found 1"),
    ({"layers": LR, "residual": "yes"}, "'residual' must be true or false"),
    ({"layers": LR, "residual": 1}, "'residual' must be true or false"),
    ({"layers": LR, "inputs": 3}, "'inputs' must be 1 or 2"),
    ({"layers": LR, "inputs": True}, "'inputs' must be 1 or 2"),
    ({"layers": LR, "inputs": "2"}, "'inputs' must be 1 or 2"),
    ({"layers": [{"wv": "stacked"}], "inputs": 2},
     "'inputs': 2 is for one layer with separate 'w' and 'v'"),
    ({"layers": [LR[0], LR[0]], "inputs": 2},
     "'inputs': 2 is for one layer with separate 'w' and 'v'"),
    ({"layers": LR, "inputs": 2, "embed": "embed"},
     "'inputs': 2 reads the operands directly; drop 'embed'"),
    ({"layers": LR, "norm": "rms"}, "'norm' must be an object with 'kind' (rms | layer"),
    ({"layers": LR, "norm": {"kind": "rms", "scale": "x"}}, "'norm' must be an object"),
    ({"layers": LR, "norm": {"kind": "batch"}},
     "norm kind must be one of rms, layer, none, scale"),
    ({"layers": LR, "norm": {"gain": 7}}, "norm.gain must be a tensor name (a string)"),
    ({"layers": LR, "norm": {"gain": "nogain"}}, "'nogain' is not a tensor of this checkpoint"),
    ({"layers": LR, "attention": []},
     "'attention' must be an object with 'layers', optional 'norm' and 'n_heads'"),
    ({"layers": LR, "attention": {"layers": [], "heads": 2}}, "'attention' must be an object"),
    ({"layers": LR, "attention": {"layers": []}},
     "attention 'layers' must be a non-empty list of objects or one {i} template object"),
    ({"layers": LR, "attention": {"layers": ["x"]}}, "attention.layers[0] must be an object"),
    ({"layers": LR, "attention": {"layers": [{"q1": "att.0.q1", "qq": "x"}]}},
     "unknown attention key 'qq'; allowed: q1, q2, k1, k2, v, o, scale"),
    ({"layers": LR, "attention": {"layers": [{"q1": "att.0.q1", "k1": "att.0.k1"}]}},
     "attention.layers[0] needs q2, k2, v, o"),
])
def test_invalid_maps_are_one_line_each(mapping, says):
    fails(mapping, says)


ATT = {k: f"att.0.{k}" for k in ("q1", "q2", "k1", "k2", "v", "o")}


@pytest.mark.parametrize("extra,says", [
    ({"norm": "softmax"}, "attention 'norm' must be one of scale, rms, none"),
    ({"n_heads": 0}, "attention 'n_heads' must be a positive integer"),
    ({"n_heads": True}, "attention 'n_heads' must be a positive integer"),
    ({"n_heads": 2.0}, "attention 'n_heads' must be a positive integer"),
])
def test_invalid_attention_settings(extra, says):
    fails({"layers": LR, "attention": {"layers": [ATT], **extra}}, says)


def test_an_attention_name_not_in_the_file():
    fails({"layers": LR, "attention": {"layers": [{**ATT, "o": "att.9.o"}]}},
          "'att.9.o' is not a tensor of this checkpoint")


def test_names_in_errors_are_escaped():
    msg = fails({"layers": [{"w": "left", "v": "\x1b[2Jboom"}]}, "is not a tensor")
    assert "\x1b" not in msg and "\\x1b" in msg
    msg = fails({"layers": LR, "\x07bell": 1}, "unknown key")
    assert "\x07" not in msg


@settings(max_examples=60, derandomize=True, database=None, deadline=None)
@given(st.dictionaries(st.sampled_from([*TOP_FIELDS, "extra", "_c"]),
                       st.recursive(st.none() | st.booleans() | st.integers(-3, 3)
                                    | st.sampled_from(["left", "right", "x", "{i}"]),
                                    lambda c: st.lists(c, max_size=3)
                                    | st.dictionaries(st.sampled_from([*LAYER_FIELDS, "q1",
                                                                       "kind", "gain"]),
                                                      c, max_size=3),
                                    max_leaves=8),
                       max_size=5))
def test_any_json_map_is_a_result_or_one_bilin_error(mapping):
    """No map a user can write raises anything but a BilinError naming the source."""
    try:
        out = check(mapping)
    except BilinError as exc:
        assert str(exc).startswith(f"{SRC}: ") and "\n" not in str(exc)
    else:
        assert out["layers"] and all(isinstance(v, str) and v in BASE
                                     for lay in out["layers"] for v in lay.values())


# ---------------------------------------------------------------------------- read_map / CLI


def test_read_map_reads_an_object(tmp_path):
    p = tmp_path / "map.json"
    p.write_text(json.dumps({"layers": LR, "_note": "x"}))
    assert read_map(p) == {"layers": LR, "_note": "x"}


@pytest.mark.parametrize("content,says", [
    ("[1, 2]", "expected a JSON object, found list"),
    ('{"layers": ', "not valid JSON"),
    ('{"layers": NaN}', "not valid JSON"),
    ("", "not valid JSON"),
])
def test_read_map_refuses_what_is_not_a_json_object(tmp_path, content, says):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(BilinError) as exc:
        read_map(p)
    assert str(p) in str(exc.value) and says in str(exc.value)


def test_read_map_of_a_missing_file_or_a_folder(tmp_path):
    with pytest.raises(BilinError, match="no such map file"):
        read_map(tmp_path / "none.json")
    with pytest.raises(BilinError, match="is a directory, not a map file"):
        read_map(tmp_path)


def test_map_through_the_cli(tmp_path, cli):
    ref = write_toy(tmp_path / "odd.safetensors", d=4, h=6, o=3, seed=8)
    good = tmp_path / "map.json"
    good.write_text(json.dumps({"layers": [{"w": "left.weight", "v": "right.weight",
                                            "p": "head.weight"}]}))
    code, out, err = cli("eig", tmp_path / "odd.safetensors", "--map", good, "--direction",
                         _npy(tmp_path, np.array([1.0, 0.0, 0.0])), "--top", "4", "--json")
    assert code == 0, err
    np.testing.assert_allclose(json.loads(out)["eigenvalues"],
                               reference_eigvals(ref, np.array([1.0, 0, 0])), atol=1e-5)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"layers": [{"w": "left.weight"}]}))
    code, out, err = cli("eig", tmp_path / "odd.safetensors", "--map", bad, "--class", "0")
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "layers[0] needs either 'wv' or both 'w' and 'v'" in lines[0]


def _npy(tmp_path, u):
    p = tmp_path / "u.npy"
    np.save(p, u)
    return p

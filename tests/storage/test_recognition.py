"""Checkpoints as other groups write them: other key names, training-dict wrappers, a down
projection before the head, bf16 shards. Each is read without a map and its class
directions decompose exactly (float64, against the raw tensors through the naive B)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import Ref, reference_eigvals
from safetensors.numpy import save_file

from bilin_cli.storage.containers import open_checkpoint
from bilin_cli.storage.layouts import recognise


def _weights(seed=0, d=6, h=8, n_in=10, o=5, n_cls=4, bias=False, down=False):
    """Raw float64 tensors of embed -> (W x + b) * (V x + b) -> [down (+bias)] -> head."""
    r = np.random.default_rng(seed)
    t = {"E": r.standard_normal((d, n_in)) / 3, "W": r.standard_normal((h, d)) / 2,
         "V": r.standard_normal((h, d)) / 2, "H": r.standard_normal((n_cls, o if down else h))}
    if down:
        t["P"] = r.standard_normal((o, h)) / 2
        t["b_p"] = r.standard_normal(o) / 4
        t["b_h"] = r.standard_normal(n_cls) / 4
    if bias:
        t["b_w"], t["b_v"] = r.standard_normal(h) / 3, r.standard_normal(h) / 3
    return {k: np.asarray(v, np.float32).astype(np.float64) for k, v in t.items()}


def _ref(t) -> Ref:
    """The layer as bilin must see it: the head (after any down projection) is the P."""
    P = t["H"] @ t["P"] if "P" in t else t["H"]
    return Ref(t["W"], t["V"], P, t.get("b_w"), t.get("b_v"), E=t["E"])


def _forward(t, x):
    """The network's own forward pass, written out, for logits."""
    e = x @ t["E"].T
    g = (e @ t["W"].T + t.get("b_w", 0)) * (e @ t["V"].T + t.get("b_v", 0))
    if "P" in t:
        g = g @ t["P"].T + t["b_p"]
    return g @ t["H"].T + t.get("b_h", 0)


def _save(path, named: dict, fmt="safetensors", wrap=None):
    named = {k: np.ascontiguousarray(v, np.float32) for k, v in named.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        save_file(named, str(path))
        return path
    sd = {k: torch.from_numpy(v) for k, v in named.items()}
    torch.save(wrap(sd) if wrap else sd, path)
    return path


def _eig_all(cli, path, c, *extra):
    code, out, err = cli("eig", path, "--class", c, "--all", "--basis", "hidden", "--float64",
                         "--json", *extra)
    assert code == 0, err
    return json.loads(out)


def _check_exact(doc, ref: Ref, c: int, n_cls: int):
    u = np.eye(n_cls)[c]
    lam = np.array(doc["eigenvalues"])
    np.testing.assert_allclose(lam, reference_eigvals(ref, u), atol=1e-10)


NAMINGS = {
    "W_l/W_r/W_p": lambda t: {"embed.weight": t["E"], "W_l": t["W"], "W_r": t["V"],
                              "W_p": t["H"]},
    "left/right/down": lambda t: {"emb.weight": t["E"], "left.weight": t["W"],
                                  "right.weight": t["V"], "down.weight": t["H"]},
    "w_m/w_n/w_proj": lambda t: {"net.embedding.weight": t["E"], "net.mlp.w_m": t["W"],
                                 "net.mlp.w_n": t["V"], "net.mlp.w_proj": t["H"]},
    "body.left.weight": lambda t: {"embed.weight": t["E"], "body.left.weight": t["W"],
                                   "body.right.weight": t["V"], "head.weight": t["H"]},
}


@pytest.mark.parametrize("naming", list(NAMINGS))
def test_other_key_names_are_recognised_by_structure(cli, tmp_path, naming):
    t = _weights(seed=len(naming))
    path = _save(tmp_path / "m.safetensors", NAMINGS[naming](t))
    code, out, err = cli("info", path, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["layout"] == "classifier (recognised by structure)"
    assert info["layers"][0]["out_space"] == "logits" and info["outputs"]["n"] == 4
    assert "recognised by structure" in info["notes"][0]
    for c in (0, 3):
        _check_exact(_eig_all(cli, path, c), _ref(t), c, 4)


def test_biases_beside_raw_parameters(cli, tmp_path):
    t = _weights(seed=5, bias=True)
    path = _save(tmp_path / "m.safetensors", {"embed.weight": t["E"], "W_l": t["W"], "b_l":
                                              t["b_w"], "W_r": t["V"], "b_r": t["b_v"],
                                              "W_p": t["H"]})
    doc = _eig_all(cli, path, 2)
    assert "bias_parts" in doc
    _check_exact(doc, _ref(t), 2, 4)


@pytest.mark.parametrize("bias", [False, True])
def test_classifier_with_down_projection_before_head(cli, tmp_path, bias):
    t = _weights(seed=7, bias=bias, down=True)
    named = {"embed.weight": t["E"], "bil.left.weight": t["W"], "bil.right.weight": t["V"],
             "down.weight": t["P"], "down.bias": t["b_p"], "head.weight": t["H"],
             "head.bias": t["b_h"]}
    if bias:
        named["bil.left.bias"], named["bil.right.bias"] = t["b_w"], t["b_v"]
    path = _save(tmp_path / "m" / "model.safetensors", named)
    model = recognise(open_checkpoint(path))
    assert model.kind == "classifier" and model.shapes[-1].out_space == "logits"
    # The model's logits equal the network's own forward pass.
    x = np.random.default_rng(0).random((7, 10))
    np.testing.assert_allclose(model.forward(x, np.float64), _forward(t, x), rtol=1e-10,
                               atol=1e-10)
    for c in (1, 3):
        doc = _eig_all(cli, path, c)
        _check_exact(doc, _ref(t), c, 4)
        # Q(u) with u = P^T (head row C): the symmetrized B contracted with the head row.
        lam = np.array(doc["eigenvalues"])
        V = np.array(doc["eigenvectors"])
        Q = (V.T * lam) @ V
        W, Vm = t["W"], t["V"]
        c_vec = t["P"].T @ t["H"][c]
        if bias:
            W = np.concatenate([W, t["b_w"][:, None]], 1)
            Vm = np.concatenate([Vm, t["b_v"][:, None]], 1)
        Q_ref = 0.5 * (W.T @ np.diag(c_vec) @ Vm + Vm.T @ np.diag(c_vec) @ W)
        np.testing.assert_allclose(Q, Q_ref[:6, :6], atol=1e-10)
    # eval, truncate and explain work through the projection.
    data = tmp_path / "d.npz"
    y = _forward(t, x).argmax(1)
    np.savez(data, x=x.astype(np.float32), y=y)
    code, out, err = cli("eval", path, "--data", data, "--json")
    assert code == 0, err and json.loads(out)["accuracy"] == 1.0
    code, out, err = cli("truncate", path, "--rank", "6", "-o", tmp_path / "k.safetensors")
    assert code == 0, err
    code, out, err = cli("eval", tmp_path / "k.safetensors", "--data", data, "--json")
    assert code == 0, err
    assert json.loads(out)["accuracy"] == 1.0  # rank 6 = d keeps everything
    np.save(tmp_path / "x0.npy", x[0])
    code, out, err = cli("explain", path, "--input", tmp_path / "x0.npy", "--json")
    assert code == 0, err


@pytest.mark.parametrize("names", [("left", "right", "down", "head"),
                                   ("W_l", "W_r", "W_p", "W_u"),
                                   ("mlp.w_m", "mlp.w_n", "mlp.w_proj", "readout")])
def test_square_layers_told_apart_by_the_projection_name(cli, tmp_path, names):
    """d = h = o (as in the paper's MNIST models): factors and projection share a shape."""
    t = _weights(seed=29, d=6, h=6, o=6, bias=True, down=True)
    left, right, down, head = names
    sfx = ".weight" if left == "left" else ""
    named = {"embed.weight": t["E"], left + sfx: t["W"], right + sfx: t["V"],
             down + sfx: t["P"], head + sfx: t["H"]}
    path = _save(tmp_path / "m.safetensors", named)
    t = {k: v for k, v in t.items() if k not in ("b_w", "b_v", "b_p", "b_h")}
    for c in (0, 2):
        _check_exact(_eig_all(cli, path, c), _ref(t), c, 4)


def _tutorial(sd):
    """torch.save as PyTorch's tutorials teach, with DataParallel's prefix."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    return {"epoch": 9, "seed": 0, "accuracy": 0.97, "loss": torch.tensor(0.25),
            "model_state_dict": {f"module.{k}": v for k, v in sd.items()},
            "optimizer_state_dict": opt.state_dict(), "config": {"lr": 0.1, "tags": ["a"]}}


@pytest.mark.parametrize("wrap,key", [(_tutorial, "model_state_dict"),
                                      (lambda sd: {"state_dict": sd, "step": 3}, "state_dict"),
                                      (lambda sd: {"model": sd}, "model")])
def test_training_checkpoints_are_unwrapped(cli, tmp_path, wrap, key):
    t = _weights(seed=11)
    path = _save(tmp_path / "ckpt.pt", NAMINGS["body.left.weight"](t), fmt="pt", wrap=wrap)
    code, out, err = cli("info", path, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert any(key in n for n in info["notes"])
    if wrap is _tutorial:
        assert info["extras"]["epoch"] == "9" and info["extras"]["accuracy"] == "0.97"
        assert info["extras"]["loss"] == "0.25"
        assert any("module." in n for n in info["notes"])
        code, out, err = cli("info", path)
        assert "epoch=9" in out
    _check_exact(_eig_all(cli, path, 1), _ref(t), 1, 4)


def test_bf16_shards_by_structure(cli, tmp_path):
    from safetensors.torch import save_file as save_torch

    t = _weights(seed=13)
    named = {k: torch.from_numpy(np.asarray(v, np.float32)).bfloat16()
             for k, v in NAMINGS["left/right/down"](t).items()}
    keys = sorted(named)
    folder = tmp_path / "sharded"
    folder.mkdir()
    weight_map = {}
    for n, part in enumerate((keys[:2], keys[2:])):
        name = f"model-{n + 1:05d}-of-00002.safetensors"
        save_torch({k: named[k] for k in part}, str(folder / name))
        weight_map.update(dict.fromkeys(part, name))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    rounded = {k: named[k].float().double().numpy() for k in named}
    ref = Ref(rounded["left.weight"], rounded["right.weight"], rounded["down.weight"],
              E=rounded["emb.weight"])
    _check_exact(_eig_all(cli, folder, 2), ref, 2, 4)


def _ambiguous(tmp_path):
    t = _weights(seed=17)
    named = {"embed.weight": t["E"], "mlp.a": t["W"], "mlp.b": t["V"], "probe_one": t["H"],
             "probe_two": t["H"] * 2}
    return t, _save(tmp_path / "amb.safetensors", named)


def test_ambiguous_structure_says_so_and_suggests_a_map(cli, tmp_path):
    t, path = _ambiguous(tmp_path)
    code, out, err = cli("eig", path, "--class", "0")
    assert code == 1 and "ambiguous" in err and "--suggest-map" in err, err
    # info never refuses: it lists every tensor with its shape.
    code, out, err = cli("info", path)
    assert code == 0, err
    for name in ("mlp.a", "mlp.b", "probe_one", "probe_two", "embed.weight"):
        assert name in out
    code, out, err = cli("info", path, "--suggest-map")
    assert code == 0 and "ambiguous" in err
    mapping = json.loads(out)
    assert mapping["layers"][0] == {"w": "mlp.a", "v": "mlp.b", "p": "probe_one"}
    # Edited (comments dropped, the other probe chosen), the map reads the model exactly.
    mapping = {k: v for k, v in mapping.items() if not k.startswith("_")}
    mapping["layers"][0]["p"] = "probe_two"
    (tmp_path / "map.json").write_text(json.dumps(mapping))
    doc = _eig_all(cli, path, 3, "--map", tmp_path / "map.json")
    ref = _ref(t)
    ref.P = 2 * t["H"]
    _check_exact(doc, ref, 3, 4)


def test_suggested_map_of_a_known_layout_round_trips(cli, tmp_path):
    code, out, err = cli("info", "sample_checkpoints/mnist", "--suggest-map")
    assert code == 0, err
    (tmp_path / "map.json").write_text(out)
    a = _eig_all(cli, "sample_checkpoints/mnist", 3)
    b = _eig_all(cli, "sample_checkpoints/mnist", 3, "--map", tmp_path / "map.json")
    assert a["eigenvalues"] == b["eigenvalues"]


def test_unrecognisable_checkpoint_is_listed(cli, tmp_path):
    path = _save(tmp_path / "x.safetensors", {"a": np.ones((3, 4)), "b": np.ones(5)})
    code, out, err = cli("info", path, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["layout"] is None and [t["name"] for t in doc["tensors"]] == ["a", "b"]
    assert "no known bilinear layout" in doc["warnings"][0]
    code, out, err = cli("eig", path, "--class", "0")
    assert code == 1 and "bilin info" in err and len(err.strip().splitlines()) == 1


MAP_ERRORS = [
    ({"layers": 5}, "'layers' must be"),
    ({"layers": [{"w": 3, "v": "b"}]}, "must be a tensor name"),
    ({"layers": [{"w": "left.weight"}]}, "needs either 'wv' or both"),
    ({"layers": [{"w": "left.weight", "v": "right.weight", "x": "y"}]}, "unknown layer key"),
    ({"layers": [{"w": "left.weight", "v": "nope"}]}, "'nope' is not a tensor"),
    ({"layers": [{"w": "left.weight", "v": "right.weight"}], "kind": "cnn"}, "'kind' must be"),
    ({"layers": [{"w": "left.weight", "v": "right.weight"}], "residual": "yes"},
     "'residual' must be true or false"),
    ({"layers": [{"w": "left.weight", "v": "right.weight"}], "extra": 1}, "unknown key"),
    ({"layers": [{"w": "left.weight", "v": "head.weight"}]}, "must have the same shape"),
    ({"layers": [{"w": "left.weight", "v": "right.weight", "p": "left.weight"}]}, "columns"),
    ({"layers": [{"w": "left.weight", "v": "right.weight"}], "head": "left.weight"},
     "takes 4 inputs"),
    ({"layers": [{"w": "left.weight", "v": "right.weight", "w_bias": "bias5"}]},
     "W's bias (h) needs 6"),
    ({"layers": [{"w": "left.weight", "v": "right.weight"}], "norm": {"kind": "batch"}},
     "norm kind"),
    ([1, 2], "expected a JSON object"),
]


@pytest.mark.parametrize("mapping,message", MAP_ERRORS, ids=[m for _, m in MAP_ERRORS])
def test_map_validation_is_one_line(cli, tmp_path, mapping, message):
    from conftest import write_toy

    write_toy(tmp_path / "toy.safetensors")  # left/right (6, 4), head (3, 6)
    save_file({"bias5": np.ones(5, np.float32)}, str(tmp_path / "unused.safetensors"))
    path = tmp_path / "toy.safetensors"
    import safetensors.numpy as stn

    t = stn.load_file(str(path))
    t["bias5"] = np.ones(5, np.float32)
    stn.save_file(t, str(path))
    (tmp_path / "map.json").write_text(json.dumps(mapping))
    code, out, err = cli("eig", path, "--class", "0", "--map", tmp_path / "map.json")
    assert code == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


def test_nan_weights_are_named(cli, tmp_path):
    t = _weights(seed=19)
    named = NAMINGS["body.left.weight"](t)
    named["body.right.weight"] = named["body.right.weight"].copy()
    named["body.right.weight"][0, :3] = np.nan
    named["body.right.weight"][1, 0] = np.inf
    path = _save(tmp_path / "m.safetensors", named)
    code, out, err = cli("eig", path, "--class", "0")
    assert code == 1 and "'body.right.weight'" in err and "3 NaN and 1 infinite" in err, err
    assert len(err.strip().splitlines()) == 1
    code, out, err = cli("info", path)  # headers only: still fine
    assert code == 0, err


def test_shard_outside_the_model_folder_is_refused(cli, tmp_path):
    t = _weights(seed=23)
    (tmp_path / "outside").mkdir()
    _save(tmp_path / "outside" / "x.safetensors", NAMINGS["body.left.weight"](t))
    folder = tmp_path / "model"
    folder.mkdir()
    for target in ("../outside/x.safetensors", str(tmp_path / "outside" / "x.safetensors")):
        weight_map = dict.fromkeys(NAMINGS["body.left.weight"](t), target)
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map":
                                                                          weight_map}))
        code, out, err = cli("info", folder)
        assert code == 1 and "outside the model folder" in err, err


def _meta_style(path, seed=31, d=8, h=12, vocab=20, n_layer=3, layer_norm=False):
    """Meta's original LLaMA names: tok_embeddings, layers.i.feed_forward.w1/w3/w2, ffn_norm."""
    r = np.random.default_rng(seed)
    t = {"tok_embeddings.weight": r.standard_normal((vocab, d)),
         "output.weight": r.standard_normal((vocab, d)), "norm.weight": np.ones(d)}
    for i in range(n_layer):
        p = f"layers.{i}."
        for k in ("wq", "wk", "wv", "wo"):
            t[p + f"attention.{k}.weight"] = r.standard_normal((d, d))
        t[p + "feed_forward.w1.weight"] = r.standard_normal((h, d)) / 3
        t[p + "feed_forward.w3.weight"] = r.standard_normal((h, d)) / 3
        t[p + "feed_forward.w2.weight"] = r.standard_normal((d, h)) / 3
        t[p + "attention_norm.weight"] = np.ones(d)
        t[p + "ffn_norm.weight"] = r.uniform(0.5, 2.0, d)
        if layer_norm:
            t[p + "ffn_norm.bias"] = r.standard_normal(d) / 4
    return _save(path, t), {k: np.asarray(v, np.float32).astype(np.float64) for k, v in t.items()}


@pytest.mark.parametrize("layer_norm", [False, True])
def test_lm_with_other_names_and_its_mlp_norm(cli, tmp_path, layer_norm):
    path, t = _meta_style(tmp_path / "lm.safetensors", layer_norm=layer_norm)
    code, out, err = cli("info", path, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["outputs"]["kind"] == "vocabulary" and info["n_layers"] == 3
    assert info["map"]["norm"]["gain"] == "layers.{i}.ffn_norm.weight"
    assert info["map"]["norm"]["kind"] == ("layer" if layer_norm else "rms")
    p = "layers.1.feed_forward."
    ref = Ref(t[p + "w1.weight"], t[p + "w3.weight"], t[p + "w2.weight"])
    code, out, err = cli("eig", path, "--layer", "1", "--token", "5", "--all", "--basis",
                         "hidden", "--float64", "--json", "--tokens", "3")
    assert code == 0, err
    doc = json.loads(out)
    np.testing.assert_allclose(doc["eigenvalues"],
                               reference_eigvals(ref, t["output.weight"][5]), atol=1e-10)
    # Token readings go through the norm the structure found: g * norm(e_t) (+ b).
    E, g = t["tok_embeddings.weight"], t["layers.1.ffn_norm.weight"]
    if layer_norm:
        Ec = E - E.mean(1, keepdims=True)
        X = g * Ec / np.sqrt((Ec**2).mean(1, keepdims=True)) + t["layers.1.ffn_norm.bias"]
    else:
        X = g * E / np.sqrt((E**2).mean(1, keepdims=True))
    v1 = np.array(doc["eigenvectors"][0])
    s = X @ v1
    top = [e["token"] for e in doc["tokens"][0]["positive"]]
    assert top == [int(i) for i in np.argsort(-s)[:3] if s[i] > 0]


def test_map_norm_none_reads_raw_embeddings(cli, tmp_path):
    path, t = _meta_style(tmp_path / "lm.safetensors")
    code, out, err = cli("info", path, "--suggest-map")
    mapping = json.loads(out)
    mapping["norm"] = {"kind": "none"}
    (tmp_path / "map.json").write_text(json.dumps(mapping))
    code, out, err = cli("eig", path, "--layer", "0", "--token", "2", "--top", "2", "--json",
                         "--tokens", "4", "--map", tmp_path / "map.json")
    assert code == 0, err
    doc = json.loads(out)
    s = t["tok_embeddings.weight"] @ np.array(doc["eigenvectors"][1])
    neg = [e["token"] for e in doc["tokens"][1]["negative"]]
    assert neg == [int(i) for i in np.argsort(s)[:4] if s[i] < 0]


def test_gated_lm_by_structure_warns_when_the_gate_is_not_identity(cli, tmp_path):
    path, _ = _meta_style(tmp_path / "m" / "model.safetensors")
    (tmp_path / "m" / "config.json").write_text(json.dumps({"hidden_act": "silu"}))
    code, out, err = cli("info", tmp_path / "m", "--json")
    assert code == 0 and "NOT exact" in json.loads(out)["warnings"][0]


@pytest.mark.parametrize("rename", [
    lambda k: "model." + k,  # a Lightning-style wrapper prefix on the paper's layout
    {"embed.weight": "stem.proj.weight", "blocks.0.weight": "body.mix.weight",
     "head.weight": "readout.weight"}.get,  # the stacked factor alone under its prefix
])
def test_paper_layout_under_other_names(cli, tmp_path, rename):
    from safetensors.numpy import load_file

    t = load_file("sample_checkpoints/mnist/model.safetensors")
    save_file({rename(k): v for k, v in t.items()}, str(tmp_path / "m.safetensors"))
    a = _eig_all(cli, "sample_checkpoints/mnist", 4)
    b = _eig_all(cli, tmp_path / "m.safetensors", 4)
    assert a["eigenvalues"] == b["eigenvalues"]
    code, out, err = cli("info", tmp_path / "m.safetensors", "--suggest-map")
    assert code == 0 and rename("blocks.0.weight") in out


def test_arpack_falls_back_to_dense_on_small_layers(cli):
    """--method arpack with K >= d - 1 (ARPACK's limit) takes the dense route, same numbers."""
    a = json.loads(cli("eig", "sample_checkpoints/toy", "--class", "1", "--top", "3",
                       "--method", "arpack", "--json")[1])
    b = json.loads(cli("eig", "sample_checkpoints/toy", "--class", "1", "--top", "3",
                       "--json")[1])
    assert a["eigenvalues"] == b["eigenvalues"]


def test_names_stay_exact_in_json_and_escaped_in_tables(cli, tmp_path):
    t = _weights(seed=37)
    evil = "body.\x1b[31mleft.weight"
    named = {"embed.weight": t["E"], evil: t["W"], "body.right.weight": t["V"],
             "head.weight": t["H"]}
    path = _save(tmp_path / "m.safetensors", named)
    code, out, err = cli("info", path, "--json")
    assert code == 0, err and "\x1b" not in out
    assert evil in [x["name"] for x in json.loads(out)["tensors"]]
    code, out, err = cli("info", path, "--suggest-map")
    assert json.loads(out)["layers"][0]["w"] == evil
    code, out, err = cli("info", path)
    assert code == 0 and "\x1b" not in out + err


def test_info_reports_the_residual_stream(cli, tmp_path):
    path, _ = _meta_style(tmp_path / "lm.safetensors")
    code, out, err = cli("info", path, "--json")
    doc = json.loads(out)
    assert doc["residual"] is True
    assert doc["residual_stream"] == {"d": 8, "norm": "rms", "gain": [
        f"layers.{i}.ffn_norm.weight" for i in range(3)]}
    code, out, err = cli("info", "sample_checkpoints/mnist", "--json")
    assert "residual_stream" not in json.loads(out)


def test_the_format_is_told_by_content_not_name(cli, tmp_path):
    """safetensors saved as .bin and a torch zip saved as .safetensors both read."""
    from safetensors.torch import load_file

    src = "sample_checkpoints/toy/model.safetensors"
    (tmp_path / "st.bin").write_bytes(open(src, "rb").read())
    torch.save(load_file(src), tmp_path / "pt.safetensors")
    ref = _eig_all(cli, src, 1)
    for name in ("st.bin", "pt.safetensors"):
        assert _eig_all(cli, tmp_path / name, 1)["eigenvalues"] == ref["eigenvalues"]

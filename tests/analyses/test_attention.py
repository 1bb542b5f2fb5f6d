"""Fully bilinear transformers: recognised without a map, attention read exactly.

Every quantity is checked against the independent reference in
``tests/bilinear_transformer_ref.py`` (another group's forward code, plain numpy), on
checkpoints that reference writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import bilin_cli as bilin
from bilin_cli.analyses.attention_circuits import low_rank_svd

sys.path.insert(0, str(Path(__file__).parents[1]))
import bilinear_transformer_ref as ref  # noqa: E402


def _write(tmp_path, name="m", **kw):
    folder = tmp_path / name
    params, config = ref.write_checkpoint(folder, **kw)
    path = folder / ("model.pt" if kw.get("fmt") == "pt" else "model.safetensors")
    return params, config, folder if kw.get("fmt") != "pt" else path


def _pre(params, key):
    """A linear pre-scale as bilin folds it (1 where the file has none)."""
    return params.get(key, np.float64(1.0))


@pytest.mark.parametrize("names", sorted(ref.NAME_PAIRS))
def test_embedding_and_unembedding_told_apart_without_a_map(tmp_path, names):
    fmt = "pt" if names == ("emb_a", "emb_b") else "safetensors"
    params, config, path = _write(tmp_path, names=names, fmt=fmt, seed=4)
    m = bilin.load(path)
    assert m.kind == "lm" and m.n_layers == 2 and m.n_attention == 2
    assert m.embed_key.startswith(names[0]) and m.head_key.startswith(names[1])
    np.testing.assert_allclose(m.embed(np.float64), params["embed.weight"], rtol=1e-6)
    # the final linear scale is folded into every unembedding row: u = s * U[T]
    np.testing.assert_allclose(m.head(np.float64),
                               params["unembed.weight"] * params["final_norm.scale"], rtol=1e-6)


@pytest.mark.parametrize("kw", [
    {}, {"scales": "scalar"}, {"scales": None}, {"fmt": "pt", "wrapper": "model"},
    {"dtype": "bfloat16"}, {"rope": False, "causal": False}, {"n_heads": 3, "d_head": 4},
])
def test_mlp_and_attention_equal_the_reference_forward(tmp_path, kw):
    params, config, path = _write(tmp_path, seed=5, **kw)
    m = bilin.load(path)
    tokens = ref.random_tokens(7, config["vocab_size"], seed=1)
    for layer in range(config["n_layers"]):
        mlp = ref.mlp_details(params, config, tokens, layer)
        # Q lives on the residual stream: the MLP's linear pre-scale is folded into W and V
        y = m.layer(layer, np.float64).forward(mlp["resid"])
        np.testing.assert_allclose(y, mlp["out"], rtol=1e-6, atol=1e-9)
        att = ref.attention_details(params, config, tokens, layer)
        A = m.attention(layer, np.float64)
        np.testing.assert_allclose(A.patterns(att["resid"]), att["pattern"], rtol=1e-6,
                                   atol=1e-12)
        np.testing.assert_allclose(A.forward(att["resid"]), att["head_out"].sum(0), rtol=1e-6,
                                   atol=1e-12)
        # each head's output is Wo[h] Wv[h] x_j weighted by its pattern
        for h in range(config["n_heads"]):
            out = att["pattern"][h] @ (att["resid"] @ A.ov(h).T)
            np.testing.assert_allclose(out, att["head_out"][h], rtol=1e-6, atol=1e-12)


def test_rms_config_reads_the_scales_as_gains(tmp_path):
    params, config, path = _write(tmp_path, norm="rms", seed=6)
    m = bilin.load(path)
    assert m.norm_kind == "rms" and m.attention_norm == "rms"
    tokens = ref.random_tokens(5, config["vocab_size"], seed=2)
    mlp = ref.mlp_details(params, config, tokens, 0)
    y = m.layer(0, np.float64).forward(mlp["normed"])  # Q on the MLP's normed input
    np.testing.assert_allclose(y, mlp["out"], rtol=1e-6, atol=1e-9)
    doc = bilin.info(path)
    assert doc["residual_stream"]["norm"] == "rms"


def test_info_reports_attention_heads_rope_and_mask(tmp_path, cli):
    _, config, path = _write(tmp_path, n_heads=3, d_head=4, seed=7)
    code, out, err = cli("info", path, "--json")
    assert code == 0, err
    doc = json.loads(out)
    att = doc["attention"]
    assert (att["blocks"], att["n_heads"], att["d_head"]) == (2, 3, 4)
    assert att["rope"] is True and att["causal"] is True and att["scale"] == pytest.approx(1 / 16)
    assert {"n_heads", "d_head", "rope", "causal"} <= set(att["stated_in_config"])
    assert doc["layout"].startswith("fully bilinear transformer")
    code, out, err = cli("info", path)
    assert code == 0 and "attention" in out and "3 heads of d_head = 4" in out


def test_config_without_heads_is_said(tmp_path):
    folder = tmp_path / "m"
    ref.write_checkpoint(folder, seed=8)
    cfg = json.loads((folder / "config.json").read_text())
    for key in ("n_heads", "d_head", "rope", "causal"):
        cfg.pop(key)
    (folder / "config.json").write_text(json.dumps(cfg))
    m = bilin.load(folder)
    assert m.attention_settings.n_heads == 1
    assert any("does not state" in n for n in m.notes)


def test_qk_forms_and_ov_singular_values_equal_dense_svds(tmp_path):
    params, config, path = _write(tmp_path, seed=9)
    m = bilin.load(path)
    r = bilin.attention(m, layer=1, head=1, top=6, dtype=np.float64)
    (head,) = r.heads
    dh, rows = config["d_head"], slice(config["d_head"], 2 * config["d_head"])
    s = _pre(params, "blocks.1.norm_attn.scale")
    p = {n: params[f"blocks.1.attn.{n}_proj.weight"] for n in ("q1", "q2", "k1", "k2", "v", "o")}
    A1 = (p["q1"][rows] * s).T @ (p["k1"][rows] * s)
    A2 = (p["q2"][rows] * s).T @ (p["k2"][rows] * s)
    OV = p["o"][:, rows] @ (p["v"][rows] * s)
    for doc, M in ((head.qk[0], A1), (head.qk[1], A2), (head.ov, OV)):
        sv = np.linalg.svd(M, compute_uv=False)[:dh]
        np.testing.assert_allclose(doc["singular_values"], sv, rtol=1e-8, atol=1e-12)
        c = doc["components"][0]
        left = np.array(c.get("query_vector", c.get("output_vector")))
        right = np.array(c.get("key_vector", c.get("input_vector")))
        np.testing.assert_allclose(left @ M @ right, sv[0], rtol=1e-8)


def test_low_rank_svd_is_the_svd_of_the_product():
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((4, 9)), rng.standard_normal((4, 9))
    s, left, right = low_rank_svd(A, B)
    np.testing.assert_allclose((left.T * s) @ right, A.T @ B, atol=1e-12)
    np.testing.assert_allclose(left @ left.T, np.eye(4), atol=1e-12)


def test_token_pairs_are_the_reference_pattern(tmp_path):
    """Without RoPE, a query token q right after a key token k scores exactly the pair's
    direct-path score at layer 0 (the residual there is the embedding)."""
    params, config, path = _write(tmp_path, rope=False, seed=10)
    m = bilin.load(path)
    r = bilin.attention(m, layer=0, head=0, pairs=5, dtype=np.float64)
    (head,) = r.heads
    assert len(head.top_pairs) == 5 and len(head.bottom_pairs) == 5
    for pair in head.top_pairs + head.bottom_pairs:
        att = ref.attention_details(params, config, [pair["key"], pair["query"]], 0)
        assert pair["score"] == pytest.approx(att["pattern"][0, 1, 0], rel=1e-9, abs=1e-15)
    scores = [p["score"] for p in head.top_pairs]
    assert scores == sorted(scores, reverse=True)
    # the top pair is the maximum over every (query, key) pair of the vocabulary
    V = config["vocab_size"]
    every = np.array([[ref.attention_details(params, config, [k, q], 0)["pattern"][0, 1, 0]
                       for k in range(V)] for q in range(V)])
    assert scores[0] == pytest.approx(every.max(), rel=1e-9)
    assert head.bottom_pairs[0]["score"] == pytest.approx(every.min(), rel=1e-9)


def test_writes_are_what_the_head_adds_to_the_logits(tmp_path):
    params, config, path = _write(tmp_path, seed=11)
    m = bilin.load(path)
    (head,) = bilin.attention(m, layer=0, head=1, pairs=4, dtype=np.float64).heads
    dh = config["d_head"]
    rows = slice(dh, 2 * dh)
    s = _pre(params, "blocks.0.norm_attn.scale")
    U = params["unembed.weight"] * params["final_norm.scale"]
    E = params["embed.weight"]
    ov = params["blocks.0.attn.o_proj.weight"][:, rows] @ (
        params["blocks.0.attn.v_proj.weight"][rows] * s)
    M = E @ ov.T @ U.T  # (source, token)
    for w in head.top_writes:
        assert w["logit"] == pytest.approx(M[w["source"], w["token"]], rel=1e-9)
    assert head.top_writes[0]["logit"] == pytest.approx(M.max(), rel=1e-9)


@pytest.mark.parametrize("rope", [False, True])
def test_query_form_is_the_score_as_a_quadratic_form_in_the_key(tmp_path, rope):
    params, config, path = _write(tmp_path, rope=rope, seed=12)
    m = bilin.load(path)
    q = 3
    dec = bilin.eig(m, head="0.1", query_token=q, top=None, dtype=np.float64)
    assert dec.direction == {"kind": "attention_query", "layer": 0, "head": 1, "query_token": q}
    lam, vecs = dec.eigenvalues, dec.eigenvectors
    assert np.sum(np.abs(lam) > 1e-9 * np.abs(lam).max()) <= 2  # rank 2 by construction
    for k in range(config["vocab_size"]):
        # one token alone: query and key at the same position, so RoPE rotates both alike
        e_k = params["embed.weight"][k]
        form = float(np.sum(lam * (vecs @ e_k) ** 2))
        if k == q:
            att = ref.attention_details(params, config, [q], 0)
            assert form == pytest.approx(att["pattern"][1, 0, 0], rel=1e-8, abs=1e-15)
        if not rope:
            att = ref.attention_details(params, config, [k, q], 0)
            assert form == pytest.approx(att["pattern"][1, 1, 0], rel=1e-8, abs=1e-15)
    assert dec.tokens is not None and len(dec.tokens) == lam.size


def test_eig_head_cli_matches_the_api(tmp_path, cli):
    _, _, path = _write(tmp_path, seed=13)
    code, out, err = cli("eig", path, "--head", "1.0", "--query-token", "2", "--top", "2",
                         "--json")
    assert code == 0, err
    doc = json.loads(out)
    dec = bilin.eig(path, head=(1, 0), query_token=2, top=2)
    np.testing.assert_allclose(doc["eigenvalues"], dec.eigenvalues, rtol=1e-6)
    assert doc["direction"]["kind"] == "attention_query" and len(doc["tokens"]) == 2
    assert any("left out" in n for n in doc["notes"])
    code, out, err = cli("eig", path, "--head", "1.0", "--query-token", "2")
    assert code == 0 and "attention score of head 1.0" in out


@pytest.mark.parametrize("args, code, says", [
    (["--head", "5.0", "--query-token", "1"], 1, "layer 5 is out of range"),
    (["--head", "0.9", "--query-token", "1"], 1, "head 9 is out of range"),
    (["--head", "0.0", "--query-token", "999"], 1, "query token 999 is out of range"),
    (["--head", "zero", "--query-token", "1"], 1, "--head must be L.H"),
    (["--head", "0.0"], 2, "exactly one of --query-token"),
    (["--query-token", "1"], 2, "go with --head"),
    (["--head", "0.0", "--query-token", "1", "--class", "3"], 2, "drop --class"),
])
def test_eig_head_errors_are_one_line(tmp_path, cli, args, code, says):
    _, _, path = _write(tmp_path, seed=14)
    got, out, err = cli("eig", path, *args)
    assert got == code, err
    assert says in err and "Traceback" not in err
    if code == 1:
        assert err.count("\n") == 1 and err.startswith("error: ")


def test_attention_cli_json_csv_and_npz(tmp_path, cli):
    _, config, path = _write(tmp_path, seed=15)
    code, out, err = cli("attention", path, "--json", "--top", "2")
    assert code == 0, err
    doc = json.loads(out)
    assert len(doc["heads"]) == config["n_layers"] * config["n_heads"]
    assert [c["rank"] for c in doc["heads"][0]["qk"][0]["components"]] == [1, 2]
    api_doc = bilin.attention(path, top=2).as_dict()
    assert doc["heads"][0]["qk"][0]["singular_values"] == pytest.approx(
        api_doc["heads"][0]["qk"][0]["singular_values"], rel=1e-6)
    code, out, err = cli("attention", path, "--head", "1.1", "--format", "csv", "--top", "3")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("layer,head,form,rank,sigma,share")
    assert len(lines) == 1 + 3 * 3
    target = tmp_path / "att.npz"
    code, out, err = cli("attention", path, "--layer", "0", "--format", "npz", "-o", target)
    assert code == 0, err
    with np.load(target) as z:
        assert z["L0H1_A_1_sigma"].shape == (config["d_head"],)


def test_attention_on_a_model_without_it_is_one_line(cli):
    code, out, err = cli("attention", "sample_checkpoints/mnist")
    assert code == 1 and err.startswith("error: ") and "no bilinear attention" in err


def test_attention_through_a_map(tmp_path):
    """Names no rule knows: a map's 'attention' entry says which tensor is which."""
    params, config = ref.write_checkpoint(tmp_path / "orig", seed=16, scales=None)
    from safetensors.numpy import save_file

    rename = {"embed.weight": "E", "unembed.weight": "U"}
    for i in range(config["n_layers"]):
        for n in ("q1", "q2", "k1", "k2", "v", "o"):
            rename[f"blocks.{i}.attn.{n}_proj.weight"] = f"L{i}.mix_{n}"
        for n in ("w_m", "w_n", "w_proj"):
            rename[f"blocks.{i}.mlp.{n}.weight"] = f"L{i}.ff_{n}"
    save_file({rename[k]: v.astype(np.float32) for k, v in params.items() if k in rename},
              str(tmp_path / "renamed.safetensors"))
    mapping = {"kind": "lm", "embed": "E", "head": "U", "norm": {"kind": "none"},
               "layers": {"w": "L{i}.ff_w_m", "v": "L{i}.ff_w_n", "p": "L{i}.ff_w_proj"},
               "attention": {"n_heads": config["n_heads"], "layers": {
                   n: f"L{{i}}.mix_{n}" for n in ("q1", "q2", "k1", "k2", "v", "o")}}}
    m = bilin.load(tmp_path / "renamed.safetensors", map=mapping)
    assert m.n_attention == 2
    tokens = ref.random_tokens(6, config["vocab_size"], seed=3)
    att = ref.attention_details(params, {**config, "rope": False}, tokens, 1)
    np.testing.assert_allclose(m.attention(1, np.float64).forward(att["resid"]),
                               att["head_out"].sum(0), rtol=1e-5, atol=1e-8)


_ENDS = {"b": ("tok_embeddings.weight", "output.weight", "norm.scale"),
         "c": ("wte.weight", "lm_head.weight", "ln_f.scale"),
         "d": ("embed.weight", "unembed.weight", "final_norm.scale")}
_LISTED = {"q1_proj": "q.0", "q2_proj": "q.1", "k1_proj": "k.0", "k2_proj": "k.1",
           "v_proj": "v", "o_proj": "o"}


def _block_name(style: str, i: str, kind: str, name: str) -> str:
    if style == "b":
        block = f"model.layers.{i}"
        mlp = {"w_m": "left", "w_n": "right", "w_proj": "down"}
        return {"attn": f"{block}.self_attn.w{name.removesuffix('_proj')}.weight",
                "mlp": f"{block}.feed_forward.{mlp.get(name)}.weight",
                "norm_attn": f"{block}.attn_norm.scale",
                "norm_mlp": f"{block}.ffn_norm.scale"}[kind]
    if style == "c":
        block = f"h.{i}"
        mlp = {"w_m": "W_l", "w_n": "W_r", "w_proj": "W_p"}
        return {"attn": f"{block}.attn.{_LISTED.get(name)}.weight",
                "mlp": f"{block}.ff.{mlp.get(name)}",
                "norm_attn": f"{block}.norm1.scale", "norm_mlp": f"{block}.norm2.scale"}[kind]
    # an attention module with no 'attn' in its name
    return f"blocks.{i}.{'mixer' if kind == 'attn' else kind}.{name}." + (
        "scale" if kind.startswith("norm") else "weight")


def _renamed(params: dict, style: str) -> dict:
    """The reference's tensors under another group's names (rules, not spellings)."""
    embed, unembed, final = _ENDS[style]
    ends = {"embed.weight": embed, "unembed.weight": unembed, "final_norm.scale": final}
    out = {}
    for key, value in params.items():
        if key in ends:
            new = ends[key]
        else:
            parts = key.split(".")
            new = _block_name(style, parts[1], parts[2], parts[3])
            if style == "d" and parts[2].startswith("norm"):
                new = key
        out[new] = value.astype(np.float32)
    return out


@pytest.mark.parametrize("style", ["b", "c", "d"])
def test_other_groups_names_are_read_by_rule(tmp_path, style):
    from safetensors.numpy import save_file

    params, config = ref.write_checkpoint(tmp_path / "orig", seed=17)
    folder = tmp_path / style
    folder.mkdir()
    save_file(_renamed(params, style), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    m = bilin.load(folder)
    assert m.kind == "lm" and m.n_layers == 2 and m.n_attention == 2, m.notes
    tokens = ref.random_tokens(6, config["vocab_size"], seed=4)
    for layer in range(2):
        mlp = ref.mlp_details(params, config, tokens, layer)
        np.testing.assert_allclose(m.layer(layer, np.float64).forward(mlp["resid"]), mlp["out"],
                                   rtol=1e-5, atol=1e-8)
        att = ref.attention_details(params, config, tokens, layer)
        np.testing.assert_allclose(m.attention(layer, np.float64).forward(att["resid"]),
                                   att["head_out"].sum(0), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(m.head(np.float64),
                               params["unembed.weight"] * params["final_norm.scale"], rtol=1e-6)

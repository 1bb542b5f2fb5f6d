"""Independent reference for a fully bilinear transformer, and a writer of its checkpoints.

Written as another research group would: plain float64 numpy, nothing from ``bilin_cli``.
Notation: T tokens, d = d_model, H heads of size dh, h MLP hidden size, V vocabulary.

Block ``i`` (no softmax, no nonlinearity anywhere)::

    a = norm_attn(x)
    per head: q1, q2, k1, k2, v = a @ W.T (T, dh); RoPE on q1, q2, k1, k2 if config["rope"]
              pattern[i, j] = (q1_i . k1_j) (q2_i . k2_j) / dh**2, zero for j > i if causal
    x = x + concat_heads(pattern @ v) @ o_proj.T
    m = norm_mlp(x)
    x = x + ((m @ w_m.T) * (m @ w_n.T)) @ w_proj.T

and ``logits = final_norm(x) @ unembed.T``. A "norm" is the linear map ``s * x`` unless
``config["norm"] == "rms"``: then ``s * x / sqrt(mean(x**2) + eps)``. An absent scale is 1.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np

PROJ = ("q1", "q2", "k1", "k2", "v")
NAME_PAIRS = {
    ("embed", "unembed"),
    ("wte", "lm_head"),
    ("tok_embeddings", "output"),
    ("embed_tokens", "head"),
    ("emb_a", "emb_b"),  # no hint in the names: only state-dict order (fmt="pt") tells them apart
}


def random_tokens(n: int, vocab: int, seed: int = 0) -> np.ndarray:
    """``n`` random token ids in ``[0, vocab)``, int64 array of shape (n,)."""
    return np.random.default_rng(seed).integers(0, vocab, size=n).astype(np.int64)


def _norm(params: dict, config: dict, name: str, x: np.ndarray) -> np.ndarray:
    """Apply the scale ``name`` (0-d, (d,) or absent) to x (T, d); RMS-normalize if configured."""
    s = params.get(f"{name}.scale", np.float64(1.0))
    if config.get("norm") == "rms":
        eps = config.get("norm_eps", 1e-6)
        x = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return s * x


def _rope(x: np.ndarray, base: float) -> np.ndarray:
    """Rotate-half (GPT-NeoX) RoPE on x (T, dh); position = row index."""
    T, dh = x.shape
    inv_freq = base ** (-np.arange(0, dh, 2, dtype=np.float64) / dh)  # (dh/2,)
    ang = np.arange(T, dtype=np.float64)[:, None] * inv_freq[None, :]  # (T, dh/2)
    cos = np.concatenate([np.cos(ang), np.cos(ang)], axis=-1)
    sin = np.concatenate([np.sin(ang), np.sin(ang)], axis=-1)
    half = dh // 2
    rotated = np.concatenate([-x[:, half:], x[:, :half]], axis=-1)
    return x * cos + rotated * sin


def _attention(params: dict, config: dict, x: np.ndarray, layer: int) -> dict:
    """Attention of block ``layer`` on resid x (T, d): normed (T, d), pattern (H, T, T),
    head_out (H, T, d) with ``head_out.sum(0)`` = the attention output."""
    H, dh = config["n_heads"], config["d_head"]
    pre = f"blocks.{layer}.attn"
    a = _norm(params, config, f"blocks.{layer}.norm_attn", x)
    T = x.shape[0]
    mask = np.tril(np.ones((T, T))) if config.get("causal", True) else np.ones((T, T))
    o = params[f"{pre}.o_proj.weight"]  # (d, H*dh)
    patterns, outs = [], []
    for hd in range(H):
        rows = slice(hd * dh, (hd + 1) * dh)
        p = {n: a @ params[f"{pre}.{n}_proj.weight"][rows].T for n in PROJ}  # each (T, dh)
        if config.get("rope", False):
            for n in ("q1", "q2", "k1", "k2"):
                p[n] = _rope(p[n], config.get("rope_base", 10000))
        pattern = (p["q1"] @ p["k1"].T) * (p["q2"] @ p["k2"].T) / dh**2 * mask  # (T, T)
        patterns.append(pattern)
        outs.append((pattern @ p["v"]) @ o[:, rows].T)  # (T, d)
    return {"resid": x, "normed": a, "pattern": np.stack(patterns), "head_out": np.stack(outs)}


def _mlp(params: dict, config: dict, x: np.ndarray, layer: int) -> dict:
    """Bilinear MLP of block ``layer`` on resid x (T, d): normed (T, d), out (T, d)."""
    pre = f"blocks.{layer}.mlp"
    m = _norm(params, config, f"blocks.{layer}.norm_mlp", x)
    hidden = (m @ params[f"{pre}.w_m.weight"].T) * (m @ params[f"{pre}.w_n.weight"].T)  # (T, h)
    return {"resid": x, "normed": m, "out": hidden @ params[f"{pre}.w_proj.weight"].T}


def _run(params: dict, config: dict, tokens, stop: tuple[int, str] | None = None):
    """Run the model; if ``stop = (layer, "attn"|"mlp")`` return that sublayer's details."""
    x = params["embed.weight"][np.asarray(tokens)].astype(np.float64)  # (T, d)
    for i in range(config["n_layers"]):
        att = _attention(params, config, x, i)
        if stop == (i, "attn"):
            return att
        x = x + att["head_out"].sum(0)
        mlp = _mlp(params, config, x, i)
        if stop == (i, "mlp"):
            return mlp
        x = x + mlp["out"]
    if stop is not None:
        raise IndexError(f"no layer {stop[0]} (model has {config['n_layers']})")
    return _norm(params, config, "final_norm", x) @ params["unembed.weight"].T


def forward(params: dict, config: dict, tokens) -> np.ndarray:
    """Logits (T, V) for ``tokens`` (T,) int; params keyed by canonical names, float64."""
    return _run(params, config, tokens)


def attention_details(params: dict, config: dict, tokens, layer: int) -> dict:
    """Block ``layer``'s attention: "resid" (T, d) entering the block, "normed" (T, d),
    "pattern" (H, T, T) masked and divided by dh**2, "head_out" (H, T, d) summing to attn_out."""
    return _run(params, config, tokens, (layer, "attn"))


def mlp_details(params: dict, config: dict, tokens, layer: int) -> dict:
    """Block ``layer``'s MLP: "resid" (T, d) after attention, "normed" (T, d), "out" (T, d)."""
    return _run(params, config, tokens, (layer, "mlp"))


def _random_params(rng, vocab, d, n_layers, n_heads, d_head, h, scales) -> OrderedDict:
    """Canonical float64 params in module order (embed, blocks, final_norm, unembed)."""

    def w(*shape):
        return rng.normal(0.0, 1.0 / np.sqrt(shape[-1]), size=shape)

    def scale():
        return 1.0 + 0.1 * rng.normal(size=(d,) if scales == "vector" else ())

    if scales not in ("vector", "scalar", None):
        raise ValueError(f"scales must be 'vector', 'scalar' or None, not {scales!r}")
    p = OrderedDict()
    # std 0.5 (not 1/sqrt(d)): the degree-4 attention term then stays visible, not ~1e-4
    p["embed.weight"] = rng.normal(0.0, 0.5, size=(vocab, d))
    for i in range(n_layers):
        b = f"blocks.{i}"
        if scales:
            p[f"{b}.norm_attn.scale"] = np.asarray(scale())
        for n in PROJ:
            p[f"{b}.attn.{n}_proj.weight"] = w(n_heads * d_head, d)
        p[f"{b}.attn.o_proj.weight"] = w(d, n_heads * d_head)
        if scales:
            p[f"{b}.norm_mlp.scale"] = np.asarray(scale())
        p[f"{b}.mlp.w_m.weight"] = w(h, d)
        p[f"{b}.mlp.w_n.weight"] = w(h, d)
        p[f"{b}.mlp.w_proj.weight"] = w(d, h)
    if scales:
        p["final_norm.scale"] = np.asarray(scale())
    p["unembed.weight"] = w(vocab, d)
    return p


def write_checkpoint(
    folder,
    *,
    seed=0,
    vocab=37,
    d=24,
    n_layers=2,
    n_heads=2,
    d_head=6,
    h=40,
    scales="vector",
    norm="scale",
    rope=True,
    causal=True,
    names=("embed", "unembed"),
    fmt="safetensors",
    dtype="float32",
    wrapper=None,
    config_extra=None,
):
    """Write random weights to ``folder/model.safetensors`` or ``folder/model.pt`` plus
    ``folder/config.json``; return ``(params, config)``.

    params: canonical names -> float64 arrays, equal to the stored (rounded) values, so that
    ``forward(params, config, ...)`` is what a reader of the file computes. ``names`` spells the
    embedding / unembedding tensors (see NAME_PAIRS). ``wrapper="model"`` (pt only) saves
    ``{"model": state_dict, "step": 10}``. ``norm``: "scale" (linear) or "rms".
    """
    if tuple(names) not in NAME_PAIRS:
        raise ValueError(f"unknown names {names!r}")
    if fmt not in ("safetensors", "pt") or dtype not in ("float32", "bfloat16"):
        raise ValueError(f"bad fmt/dtype {fmt!r}/{dtype!r}")
    if norm not in ("scale", "rms"):
        raise ValueError(f"norm must be 'scale' or 'rms', not {norm!r}")
    if wrapper not in (None, "model") or (wrapper and fmt != "pt"):
        raise ValueError(f"wrapper {wrapper!r} needs fmt='pt' and must be None or 'model'")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    raw = _random_params(rng, vocab, d, n_layers, n_heads, d_head, h, scales)
    rename = {"embed.weight": f"{names[0]}.weight", "unembed.weight": f"{names[1]}.weight"}

    params = {}
    if fmt == "safetensors":
        from safetensors.numpy import save_file

        if dtype == "bfloat16":
            import ml_dtypes

            np_dtype = ml_dtypes.bfloat16
        else:
            np_dtype = np.float32
        stored = {k: np.ascontiguousarray(v.astype(np_dtype)) for k, v in raw.items()}
        params = {k: v.astype(np.float64) for k, v in stored.items()}
        save_file(
            {rename.get(k, k): v for k, v in stored.items()}, str(folder / "model.safetensors")
        )
    else:
        import torch

        t_dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
        sd = OrderedDict()
        for k, v in raw.items():
            t = torch.tensor(v, dtype=torch.float64).to(t_dtype)
            sd[rename.get(k, k)] = t
            params[k] = t.to(torch.float64).numpy()
        torch.save({"model": sd, "step": 10} if wrapper == "model" else sd, folder / "model.pt")

    config = {
        "d_model": d,
        "n_layers": n_layers,
        "n_heads": n_heads,
        "d_head": d_head,
        "vocab_size": vocab,
        "rope": bool(rope),
        "rope_base": 10000,
        "causal": bool(causal),
    }
    if norm == "rms":
        config.update(norm="rms", norm_eps=1e-6)
    config.update(config_extra or {})
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return params, config


def _self_check() -> None:
    """Pieces (details) reproduce forward; files hold the returned params; causality holds."""
    import tempfile

    cases = [
        {},
        {"scales": "scalar", "norm": "rms", "fmt": "pt", "wrapper": "model"},
        {"scales": None, "rope": False, "causal": False, "dtype": "bfloat16"},
        {"names": ("emb_a", "emb_b"), "fmt": "pt", "dtype": "bfloat16", "n_layers": 3},
        {"names": ("wte", "lm_head"), "norm": "rms", "n_heads": 3, "d_head": 4},
    ]
    for n, kw in enumerate(cases):
        with tempfile.TemporaryDirectory() as tmp:
            params, config = write_checkpoint(tmp, seed=n, **kw)
            assert json.loads((Path(tmp) / "config.json").read_text()) == config
            if kw.get("fmt") == "pt":
                import torch

                sd = torch.load(Path(tmp) / "model.pt")
                sd = sd["model"] if kw.get("wrapper") else sd
                file = {k: v.to(torch.float64).numpy() for k, v in sd.items()}
                e, u = kw.get("names", ("embed", "unembed"))
                assert list(sd)[0] == f"{e}.weight" and list(sd)[-1] == f"{u}.weight"
            else:
                from safetensors.numpy import load_file

                file = {
                    k: v.astype(np.float64)
                    for k, v in load_file(f"{tmp}/model.safetensors").items()
                }
        e, u = kw.get("names", ("embed", "unembed"))
        file["embed.weight"] = file.pop(f"{e}.weight")
        file["unembed.weight"] = file.pop(f"{u}.weight")
        assert file.keys() == params.keys()
        assert all(np.array_equal(file[k], params[k]) for k in params)

        tokens = random_tokens(9, config["vocab_size"], seed=n)
        logits = forward(params, config, tokens)
        x = params["embed.weight"][tokens]
        for i in range(config["n_layers"]):
            att = attention_details(params, config, tokens, i)
            assert np.allclose(att["resid"], x)
            assert att["pattern"].shape == (config["n_heads"], 9, 9)
            if config["causal"]:
                assert np.all(np.triu(att["pattern"], 1) == 0)
            x = x + att["head_out"].sum(0)
            mlp = mlp_details(params, config, tokens, i)
            assert np.allclose(mlp["resid"], x)
            x = x + mlp["out"]
        assert np.allclose(
            _norm(params, config, "final_norm", x) @ params["unembed.weight"].T, logits
        )

        # one head's pattern entry by explicit dot products (no RoPE case only)
        if not config["rope"]:
            att = attention_details(params, config, tokens, 0)
            dh = config["d_head"]
            W = {p: params[f"blocks.0.attn.{p}_proj.weight"][:dh] for p in PROJ}
            a = att["normed"]
            want = (W["q1"] @ a[5]) @ (W["k1"] @ a[2]) * ((W["q2"] @ a[5]) @ (W["k2"] @ a[2]))
            assert np.isclose(att["pattern"][0, 5, 2], want / dh**2)
        # causal: changing a later token leaves earlier logits unchanged
        changed = tokens.copy()
        changed[-1] = (changed[-1] + 1) % config["vocab_size"]
        same = np.allclose(forward(params, config, changed)[:-1], logits[:-1])
        assert same == config["causal"], n
    # RoPE is a rotation: preserves norms, and q.k depends only on relative position
    q, k = np.random.default_rng(0).normal(size=(2, 6))
    rq, rk = _rope(np.tile(q, (8, 1)), 10000.0), _rope(np.tile(k, (8, 1)), 10000.0)
    assert np.allclose(np.linalg.norm(rq, axis=1), np.linalg.norm(q))
    assert np.isclose(rq[5] @ rk[2], rq[4] @ rk[1])
    print(f"bilinear_transformer_ref self-check passed ({len(cases)} checkpoints)")


if __name__ == "__main__":
    _self_check()

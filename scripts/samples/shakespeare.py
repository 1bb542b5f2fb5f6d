"""The ``shakespeare`` sample: a 4-layer character-level transformer with bilinear MLPs,
and the two top-k SAEs on one middle layer's MLP (``shakespeare-saes`` retrains only those).
The corpus split and the validation-loss definition are shared with
``scripts/train_bilinear_transformer.py``."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from .common import DataError, _torch, env_line, fmt_cmd, log, save_dir, to_np_state, warmup_cosine
from .data import SHAKESPEARE_LICENCE, load_shakespeare_texts

TRANSFORMER_CFG = dict(d_model=128, n_layer=4, n_head=4, n_ctx=128, mlp_mult=4, rotary_base=10000.0,
                       norm_eps=1e-5)
TRANSFORMER_RECIPE = dict(optimizer="AdamW", lr=3e-3, min_lr_frac=0.1, betas=[0.9, 0.95], weight_decay=0.1,
                          warmup_steps=50, steps=2400, batch_size=32, grad_clip=1.0,
                          schedule="linear warmup, then cosine decay to min_lr_frac * lr",
                          init="normal(0, 0.02); attn.o and mlp.p std 0.02/sqrt(2*n_layer)",
                          val_split="last 5% (by characters) of each of the 42 works")
SAE_CFG = dict(layer=1, expansion=8, k=24, n_train_tokens=1_500_000, steps=1500, batch_size=2048, lr=1e-3)


def rmsnorm(x, eps=1e-5):
    torch = _torch()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def make_transformer(vocab_size, d_model, n_layer, n_head, n_ctx, mlp_mult=4, rotary_base=10000.0,
                     norm_eps=1e-5):
    torch = _torch()
    nn = torch.nn
    F = torch.nn.functional
    hd = d_model // n_head
    assert hd * n_head == d_model and hd % 2 == 0

    class Rotary(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("inv_freq", 1.0 / (rotary_base ** (torch.arange(0, hd, 2).float() / hd)))

        def forward(self, x):  # (B, H, T, hd); rotate-half (GPT-NeoX) convention
            t = torch.arange(x.shape[-2], dtype=torch.float32)
            f = torch.outer(t, self.inv_freq)
            cos, sin = f.cos(), f.sin()
            x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
            return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)

    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
            self.o = nn.Linear(d_model, d_model, bias=False)
            self.rotary = Rotary()

        def forward(self, x):
            B, T, _ = x.shape
            q, k, v = self.qkv(x).split(d_model, dim=-1)
            q, k, v = (t.view(B, T, n_head, hd).transpose(1, 2) for t in (q, k, v))
            q, k = self.rotary(q), self.rotary(k)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.o(y.transpose(1, 2).reshape(B, T, d_model))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Linear(d_model, 2 * mlp_mult * d_model, bias=False)
            self.p = nn.Linear(mlp_mult * d_model, d_model, bias=False)

        def forward(self, x):
            left, right = self.w(x).chunk(2, dim=-1)
            return self.p(left * right)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = Attn()
            self.mlp = MLP()

    class Transformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = nn.ModuleDict(dict(
                wte=nn.Embedding(vocab_size, d_model),
                h=nn.ModuleList([Block() for _ in range(n_layer)])))
            self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
            for name, p in self.named_parameters():
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith(("attn.o.weight", "mlp.p.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

        def forward(self, idx, capture_layer=None):
            x = self.transformer.wte(idx)
            for i, blk in enumerate(self.transformer.h):
                x = x + blk.attn(rmsnorm(x, norm_eps))
                m_in = rmsnorm(x, norm_eps)
                m_out = blk.mlp(m_in)
                if i == capture_layer:
                    return m_in, m_out
                x = x + m_out
            return self.lm_head(rmsnorm(x, norm_eps))

    return Transformer()


def build_corpus(works, val_frac=0.05):
    """Split each work: first (1-val_frac) of its characters -> train, the rest -> val.
    Returns vocab (sorted chars), train ids, val ids (uint8 arrays, works joined with '\\n')."""
    train_parts, val_parts = [], []
    for _, t in works:
        cut = int(round(len(t) * (1 - val_frac)))
        train_parts.append(t[:cut])
        val_parts.append(t[cut:])
    train_text, val_text = "\n".join(train_parts), "\n".join(val_parts)
    vocab = sorted(set(train_text) | set(val_text))
    assert len(vocab) < 256
    lut = {c: i for i, c in enumerate(vocab)}
    enc = lambda s: np.fromiter((lut[c] for c in s), dtype=np.uint8, count=len(s))  # noqa: E731
    return vocab, enc(train_text), enc(val_text)


def lm_loss_on_windows(model, ids: np.ndarray, n_ctx, starts, batch=64):
    torch = _torch()
    F = torch.nn.functional
    model.eval()
    tot, n = 0.0, 0
    with torch.no_grad():
        for b in range(0, len(starts), batch):
            s = starts[b:b + batch]
            w = torch.from_numpy(np.stack([ids[i:i + n_ctx + 1] for i in s]).astype(np.int64))
            logits = model(w[:, :-1])
            tot += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1),
                                   reduction="sum").item()
            n += w[:, 1:].numel()
    model.train()
    return tot / n


def train_transformer(train_ids, val_ids, vocab_size, cfg, recipe, seed=0, log_every=100):
    torch = _torch()
    torch.manual_seed(seed)
    model = make_transformer(vocab_size, **cfg)
    n_ctx = cfg["n_ctx"]
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe["weight_decay"]}],
                            lr=recipe["lr"], betas=tuple(recipe["betas"]))
    S = recipe["steps"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(recipe))
    gen = torch.Generator().manual_seed(seed)
    T = torch.from_numpy(train_ids.astype(np.int64))
    offs = torch.arange(n_ctx + 1)
    val_probe = np.linspace(0, len(val_ids) - n_ctx - 2, 64).astype(np.int64)
    t0, c0 = time.time(), time.process_time()
    ema = None
    hist = []
    for step in range(S):
        starts = torch.randint(0, len(T) - n_ctx - 1, (recipe["batch_size"],), generator=gen)
        w = T[starts[:, None] + offs]
        logits = model(w[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab_size), w[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe["grad_clip"])
        opt.step()
        sched.step()
        li = loss.item()
        hist.append(li)
        ema = li if ema is None else 0.98 * ema + 0.02 * li
        if step in (0, 9, 49) or (step + 1) % log_every == 0 or step + 1 == S:
            el = time.time() - t0
            vl = lm_loss_on_windows(model, val_ids, n_ctx, val_probe) if (step + 1) % (5 * log_every) == 0 else float("nan")
            log(f"[shakespeare] step {step + 1}/{S} loss {li:.3f} (ema {ema:.3f}) val~ {vl:.3f} "
                f"{(step + 1) / el:.2f} steps/s, {el / 60:.1f} min")
    train_transformer.cpu_seconds = time.process_time() - c0
    return model, hist, time.time() - t0


def collect_mlp_acts(model, ids, n_ctx, layer, n_tokens, seed, batch=64):
    """MLP input (normed residual) and MLP output of `layer` at n_tokens positions of random windows."""
    torch = _torch()
    rng = np.random.default_rng(seed)
    n_win = max(1, int(math.ceil(n_tokens / n_ctx)))
    starts = rng.integers(0, len(ids) - n_ctx, size=n_win)
    ins, outs = [], []
    model.eval()
    with torch.no_grad():
        for b in range(0, n_win, batch):
            w = torch.from_numpy(np.stack([ids[i:i + n_ctx] for i in starts[b:b + batch]]).astype(np.int64))
            mi, mo = model(w, capture_layer=layer)
            ins.append(mi.reshape(-1, mi.shape[-1]))
            outs.append(mo.reshape(-1, mo.shape[-1]))
    return torch.cat(ins)[:n_tokens].contiguous(), torch.cat(outs)[:n_tokens].contiguous()


def train_topk_sae(acts, n_features, k, *, steps, batch_size, lr, seed=0, log_prefix="sae"):
    """Top-k SAE in the paper's format. Trained on acts / s (s = rms of centred acts) for a
    scale-free learning rate; the scale is folded back so the saved SAE works on raw acts."""
    torch = _torch()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    N, d = acts.shape
    mean = acts.mean(0)
    s = float((acts - mean).pow(2).sum(1).mean().sqrt() / math.sqrt(d))
    X = acts / s
    dec = torch.randn(d, n_features, generator=gen)
    dec = dec / dec.norm(dim=0, keepdim=True)
    w_dec = torch.nn.Parameter(dec.clone())
    w_enc = torch.nn.Parameter(dec.T.clone().contiguous())
    b_enc = torch.nn.Parameter(torch.zeros(n_features))
    b_dec = torch.nn.Parameter((mean / s).clone())
    params = [w_enc, b_enc, w_dec, b_dec]
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda st: min(1.0, (st + 1) / 50) * (1.0 if st < 0.8 * steps else max(0.0, (steps - st) / (0.2 * steps))))
    fired = torch.zeros(n_features)

    F = torch.nn.functional

    t0 = time.time()
    for st in range(steps):
        idx = torch.randint(0, N, (min(batch_size, N),), generator=gen)
        x = X[idx]
        pre = torch.relu(torch.addmm(b_enc, x - b_dec, w_enc.T))
        vals, ii = pre.topk(k, dim=-1)
        # sparse decode: x_hat = sum_j vals_j * w_dec[:, ii_j] + b_dec
        xh = F.embedding_bag(ii, w_dec.T, per_sample_weights=vals, mode="sum") + b_dec
        loss = (xh - x).pow(2).sum(-1).mean() / (x - x.mean(0)).pow(2).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():  # remove the gradient component that changes decoder column norms
            w_dec.grad -= (w_dec.grad * w_dec).sum(0, keepdim=True) * w_dec
        opt.step()
        sched.step()
        with torch.no_grad():
            w_dec /= w_dec.norm(dim=0, keepdim=True)
            fired[ii.reshape(-1).unique()] = st
        if (st + 1) % max(1, steps // 10) == 0:
            log(f"[{log_prefix}] step {st + 1}/{steps} nmse {loss.item():.4f} "
                f"dead(>1000 steps) {(fired < st - 1000).float().mean():.3f} {time.time() - t0:.0f}s")
    sd = {"w_enc.weight": w_enc.detach(), "w_enc.bias": b_enc.detach() * s,
          "w_dec.weight": w_dec.detach(), "b_dec": b_dec.detach() * s}
    return to_np_state(sd), time.time() - t0


def sae_numpy_eval(sd, acts: np.ndarray, k):
    x = acts.astype(np.float32)
    pre = np.maximum((x - sd["b_dec"]) @ sd["w_enc.weight"].T + sd["w_enc.bias"], 0)
    idx = np.argpartition(-pre, k - 1, axis=1)[:, :k]
    z = np.zeros_like(pre)
    np.put_along_axis(z, idx, np.take_along_axis(pre, idx, 1), 1)
    xh = z @ sd["w_dec.weight"].T + sd["b_dec"]
    err = ((x.astype(np.float64) - xh) ** 2).sum()
    var = ((x.astype(np.float64) - x.mean(0)) ** 2).sum()
    alive = (z > 0).any(0)
    return dict(normalized_mse=float(err / var), variance_explained=float(1 - err / var),
                l0=float((z > 0).sum(1).mean()), frac_features_active_on_eval=float(alive.mean()))


def _shakespeare_settings(smoke, steps, overrides):
    cfg, recipe, sae = dict(TRANSFORMER_CFG), dict(TRANSFORMER_RECIPE), dict(SAE_CFG)
    if smoke:
        cfg.update(d_model=32, n_layer=2, n_head=2, n_ctx=32)
        recipe.update(steps=30, warmup_steps=5, batch_size=8)
        sae.update(layer=1, expansion=4, k=4, n_train_tokens=4096, steps=30, batch_size=256)
    if steps is not None:
        recipe["steps"] = steps
    for key, v in (overrides or {}).items():
        for dct in (cfg, recipe, sae):
            if key in dct:
                dct[key] = v
        if key.startswith("sae_") and key[4:] in sae:
            sae[key[4:]] = v
    return cfg, recipe, sae


def run_shakespeare_sample(out_root: Path, *, seed=0, steps=None, smoke=False, text=None,
                           shakespeare_dir=None, sae_only=False, overrides=None):
    """Train the char-level bilinear transformer (unless sae_only) and the two SAEs.

    `text` (a string) replaces the corpus, e.g. for tests; it is split 95/5 like one work."""
    torch = _torch()
    cfg, recipe, sae = _shakespeare_settings(smoke, steps, overrides)
    works = [("text", text)] if text is not None else load_shakespeare_texts(shakespeare_dir)
    vocab, tr, va = build_corpus(works, 0.05)
    log(f"[shakespeare] {len(works)} works, vocab {len(vocab)}, train {len(tr)} chars, val {len(va)} chars")
    d = out_root / "shakespeare"
    n_ctx = cfg["n_ctx"]
    if sae_only:
        from safetensors.numpy import load_file
        mcfg = json.loads((d / "config.json").read_text())
        if mcfg["vocab"] != vocab:
            raise DataError("vocab of the saved shakespeare model differs from the corpus")
        cfg = {k: mcfg[k] for k in ("d_model", "n_layer", "n_head", "n_ctx")}
        cfg.update(mlp_mult=mcfg["d_hidden"] // mcfg["d_model"], rotary_base=mcfg["rotary_base"],
                   norm_eps=mcfg["norm_eps"])
        n_ctx = cfg["n_ctx"]
        model = make_transformer(len(vocab), **cfg)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in load_file(str(d / "model.safetensors")).items()})
        config = mcfg
    else:
        model, hist, secs = train_transformer(tr, va, len(vocab), cfg, recipe, seed=seed,
                                              log_every=10 if smoke else 100)
        t1 = time.time()
        val_starts = np.arange(0, len(va) - n_ctx - 1, n_ctx)
        val_loss = lm_loss_on_windows(model, va, n_ctx, val_starts)
        rng = np.random.default_rng(seed + 12345)
        tr_starts = rng.integers(0, len(tr) - n_ctx - 1, size=len(val_starts))
        train_loss = lm_loss_on_windows(model, tr, n_ctx, tr_starts)
        log(f"[shakespeare] val loss {val_loss:.4f} nats/char, train loss {train_loss:.4f} "
            f"(eval {time.time() - t1:.0f}s)")
        sd = to_np_state(model.state_dict())
        config = {
            "layout": "transformer", "d_model": cfg["d_model"], "d_hidden": cfg["mlp_mult"] * cfg["d_model"],
            "n_layer": cfg["n_layer"], "n_head": cfg["n_head"], "n_ctx": n_ctx, "vocab_size": len(vocab),
            "vocab": vocab, "bias": False, "norm": "rmsnorm (no gain)", "norm_eps": cfg["norm_eps"],
            "rotary": True, "rotary_base": cfg["rotary_base"],
            "rotary_style": "rotate-half (GPT-NeoX): q = [q1*cos - q2*sin, q1*sin + q2*cos] over the two head halves",
            "qkv_layout": "attn.qkv.weight rows [:d]=q, [d:2d]=k, [2d:]=v; heads contiguous (head i = rows i*hd:(i+1)*hd)",
            "mlp": "g = (W x) * (V x) with W = mlp.w.weight[:h], V = mlp.w.weight[h:]; out = mlp.p.weight @ g",
            "block": "x = x + attn(norm(x)); x = x + mlp(norm(x)); logits = lm_head(norm(x))",
            "tied_embeddings": False, "dataset": "shakespeare (42 Project Gutenberg works, shksprdata *_gut.txt)",
            "val_split": recipe["val_split"], "train_chars": int(len(tr)), "val_chars": int(len(va)),
            "val_loss": round(val_loss, 5), "train_loss": round(train_loss, 5),
            "loss_unit": "nats/char (mean cross-entropy over all positions of non-overlapping n_ctx windows)",
            "seed": seed, "recipe": recipe, "train_seconds": round(secs, 1),
            "train_process_cpu_seconds": round(train_transformer.cpu_seconds, 1),
            "tokens_seen": int(recipe["steps"] * recipe["batch_size"] * n_ctx),
            "command": fmt_cmd("shakespeare", seed),
        }
        if smoke:
            config["smoke"] = True
        save_dir(d, sd, config, None)

    # ---- SAEs on one middle layer ----
    L = sae["layer"]
    dm = cfg["d_model"]
    f = sae["expansion"] * dm
    t2 = time.time()
    a_in, a_out = collect_mlp_acts(model, tr, n_ctx, L, sae["n_train_tokens"], seed + 1)
    n_eval = min(200_000, max(1024, len(va) - n_ctx))
    e_in, e_out = collect_mlp_acts(model, va, n_ctx, L, n_eval, seed + 2)
    log(f"[sae] collected {len(a_in)} train / {len(e_in)} held-out activations in {time.time() - t2:.0f}s")
    sae_results = {}
    for site, acts, ev in (("mlp_in", a_in, e_in), ("mlp_out", a_out, e_out)):
        ssd, ssecs = train_topk_sae(acts, f, sae["k"], steps=sae["steps"], batch_size=sae["batch_size"],
                                    lr=sae["lr"], seed=seed, log_prefix=f"sae {site}")
        m = sae_numpy_eval(ssd, ev.numpy(), sae["k"])
        mtr = sae_numpy_eval(ssd, acts[:200_000].numpy(), sae["k"])
        scfg = {"format": "bilinear-sae", "layer": L, "site": site, "d_model": dm, "n_features": f,
                "k": sae["k"], "activation": "topk(relu(w_enc @ (x - b_dec) + w_enc.bias))",
                "decoder_columns": "unit norm",
                "site_definition": ("normed residual fed to mlp.w (rmsnorm(x), no gain)" if site == "mlp_in"
                                    else "output of mlp.p (before it is added to the residual)"),
                "normalized_mse": round(m["normalized_mse"], 5),
                "variance_explained": round(m["variance_explained"], 5),
                "frac_features_active_on_eval": round(m["frac_features_active_on_eval"], 4),
                "train_normalized_mse": round(mtr["normalized_mse"], 5),
                "eval": f"{len(ev)} activations from random windows of the held-out split",
                "train_tokens": int(len(acts)), "steps": sae["steps"], "batch_size": sae["batch_size"],
                "lr": sae["lr"], "optimizer": "Adam, 50-step warmup, linear decay over the last 20%",
                "seed": seed, "train_seconds": round(ssecs, 1), "model": "..",
                "command": fmt_cmd("shakespeare-saes", seed) + "  (or --sample shakespeare, which trains both)"}
        if smoke:
            scfg["smoke"] = True
        save_dir(d / f"sae-{site.replace('_', '-')}-L{L}", ssd, scfg, None)
        sae_results[site] = scfg
        log(f"[sae {site}] held-out nmse {m['normalized_mse']:.4f} (var explained {m['variance_explained']:.4f}), "
            f"features active {m['frac_features_active_on_eval']:.3f}, {ssecs:.0f}s")
    config["saes"] = {s: f"sae-{s.replace('_', '-')}-L{L}" for s in sae_results}
    (d / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (d / "README.md").write_text(shakespeare_readme(config, sae_results))
    return config, sae_results


def shakespeare_readme(c, saes):
    r = c["recipe"]
    d, h, L = c["d_model"], c["d_hidden"], c["n_layer"]
    rows = "\n".join(
        f"| `{s['site']}` | `sae-{s['site'].replace('_', '-')}-L{s['layer']}/` | {s['n_features']} | {s['k']} | "
        f"{s['normalized_mse']:.4f} | {s['variance_explained'] * 100:.1f}% | "
        f"{s['frac_features_active_on_eval'] * 100:.1f}% | {s['train_seconds'] / 60:.1f} min |"
        for s in saes.values())
    s0 = next(iter(saes.values()))
    return f"""# `shakespeare` — character-level bilinear transformer + two top-k SAEs

A {L}-layer transformer in the paper's layout whose MLPs are bilinear (`g = (Wx) ⊙ (Vx)`, no
nonlinearity), trained from scratch (seed {c['seed']}) on the complete works of Shakespeare at the
character level.

## Architecture

* vocabulary: {c['vocab_size']} characters (`config.json["vocab"]`, index = token id)
* `d_model = {d}`, MLP hidden `h = {h}`, {L} layers, {c['n_head']} heads (head dim {d // c['n_head']}),
  context {c['n_ctx']}, no biases, untied embeddings
* pre-norm RMSNorm **without** learnable gain (`x * rsqrt(mean(x^2) + {c['norm_eps']})`):
  `x = x + attn(norm(x)); x = x + mlp(norm(x)); logits = lm_head(norm(x))`
* causal attention with rotary position embeddings ({c['rotary_style']}; base {c['rotary_base']:g})
* keys: `transformer.wte.weight ({c['vocab_size']}, {d})`; per layer i `transformer.h.i.attn.qkv.weight ({3 * d}, {d})`
  (rows q|k|v), `transformer.h.i.attn.o.weight ({d}, {d})`, `transformer.h.i.attn.rotary.inv_freq ({d // c['n_head'] // 2},)`,
  `transformer.h.i.mlp.w.weight ({2 * h}, {d})` (rows `[:{h}]` = W/left, `[{h}:]` = V/right),
  `transformer.h.i.mlp.p.weight ({d}, {h})`; `lm_head.weight ({c['vocab_size']}, {d})`

## Measured results

| metric | value |
|---|---|
| validation loss | **{c['val_loss']:.4f} nats/char** ({c['val_loss'] / math.log(2):.3f} bits/char) |
| train loss | {c['train_loss']:.4f} nats/char |
| training | {r['steps']} steps x {r['batch_size']} x {c['n_ctx']} chars = {c['tokens_seen'] / 1e6:.2f}M characters (~{c['tokens_seen'] / c['train_chars']:.2f} epochs) |
| training time | {env_line(c['train_seconds'])} (process CPU time {c['train_process_cpu_seconds'] / 60:.1f} min; the 2-core machine was shared with other jobs) |

Validation loss: mean cross-entropy over every position of all non-overlapping {c['n_ctx']}-character
windows of the held-out split; train loss: the same on an equal number of random training windows
(both in eval mode, after training).

Held-out split: {c['val_split']} ({c['val_chars']:,} characters; train {c['train_chars']:,}). The
parts of the works are joined with a newline, so a few windows straddle two works.

## Sparse autoencoders (layer {s0['layer']})

Two top-k SAEs in the paper's format on layer {s0['layer']}'s MLP: `mlp_in` is the normed residual
fed to `mlp.w` (the bilinear layer's input), `mlp_out` the output of `mlp.p`. Each folder holds
`model.safetensors` with `w_enc.weight (f, d)`, `w_enc.bias (f,)`, `w_dec.weight (d, f)`,
`b_dec (d,)` and a `config.json`. Encoding
`z = TopK_k(ReLU(w_enc.weight @ (x - b_dec) + w_enc.bias))`, decoding `x_hat = w_dec.weight @ z + b_dec`;
decoder columns have unit norm.

| site | folder | features f | k | normalized MSE (held-out) | variance explained | features active on held-out | train time |
|---|---|---|---|---|---|---|---|
{rows}

Normalized MSE = `sum ||x - x_hat||^2 / sum ||x - mean(x)||^2` over {s0['eval']};
variance explained = 1 - normalized MSE. Trained on {s0['train_tokens']:,} activations from random
windows of the training split ({s0['steps']} Adam steps of {s0['batch_size']}, lr {s0['lr']}, tied
initialisation `w_enc = w_dec^T`, decoder columns renormalised after every step).

## Recipe

AdamW (lr {r['lr']}, betas {tuple(r['betas'])}, weight decay {r['weight_decay']} on all weight
matrices), {r['warmup_steps']}-step linear warmup then cosine decay to {r['min_lr_frac']} x lr over {r['steps']}
steps, batch {r['batch_size']} random windows of {c['n_ctx']} + 1 characters, gradient clipping
{r['grad_clip']}, initialisation {r['init']}. The step count was chosen to fit the time available
on a shared 2-core CPU (with `--threads 1`, because the machine was shared with other jobs).

```
{c['command']}
```

## Data

{SHAKESPEARE_LICENCE}. Files are read as latin-1.
"""

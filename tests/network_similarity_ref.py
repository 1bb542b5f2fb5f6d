"""Independent Monte-Carlo reference for network-similarity tests (pure NumPy).

Networks are plain dicts of float64 arrays (nothing from ``bilin_cli`` is imported):

* classifier: ``{"kind": "classifier", "embed": E (d, n_in) | None, "layers": [{"W": (h, d),
  "V": (h, d), "b_w": (h,) | None, "b_v": (h,) | None}], "head": H (o, h_last),
  "head_bias": (o,) | None, "residual": bool}``. ``z = E x``; per layer
  ``g = (W z + b_w) * (V z + b_v)``, ``z = z + g`` if residual else ``g``; ``f = H z + c``.
* lm: ``{"kind": "lm", "layers": [{"W", "V": (h, d), "P": (d, h), "b_w", "b_v": (h,) | None,
  "b_p": (d,) | None, "scale": () | (d,) | None}], "final_scale": () | (d,) | None,
  "unembed": U (vocab, d) | None}``. Per layer ``m = scale * x``,
  ``x = x + P((W m + b_w) * (V m + b_v)) + b_p``; ``f = U (final_scale * x)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file


def _add(y: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    return y if b is None else y + b


def _mul(y: np.ndarray, s: np.ndarray | None) -> np.ndarray:
    return y if s is None else y * s


def _gate(layer: dict, z: np.ndarray) -> np.ndarray:
    """``(W z + b_w) * (V z + b_v)``; ``z : (N, d) -> (N, h)``."""
    return _add(z @ layer["W"].T, layer["b_w"]) * _add(z @ layer["V"].T, layer["b_v"])


def input_dim(net: dict) -> int:
    """Size ``n_in`` of the input ``x`` (``d`` for an LM)."""
    E = net.get("embed")
    return (net["layers"][0]["W"] if E is None else E).shape[1]


def forward(net: dict, X: np.ndarray) -> np.ndarray:
    """Outputs ``(N, o)`` of ``net`` at inputs ``X : (N, n_in)`` (float64)."""
    z = np.asarray(X, dtype=np.float64)
    if net["kind"] == "classifier":
        if net["embed"] is not None:
            z = z @ net["embed"].T
        for layer in net["layers"]:
            g = _gate(layer, z)
            z = z + g if net["residual"] else g
        return _add(z @ net["head"].T, net["head_bias"])
    for layer in net["layers"]:
        g = _gate(layer, _mul(z, layer["scale"]))
        z = _add(z + g @ layer["P"].T, layer["b_p"])
    z = _mul(z, net["final_scale"])
    return z if net["unembed"] is None else z @ net["unembed"].T


def random_classifier(seed: int, n_in: int = 12, d: int = 8, hs: tuple = (10,), o: int = 5,
                      bias: bool = False, residual: bool = False, embed: bool = True) -> dict:
    """A random classifier with O(1) outputs; ``embed=False`` makes the layers read ``x``
    directly (then ``d = n_in``). Residual nets need every ``hs`` entry equal to ``d``."""
    rng = np.random.default_rng(seed)
    d = d if embed else n_in
    if residual and any(h != d for h in hs):
        raise ValueError(f"residual layers need h == d = {d}, got hs = {hs}")
    gain = 0.5 if residual else 1.0
    layers = []
    for h, prev in zip(hs, (d, *hs[:-1]), strict=True):
        W, V = gain * rng.standard_normal((2, h, prev)) / np.sqrt(prev)
        b_w, b_v = 0.5 * rng.standard_normal((2, h)) if bias else (None, None)
        layers.append({"W": W, "V": V, "b_w": b_w, "b_v": b_v})
    E = rng.standard_normal((d, n_in)) / np.sqrt(n_in) if embed else None
    H = rng.standard_normal((o, hs[-1])) / np.sqrt(hs[-1])
    c = 0.5 * rng.standard_normal(o) if bias else None
    return {"kind": "classifier", "embed": E, "layers": layers, "head": H, "head_bias": c,
            "residual": residual}


def random_lm(seed: int, d: int = 8, h: int = 12, n_layers: int = 2, vocab: int | None = 9,
              bias: bool = False, scales: bool = True) -> dict:
    """A random LM stack; with ``scales`` odd layers get a 0-d scale, even ones ``(d,)``, and
    the final scale is ``(d,)``. ``vocab=None`` leaves out the unembedding."""
    rng = np.random.default_rng(seed)

    def scale(i: int) -> np.ndarray | None:
        return np.asarray(1 + 0.2 * rng.standard_normal(() if i % 2 else d)) if scales else None

    layers = []
    for i in range(n_layers):
        W, V = rng.standard_normal((2, h, d)) / np.sqrt(d)
        P = 0.5 * rng.standard_normal((d, h)) / np.sqrt(h)
        b_w, b_v, b_p = (0.3 * rng.standard_normal(k) for k in (h, h, d)) if bias else [None] * 3
        layers.append({"W": W, "V": V, "P": P, "b_w": b_w, "b_v": b_v, "b_p": b_p,
                       "scale": scale(i)})
    U = None if vocab is None else rng.standard_normal((vocab, d)) / np.sqrt(d)
    return {"kind": "lm", "layers": layers, "final_scale": scale(0), "unembed": U}


def _pair(net_a: dict, net_b: dict, n: int, seed: int, Sigma, mean, batch: int):
    """Yield ``(f_a(X), f_b(X))``, ``(B, o_a), (B, o_b)``, for batches ``X : (B, n_in)`` of
    ``x ~ N(mean, Sigma)`` (Cholesky factor), ``n`` rows in all."""
    n_in = input_dim(net_a)
    if input_dim(net_b) != n_in:
        raise ValueError(f"input sizes differ: {n_in} vs {input_dim(net_b)}")
    rng = np.random.default_rng(seed)
    L = None if Sigma is None else np.linalg.cholesky(np.asarray(Sigma, dtype=np.float64))
    mu = np.zeros(n_in) if mean is None else np.asarray(mean, dtype=np.float64)
    for start in range(0, n, batch):
        z = rng.standard_normal((min(batch, n - start), n_in))
        X = mu + (z if L is None else z @ L.T)
        yield forward(net_a, X), forward(net_b, X)


def mc_moments(net_a: dict, net_b: dict, n: int, seed: int, Sigma=None, mean=None,
               batch: int = 20000) -> dict:
    """Monte-Carlo second moments over ``x ~ N(mean, Sigma)`` (defaults 0 and I).

    Returns ``inner`` = E[f_a . f_b] and ``inner_se``, ``per_output`` = E[f_a,c f_b,c] (o,) and
    ``per_output_se`` (o,) (these four are None when ``o_a != o_b``), and ``cross`` =
    E[f_a f_b^T] (o_a, o_b).
    """
    s1 = s2 = p1 = p2 = cross = 0.0  # running sums of f_a.f_b, its square, per output
    for fa, fb in _pair(net_a, net_b, n, seed, Sigma, mean, batch):
        cross = cross + fa.T @ fb
        if same := fa.shape[1] == fb.shape[1]:
            prod = fa * fb
            s1, s2 = s1 + prod.sum(), s2 + (prod.sum(1) ** 2).sum()
            p1, p2 = p1 + prod.sum(0), p2 + (prod**2).sum(0)

    def se(m1, m2):  # standard error of a mean from E[v] and E[v^2]
        return np.sqrt(np.maximum(m2 - m1**2, 0) / max(n - 1, 1))

    keys = ("inner", "inner_se", "per_output", "per_output_se")
    vals = (float(s1 / n), float(se(s1 / n, s2 / n)), p1 / n, se(p1 / n, p2 / n))
    return {**dict(zip(keys, vals if same else [None] * 4, strict=True)), "cross": cross / n}


def mc_cosine(net_a: dict, net_b: dict, n: int, seed: int, Sigma=None, mean=None,
              batch: int = 20000) -> tuple[float, np.ndarray]:
    """``(cosine, per_output_cosines (o,))`` with cosine = E[f_a.f_b] / sqrt(E|f_a|^2 E|f_b|^2),
    all three moments from the same samples."""
    ab = aa = bb = 0.0
    for fa, fb in _pair(net_a, net_b, n, seed, Sigma, mean, batch):
        ab, aa, bb = ab + (fa * fb).sum(0), aa + (fa * fa).sum(0), bb + (fb * fb).sum(0)
    cos = float(ab.sum() / np.sqrt(aa.sum() * bb.sum()))
    return cos, ab / np.sqrt(aa * bb)


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def _round(net: dict) -> None:
    """Round every array of ``net`` (in place) to float32, kept as float64."""
    for d in (net, *net["layers"]):
        for k, v in d.items():
            if isinstance(v, np.ndarray):
                d[k] = _f32(v).astype(np.float64)


def _save(tensors: dict, folder) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def _wv(t: dict, layer: dict, weight: str, bias: str) -> None:
    """Put ``[W; V]`` (2h, d) under ``weight`` and, if any, ``[b_w; b_v]`` (2h,) (a missing
    half as zeros) under ``bias``."""
    t[weight] = _f32(np.concatenate([layer["W"], layer["V"]]))
    if layer["b_w"] is not None or layer["b_v"] is not None:
        zero = np.zeros(layer["W"].shape[0])
        halves = [zero if layer[k] is None else layer[k] for k in ("b_w", "b_v")]
        t[bias] = _f32(np.concatenate(halves))


def write_classifier(net: dict, folder) -> dict:
    """Write ``folder/model.safetensors`` (image-classifier layout, float32) and
    ``folder/config.json``; rounds ``net`` to float32 in place and returns it."""
    _round(net)
    t = {"head.weight": _f32(net["head"])}
    if net["embed"] is not None:
        t["embed.weight"] = _f32(net["embed"])
    if net["head_bias"] is not None:
        t["head.bias"] = _f32(net["head_bias"])
    for i, layer in enumerate(net["layers"]):
        _wv(t, layer, f"blocks.{i}.weight", f"blocks.{i}.bias")
    (_save(t, folder) / "config.json").write_text(json.dumps({"residual": bool(net["residual"])}))
    return net


def write_lm(net: dict, folder, seed: int = 0, vocab: int | None = None) -> dict:
    """Write ``folder/model.safetensors`` (bilinear-transformer layout, float32) for an LM
    without linear scales. ``transformer.wte.weight`` is random ``(vocab, d)`` (vocab from
    the unembedding, else ``vocab`` or 9); ``lm_head.weight`` = U only when U is present.
    Rounds ``net`` to float32 in place and returns it."""
    if net["final_scale"] is not None or any(la["scale"] is not None for la in net["layers"]):
        raise ValueError("the bilinear-transformer layout has no linear scales: use scales=False")
    _round(net)
    d, U = net["layers"][0]["W"].shape[1], net["unembed"]
    rows = U.shape[0] if U is not None else (vocab or 9)
    t = {"transformer.wte.weight": _f32(np.random.default_rng(seed).standard_normal((rows, d)))}
    if U is not None:
        t["lm_head.weight"] = _f32(U)
    for i, layer in enumerate(net["layers"]):
        pre = f"transformer.h.{i}.mlp."
        _wv(t, layer, pre + "w.weight", pre + "w.bias")
        t[pre + "p.weight"] = _f32(layer["P"])
        if layer["b_p"] is not None:
            t[pre + "p.bias"] = _f32(layer["b_p"])
    _save(t, folder)
    return net


def _exact_sq_norm_one_layer(net: dict) -> float:
    """E|f|^2 for a one-layer, non-residual classifier at x ~ N(0, I), by Isserlis."""
    (layer,) = net["layers"]
    E = net["embed"] if net["embed"] is not None else np.eye(layer["W"].shape[1])
    A, B = layer["W"] @ E, layer["V"] @ E  # g_i = (a_i.x + p_i)(b_i.x + q_i)
    p, q = layer["b_w"], layer["b_v"]
    Saa, Sab, Sbb, d = A @ A.T, A @ B.T, B @ B.T, np.sum(A * B, axis=1)
    Egg = (np.outer(d, d) + Saa * Sbb + Sab * Sab.T + np.outer(p * q, d) + np.outer(d, p * q)
           + np.outer(p, p) * Sbb + np.outer(p, q) * Sab.T + np.outer(q, p) * Sab
           + np.outer(q, q) * Saa + np.outer(p * q, p * q))
    Eg, H, c = d + p * q, net["head"], net["head_bias"]
    return float(np.trace(H.T @ H @ Egg) + 2 * c @ H @ Eg + c @ c)


if __name__ == "__main__":
    net = random_classifier(0, bias=True)
    mom = mc_moments(net, net, 200_000, seed=1)
    exact = _exact_sq_norm_one_layer(net)
    z = (mom["inner"] - exact) / mom["inner_se"]
    print(f"inner {mom['inner']:.5f} +- {mom['inner_se']:.5f}, Isserlis {exact:.5f} (z={z:.2f})")
    assert abs(z) < 5, z
    assert np.isclose(np.trace(mom["cross"]), mom["inner"], rtol=1e-12)
    assert np.isclose(mom["per_output"].sum(), mom["inner"], rtol=1e-12)
    for other in (net, random_classifier(3, hs=(8, 8), residual=True, bias=True),
                  random_lm(4, bias=True)):
        cos, per = mc_cosine(other, other, 50_000, seed=2)
        assert abs(cos - 1) < 1e-12 and np.all(np.abs(per - 1) < 1e-12), (cos, per)
    cos, _ = mc_cosine(net, random_classifier(5, bias=True), 50_000, seed=2)
    print(f"ok: self-cosine 1 to 1e-12; cosine with another net {cos:.4f}")

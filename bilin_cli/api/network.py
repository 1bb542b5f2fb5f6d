"""Whole networks and attention heads: ``network_similarity``, ``attention``."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bilin_cli.api._types import PathLike
from bilin_cli.api.loading import _model, load
from bilin_cli.core.errors import BilinError, option
from bilin_cli.model.bilinear import BilinearModel

APPROXIMATION = ("Gaussian closure: from the second bilinear layer on, each layer's input is "
                 "taken as Gaussian with its exact mean and covariance (joint across the "
                 "networks); exact for one bilinear layer (with biases, residual path, "
                 "embedding and head)")
# Networks with one bilinear layer are compared through their quadratic forms (computed once
# per network, then a dot product per pair) when that is cheaper than the layer-by-layer
# moments of every pair and their forms fit in this many bytes.
FORM_MEMORY = 3 * 2**30
RMS_APPROXIMATION = ("each RMS/LayerNorm in front of an MLP is replaced by its gain over the "
                     "expected rms, sqrt(E|x|^2 / d)")


@dataclass
class NetworkSimilarity:
    """Data-free similarity of whole networks (``bilin compare --network``).

    ``inner[a, b] = E_x[f_a(x) . f_b(x)]`` over ``x ~ N(mu, Sigma)`` and ``cosine`` its
    normalisation; ``per_output[a, b, j]`` the cosine of output ``outputs[j]`` alone
    (``E[f_a,c f_b,c] / sqrt(E[f_a,c^2] E[f_b,c^2])``; NaN where a norm is 0). ``exact`` is
    False where the Gaussian closure (``approximation``) was used; ``covers`` says which
    layers of each network the function includes, ``left_out`` what it does not.
    """

    networks: list[str]
    cosine: np.ndarray
    inner: np.ndarray
    outputs: list[int]
    output_names: list[str] | None
    per_output: np.ndarray
    per_output_inner: np.ndarray
    exact: bool
    approximation: list[str]
    covers: list[list[str]]
    left_out: list[list[str]]
    input: dict
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        def clean(a: np.ndarray):
            return [[None if not np.isfinite(v) else float(v) for v in row] for row in a]

        outputs = []
        for j, c in enumerate(self.outputs):
            entry = {"index": int(c), "cosine": clean(self.per_output[:, :, j]),
                     "inner": clean(self.per_output_inner[:, :, j])}
            if self.output_names:
                entry["name"] = self.output_names[c]
            outputs.append(entry)
        return {
            "networks": self.networks,
            "cosine": clean(self.cosine),
            "inner": clean(self.inner),
            "measure": "E_x[f_a(x) . f_b(x)] / sqrt(E|f_a|^2 E|f_b|^2), x ~ "
                       + self.input["distribution"],
            "exact": self.exact,
            "approximation": self.approximation,
            "input": self.input,
            "covers": [{"network": n, "layers": c, "left_out": lo} for n, c, lo in
                       zip(self.networks, self.covers, self.left_out, strict=True)],
            "outputs": outputs,
            "notes": self.notes,
        }


def input_distribution(n: int, input_cov: PathLike | np.ndarray | None = None,
                       with_mean: bool = False):
    """``N(0, I)``, or the covariance (and with ``with_mean`` the mean) of a data file's
    inputs (``.npz`` with ``x``, an idx folder, or a ``.npy`` covariance matrix)."""
    from bilin_cli.analyses.network_moments import InputDistribution

    if input_cov is None:
        if with_mean:
            raise BilinError(f"{option('--input-mean', 'input_mean')} needs "
                             f"{option('--input-cov DATA', 'input_cov=DATA')} (the data gives the "
                             f"mean)")
        return InputDistribution(n, text=f"N(0, I_{n})")
    if isinstance(input_cov, np.ndarray):
        Sigma, mu, text = input_cov, None, "N(0, Sigma)"
    elif str(input_cov).endswith(".npy"):
        from bilin_cli.storage.data import read_npy

        Sigma = read_npy(input_cov, "covariance (.npy)").astype(np.float64)
        mu, text = None, f"N(0, Sigma from {Path(input_cov).name})"
        if with_mean:
            raise BilinError(f"{option('--input-mean', 'input_mean')} needs a data file (.npz or "
                             f"idx), not a covariance "
                             "matrix")
    else:
        from bilin_cli.storage.data import load_dataset

        data = load_dataset(input_cov, np.float64)
        x = data.x
        if x.shape[0] < 2:
            raise BilinError(f"{input_cov}: a covariance needs at least 2 inputs")
        mu = x.mean(axis=0)
        Sigma = np.cov(x, rowvar=False)
        text = (f"N(mean, covariance of the {x.shape[0]} inputs of {Path(input_cov).name})"
                if with_mean else
                f"N(0, covariance of the {x.shape[0]} inputs of {Path(input_cov).name})")
        if not with_mean:
            mu = None
    Sigma = np.atleast_2d(Sigma)
    if Sigma.shape != (n, n):
        raise BilinError(f"the input covariance is {Sigma.shape[0]}x{Sigma.shape[1]}; the "
                         f"networks read {n} inputs")
    return InputDistribution.from_covariance(Sigma, mu, text)


def _fingerprint(path: str) -> str:
    """A checkpoint's identity for resuming: its resolved path, sizes and times."""
    p = Path(path).resolve()
    files = sorted(p.rglob("*")) if p.is_dir() else [p]
    parts = [str(p)] + [f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}"
                        for f in files if f.is_file()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


class _ResumeLog:
    """Pairs already computed, one JSON line each, so an interrupted matrix resumes."""

    def __init__(self, path: Path | None, settings: str):
        self.path, self.settings, self.done = path, settings, {}
        if path is None or not path.exists():
            return
        try:
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                    if row.get("settings") == settings:
                        self.done[(row["a"], row["b"])] = np.asarray(row["per_output"],
                                                                     np.float64)
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by the interruption
        except OSError as exc:
            raise BilinError(f"{path}: cannot read the resume log ({exc.strerror})") from None

    def get(self, a: str, b: str):
        return self.done.get((a, b))

    def add(self, a: str, b: str, per_output: np.ndarray) -> None:
        if self.path is None:
            return
        row = {"settings": self.settings, "a": a, "b": b, "per_output": per_output.tolist()}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def network_similarity(
    networks: Sequence[BilinearModel | PathLike],
    cls: int | Sequence[int] | None = None,
    input_cov: PathLike | np.ndarray | None = None,
    input_mean: bool = False,
    *,
    map: dict | PathLike | None = None,  # noqa: A002
    resume: PathLike | None = None,
    advance=None,
) -> NetworkSimilarity:
    """Data-free functional similarity of whole networks (``bilin compare --network``).

    ``networks``: two or more models or checkpoint paths that read the same input and write
    the same outputs. ``cls``: the outputs (classes or token ids) given per-output cosines
    (default: all, when there are at most 100). ``input_cov``: inputs ``x ~ N(0, Sigma)``
    with ``Sigma`` the covariance of a data file's inputs (or a ``(n, n)`` array or ``.npy``);
    ``input_mean`` also takes the data's mean. ``resume``: a log file of finished pairs,
    appended as they finish and read back on a rerun (the CLI keeps it beside ``-o`` and
    removes it once the output is written); pairs are matched by each checkpoint's path,
    sizes and modification times and by the input distribution.
    ``advance`` is called once per pair.

    Example::

        >>> nets = ["sample_checkpoints/mnist", "sample_checkpoints/mnist-bias"]
        >>> s = bilin.network_similarity(nets)
        >>> s.cosine.shape, bool(s.exact), round(float(s.cosine[0, 0]), 12)
        ((2, 2), True, 1.0)
    """
    from bilin_cli.analyses.network_moments import (
        cross_moments,
        form_moments,
        form_size,
        network_function,
        propagate,
        quadratic_forms,
        route_costs,
    )

    if len(networks) < 2:
        raise BilinError("give at least two networks to compare")
    models = [n if isinstance(n, BilinearModel) else load(n, map) for n in networks]
    names = [str(m.meta.get("source_path", f"network {i}")) for i, m in enumerate(models)]
    funcs = [network_function(m, name) for m, name in zip(models, names, strict=True)]
    n_in, n_out = funcs[0].n_in, funcs[0].n_out
    for f in funcs[1:]:
        if f.n_in != n_in:
            raise BilinError(f"{f.name} reads {f.n_in} inputs and {funcs[0].name} {n_in}: "
                             "the networks must read the same input")
        if f.n_out != n_out:
            raise BilinError(f"{f.name} writes {f.n_out} outputs and {funcs[0].name} "
                             f"{n_out}: the networks must write the same outputs")
    if cls is None:
        outputs = list(range(n_out)) if n_out <= 100 else []
    else:
        outputs = [int(c) for c in (cls if isinstance(cls, (list, tuple, range)) else [cls])]
        bad = [c for c in outputs if not 0 <= c < n_out]
        if bad:
            raise BilinError(f"output {bad[0]} is out of range: the networks write {n_out} "
                             f"outputs (0..{n_out - 1})")
    dist = input_distribution(n_in, input_cov, input_mean)
    props = [propagate(f, dist) for f in funcs]
    prints = [_fingerprint(m.meta["source_path"]) if "source_path" in m.meta else None
              for m in models]
    settings = json.dumps([dist.text, _digest(dist)])
    log = _ResumeLog(Path(resume) if resume is not None else None, settings)
    N = len(models)
    full = np.zeros((N, N, n_out))
    pair_cost, form_cost = route_costs(props)
    sizes = [form_size(p) for p in props]
    use_forms = (form_cost is not None and form_cost < pair_cost
                 and sum(sizes) <= FORM_MEMORY)
    forms: dict[int, object] = {}
    for a in range(N):
        for b in range(a, N):
            key = (prints[a], prints[b])
            cached = log.get(*key) if None not in key else None
            if cached is not None and cached.shape == (n_out,):
                full[a, b] = cached
            elif use_forms:
                for i in (a, b):
                    if i not in forms:
                        forms[i] = quadratic_forms(props[i])
                full[a, b] = form_moments(forms[a], forms[b])
            else:
                full[a, b] = cross_moments(props[a], props[b])
            if cached is None and None not in key:
                log.add(*key, full[a, b])
            full[b, a] = full[a, b]
            if advance:
                advance()
    inner = full.sum(axis=2)
    norms = np.sqrt(np.clip(np.diag(inner), 0.0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = inner / np.outer(norms, norms)
        diag = np.sqrt(np.clip(np.einsum("aac->ac", full), 0.0, None))  # (N, o)
        per = full[:, :, outputs] / (diag[:, None, outputs] * diag[None, :, outputs])
    exact = all(p.exact for p in props)
    approx = [] if exact else [APPROXIMATION]
    if any(s.norm is not None for f in funcs for s in f.stages):
        approx.append(RMS_APPROXIMATION)
    notes = []
    if cls is None and n_out > 100:
        notes.append(f"{n_out} outputs: per-output cosines only for --class C (repeatable)")
    if np.any(norms == 0):
        notes.append("a network is zero on every input: its cosines are undefined (null)")
    return NetworkSimilarity(
        networks=names, cosine=cosine, inner=inner, outputs=outputs,
        output_names=models[0].output_names, per_output=per,
        per_output_inner=full[:, :, outputs], exact=exact, approximation=approx,
        covers=[f.covers for f in funcs], left_out=[f.left_out for f in funcs],
        input={"distribution": dist.text, "dim": n_in}, notes=notes)


def _digest(dist) -> str:
    h = hashlib.sha256()
    for arr in (dist.S, dist.mu):
        if arr is not None:
            h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:20]


def attention(
    model: BilinearModel | PathLike,
    layer: int | None = None,
    head: int | Sequence[int] | None = None,
    top: int = 5,
    pairs: int = 10,
    tokens: int = 5,
    dtype: type = np.float32,
    *,
    advance=None,
):
    """Weight-based readings of bilinear attention heads (``bilin attention``).

    For each head of ``layer`` (default: every block) and ``head`` (default: all): the QK
    forms ``A_1 = Wq1^T Wk1``, ``A_2 = Wq2^T Wk2`` and the OV map ``Wo Wv`` with their top
    ``top`` singular values and vectors (read as ``tokens`` tokens per side), the ``pairs``
    query/key token pairs of largest and most negative direct-path score and the source
    tokens whose value most raises an output token's logit. Returns a
    :class:`~bilin_cli.analyses.attention_circuits.AttentionReport`; ``as_dict()`` is the ``--json``
    document.
    """
    from bilin_cli.analyses.attention_circuits import read_heads

    model = _model(model)
    heads = None if head is None else [int(h) for h in (
        head if isinstance(head, (list, tuple, range)) else [head])]
    return read_heads(model, layer, heads, top, pairs, tokens, dtype, advance)

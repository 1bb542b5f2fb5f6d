"""Data-free functional similarity of whole networks: the library behind
``bilin compare --network``.

For networks ``f_a, f_b`` that read the same input and write the same outputs,

    <f_a, f_b> = E_{x ~ N(mu, Sigma)} [ f_a(x)^T f_b(x) ]     (mu = 0, Sigma = I by default)

reported as the cosine ``<f_a, f_b> / sqrt(<f_a, f_a> <f_b, f_b>)``, overall and per output
direction (class or token): ``E[f_a,c f_b,c] / sqrt(E[f_a,c^2] E[f_b,c^2])``.

Every network is a list of stages acting on the padded input ``z~ = [1; z]`` (the 1 carries
the biases)::

    y = A z~ + D ((L z~) * (R z~))        A : (q, p+1), L, R : (h, p+1), D : (q, h)

(an embedding or an unembedding is a stage with no ``L, R``; a residual layer has
``A = [b_p | I]``). For jointly Gaussian inputs, a stage's output moments follow exactly from
Isserlis' theorem with means: for ``l = L z~``, ``r = R z~`` and the same of the other network,

    E[g] = E[l] * E[r] + diag(Cov(l, r))
    Cov(g_a, g_b) = C_ll * C_rr + C_lr * C_rl + (m_la m_lb^T) * C_rr + (m_la m_rb^T) * C_rl
                    + (m_ra m_lb^T) * C_lr + (m_ra m_rb^T) * C_ll
    Cov(g_a, z~_b) = diag(m_la) R_a C + diag(m_ra) L_a C

with ``C_ll = L_a C_ab L_b^T`` etc. (for zero means this is the closed form
``D_a[diag(L_a S R_a^T) diag(L_b S R_b^T)^T + (L_a S L_b^T)*(R_a S R_b^T)
+ (L_a S R_b^T)*(R_a S L_b^T)] D_b^T`` of the paper's similarity). One bilinear stage (with
biases, a residual path, an embedding before and a head after) is therefore exact. A stack
of bilinear stages is propagated with the *Gaussian closure*: each stage's output is taken as
Gaussian with its exact mean and covariance (joint across the two networks), which is an
approximation from the second bilinear stage on, and said so in the output. An RMS norm
in front of a layer is approximated by its gain over the expected rms, ``sqrt(E|x|^2 / d)``.

The input is whitened first, ``x = mu + S z`` with ``S S^T = Sigma`` and ``z ~ N(0, I)``,
folded into each network's first stage, so the first stage's covariances are plain Gram
matrices of its factors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bilin_cli.core.errors import BilinError
from bilin_cli.model.bilinear import BilinearModel


@dataclass
class Stage:
    """``y = A z~ + D ((L z~) * (R z~))`` on the padded input; ``norm`` (LMs): the norm in
    front of ``L, R`` (``("rms" | "layer", gain or None)``), resolved per network."""

    name: str
    A: np.ndarray | None  # (q, p+1)
    L: np.ndarray | None = None  # (h, p+1)
    R: np.ndarray | None = None
    D: np.ndarray | None = None  # (q, h)
    norm: tuple | None = None

    @property
    def bilinear(self) -> bool:
        return self.L is not None

    @property
    def q(self) -> int:
        return (self.A if self.A is not None else self.D).shape[0]


@dataclass
class NetworkFunction:
    """A network as stages, the input and output sizes, and what the stages cover."""

    name: str
    stages: list[Stage]
    n_in: int
    n_out: int
    covers: list[str]
    left_out: list[str] = field(default_factory=list)
    output_names: list[str] | None = None


def _pad(M: np.ndarray, const: np.ndarray | None = None) -> np.ndarray:
    """``[const | M]``: a map of ``z`` as a map of ``z~ = [1; z]``."""
    c = np.zeros(M.shape[0]) if const is None else const
    return np.concatenate([c[:, None], M], axis=1)


def network_function(model: BilinearModel, name: str = "") -> NetworkFunction:
    """The stages of ``model`` as a function of its input, in float64.

    Classifiers: the embedding (if any), each bilinear layer (with its residual path and
    the head folded into the last), as :meth:`BilinearModel.forward` computes them.
    Language models: the residual stream before block 0 is the input; each MLP with its
    residual path, then the unembedding (final linear scale folded); attention is left out.
    """
    dt = np.float64
    stages: list[Stage] = []
    covers: list[str] = []
    left: list[str] = []
    if model.kind == "lm":
        d = model.shapes[0].d
        n_in = d
        for i in range(model.n_layers):
            L = model.layer(i, dt)
            norm = None
            if model.norm_kind in ("rms", "layer"):
                norm = (model.norm_kind, model.mlp_norm_gain(i, dt))
            stages.append(_layer_stage(f"mlp {i}", L, np.eye(d), norm))
            covers.append(f"mlp {i} (with its residual path)")
        if model.n_attention or "attn" in model.layout or model.layout.startswith(
                ("bilinear transformer", "LLaMA")):
            left.append("attention (the input is one residual-stream vector x, no sequence)")
        left.append("token embedding (x is drawn in the residual stream)")
        U = model.head(dt)
        if U is not None:
            stages.append(Stage("unembedding", _pad(U)))
            covers.append("unembedding" + (" (final linear scale folded)"
                                           if model.meta.get("folded_scales", {}).get("final")
                                           else ""))
            if model.norm_kind in ("rms", "layer") and not model.meta.get(
                    "folded_scales", {}).get("final"):
                left.append("the final norm before the unembedding")
        n_out = U.shape[0] if U is not None else d
        return NetworkFunction(name, stages, n_in, n_out, covers, left)
    E = model.embed(dt)
    if E is not None:
        stages.append(Stage("embedding", _pad(E)))
        covers.append("embedding")
    n_in = E.shape[1] if E is not None else model.shapes[0].d
    for i in range(model.n_layers):
        L = model.layer(i, dt)
        skip = None
        if model.residual:
            last = i == model.n_layers - 1 and L.P is not None
            skip = model.head(dt) if last else np.eye(L.d)
        stages.append(_layer_stage(f"bilinear layer {i}", L, skip, None))
        covers.append(f"bilinear layer {i}" + (" (with its residual path)" if skip is not None
                                               else "")
                      + (" and the head" if i == model.n_layers - 1 and model.head_key else ""))
    return NetworkFunction(name, stages, n_in, model.shapes[-1].o, covers, left,
                           model.output_names)


def _layer_stage(name: str, L, skip: np.ndarray | None, norm) -> Stage:
    """One bilinear layer ``P((W z + b_w) * (V z + b_v)) + b_p [+ skip z]`` as a stage."""
    h = L.h
    zeros = np.zeros(h)
    Lw = _pad(L.W, L.b_w if L.b_w is not None else zeros)
    Rv = _pad(L.V, L.b_v if L.b_v is not None else zeros)
    D = np.eye(h) if L.P is None else L.P
    q = D.shape[0]
    b_p = L.b_p if L.b_p is not None else np.zeros(q)
    A = _pad(skip, b_p) if skip is not None else (_pad(np.zeros((q, L.d)), b_p)
                                                  if L.b_p is not None else None)
    return Stage(name, A, Lw, Rv, D, norm)


# --------------------------------------------------------------------------- the moments


@dataclass
class Moments:
    """Mean ``m : (p+1,)`` (``m[0] = 1``) and covariance ``C : (p+1, p+1)`` (row and column 0
    zero) of a padded representation; ``C = None`` is ``diag(0, I)`` (the whitened input)."""

    m: np.ndarray
    C: np.ndarray | None


def _times_C(M: np.ndarray, C: np.ndarray | None) -> np.ndarray:
    """``M C`` for ``C`` as in :class:`Moments` (None: drop column 0)."""
    if C is None:
        out = M.copy()
        out[:, 0] = 0.0
        return out
    return M @ C


def _cross(sa: Stage, sb: Stage, ma: Moments, mb: Moments, Cab: np.ndarray | None) -> np.ndarray:
    """``Cov(y_a, y_b) : (q_a, q_b)`` of two stages on jointly Gaussian inputs (module doc)."""
    out = np.zeros((sa.q, sb.q))
    AaC = _times_C(sa.A, Cab) if sa.A is not None else None
    if sa.A is not None and sb.A is not None:
        out += AaC @ sb.A.T
    if sa.bilinear or sb.bilinear:
        if sb.bilinear:
            mlb, mrb = sb.L @ mb.m, sb.R @ mb.m
        if sa.bilinear:
            mla, mra = sa.L @ ma.m, sa.R @ ma.m
            LaC, RaC = _times_C(sa.L, Cab), _times_C(sa.R, Cab)
        if sa.bilinear and sb.bilinear:
            Cll, Crr = LaC @ sb.L.T, RaC @ sb.R.T
            Clr, Crl = LaC @ sb.R.T, RaC @ sb.L.T
            G = (Cll * Crr + Clr * Crl + np.outer(mla, mlb) * Crr + np.outer(mla, mrb) * Crl
                 + np.outer(mra, mlb) * Clr + np.outer(mra, mrb) * Cll)
            out += sa.D @ G @ sb.D.T
        if sa.bilinear and sb.A is not None:
            # Cov(g_a, z~_b) A_b^T
            Cgz = mla[:, None] * RaC + mra[:, None] * LaC
            out += sa.D @ (Cgz @ sb.A.T)
        if sb.bilinear and sa.A is not None:
            # A_a Cov(z~_a, g_b) = A_a C (R_b^T diag(m_lb) + L_b^T diag(m_rb))
            Czg = (AaC @ sb.R.T) * mlb[None, :] + (AaC @ sb.L.T) * mrb[None, :]
            out += Czg @ sb.D.T
    return out


def _mean(s: Stage, mo: Moments) -> np.ndarray:
    y = s.A @ mo.m if s.A is not None else np.zeros(s.q)
    if s.bilinear:
        LC = _times_C(s.L, mo.C)
        g = (s.L @ mo.m) * (s.R @ mo.m) + np.einsum("ij,ij->i", LC, s.R)
        y = y + s.D @ g
    return y


def _padded(y_mean: np.ndarray, cov: np.ndarray) -> Moments:
    q = y_mean.size
    C = np.zeros((q + 1, q + 1))
    C[1:, 1:] = cov
    return Moments(np.concatenate([[1.0], y_mean]), C)


def _resolve(s: Stage, mo: Moments) -> Stage:
    """A stage whose norm is replaced by its gain over the expected rms (an approximation:
    ``x / rms(x)`` with ``rms(x)^2`` taken at its mean ``E|x|^2 / d``)."""
    if s.norm is None:
        return s
    kind, gain = s.norm
    p = mo.m.size - 1
    T = np.eye(p)
    if kind == "layer":
        T = T - 1.0 / p
    second = np.outer(mo.m[1:], mo.m[1:]) + (np.eye(p) if mo.C is None else mo.C[1:, 1:])
    rho = float(np.sqrt(max(np.trace(T @ second @ T.T), 0.0) / p)) or 1.0
    M = T / rho
    if gain is not None:
        M = gain[:, None] * M
    pad = np.zeros((p + 1, p + 1))
    pad[0, 0] = 1.0
    pad[1:, 1:] = M
    return Stage(s.name, s.A, s.L @ pad, s.R @ pad, s.D, None)


@dataclass
class InputDistribution:
    """``x = mu + S z``, ``z ~ N(0, I_r)``: ``S : (n, r)`` (None = identity), ``mu`` or None."""

    n: int
    S: np.ndarray | None = None
    mu: np.ndarray | None = None
    text: str = "N(0, I)"

    @classmethod
    def from_covariance(cls, Sigma: np.ndarray, mu: np.ndarray | None = None,
                        text: str = "N(0, Sigma)") -> InputDistribution:
        Sigma = np.asarray(Sigma, np.float64)
        if Sigma.ndim != 2 or Sigma.shape[0] != Sigma.shape[1] or not np.all(
                np.isfinite(Sigma)):
            raise BilinError(f"the input covariance must be a finite square matrix, got shape "
                             f"{Sigma.shape}")
        Sigma = 0.5 * (Sigma + Sigma.T)
        lam, vecs = np.linalg.eigh(Sigma)
        tol = max(float(np.abs(lam).max(initial=0.0)), 1e-300) * Sigma.shape[0] * 1e-12
        if lam.min(initial=0.0) < -1e3 * tol:
            raise BilinError("the input covariance is not positive semi-definite (smallest "
                             f"eigenvalue {lam.min():.3g})")
        keep = lam > tol
        S = vecs[:, keep] * np.sqrt(lam[keep])
        return cls(Sigma.shape[0], S, mu, text)

    def moments(self) -> Moments:
        """The moments of ``x~ = [1; x]`` itself."""
        m = np.concatenate([[1.0], np.zeros(self.n) if self.mu is None else self.mu])
        if self.S is None:
            return Moments(m, None)
        C = np.zeros((self.n + 1, self.n + 1))
        C[1:, 1:] = self.S @ self.S.T
        return Moments(m, C)

    def fold(self, s: Stage) -> Stage:
        """``s`` as a function of the padded ``z~``: ``M = [[1, 0], [mu, S]]`` folded in."""
        if self.S is None and self.mu is None:
            return s
        S = np.eye(self.n) if self.S is None else self.S
        M = np.zeros((self.n + 1, S.shape[1] + 1))
        M[0, 0] = 1.0
        M[1:, 1:] = S
        if self.mu is not None:
            M[1:, 0] = self.mu
        return Stage(s.name, None if s.A is None else s.A @ M,
                     None if s.L is None else s.L @ M, None if s.R is None else s.R @ M,
                     s.D, s.norm)


@dataclass
class Propagated:
    """A network's stages with the input folded in and norms resolved, the moments in front
    of each stage, and the output's own second moments per output ``E[f_c^2]``."""

    net: NetworkFunction
    stages: list[Stage]
    inputs: list[Moments]
    out_mean: np.ndarray
    out_cov_diag: np.ndarray
    exact: bool


def propagate(net: NetworkFunction, dist: InputDistribution) -> Propagated:
    """One network's own moments through its stages (Gaussian closure after the first
    bilinear stage)."""
    if dist.n != net.n_in:
        raise BilinError(f"{net.name or 'the network'} reads {net.n_in} inputs, the input "
                         f"distribution has {dist.n}")
    mo = Moments(np.eye(1, (dist.S.shape[1] if dist.S is not None else dist.n) + 1)[0], None)
    stages, inputs = [], []
    seen_bilinear = approx = False
    for i, s in enumerate(net.stages):
        if s.norm is not None:
            approx = True
        # A norm in front of the first stage reads x itself: resolve it, then whiten.
        s = dist.fold(_resolve(s, dist.moments())) if i == 0 else _resolve(s, mo)
        if s.bilinear and seen_bilinear:
            approx = True
        seen_bilinear |= s.bilinear
        stages.append(s)
        inputs.append(mo)
        if i < len(net.stages) - 1:
            mo = _padded(_mean(s, mo), _cross(s, s, mo, mo, mo.C))
    last = stages[-1]
    return Propagated(net, stages, inputs, _mean(last, inputs[-1]),
                      _diag_cross(last, last, inputs[-1], inputs[-1], inputs[-1].C),
                      not approx)


def _diag_cross(sa: Stage, sb: Stage, ma: Moments, mb: Moments, Cab) -> np.ndarray:
    """``diag Cov(y_a, y_b)``; a linear readout (an unembedding of many rows) is done row by
    row so the ``(vocab, vocab)`` matrix is never formed."""
    if sa.bilinear or sb.bilinear:
        return np.diag(_cross(sa, sb, ma, mb, Cab)).copy()
    return np.einsum("ij,ij->i", _times_C(sa.A, Cab), sb.A)


def _aligned(p: Propagated, n: int) -> tuple[list[Stage], list[Moments]]:
    """``p``'s stages and their input moments, lengthened to ``n`` stages with identity
    stages: before a linear readout (so a large unembedding stays the last, row-by-row
    step), else after the last stage. Identity stages are linear, so their moments are
    never read."""
    stages, inputs = list(p.stages), list(p.inputs)
    spare = Moments(np.concatenate([[1.0], p.out_mean]), None)
    while len(stages) < n:
        if not stages[-1].bilinear and len(stages) > 1:
            q = stages[-2].q
            stages.insert(-1, Stage("identity", _pad(np.eye(q))))
            inputs.insert(-1, inputs[-1])
        else:
            stages.append(Stage("identity", _pad(np.eye(stages[-1].q))))
            inputs.append(spare)
    return stages, inputs


def cross_moments(pa: Propagated, pb: Propagated) -> np.ndarray:
    """``E[f_a,c f_b,c] : (o,)`` for every output ``c`` (Gaussian closure across stages)."""
    if pa.net.n_out != pb.net.n_out:
        raise BilinError(f"the networks write {pa.net.n_out} and {pb.net.n_out} outputs; "
                         "their similarity needs the same outputs")
    n = max(len(pa.stages), len(pb.stages))
    sa, ia = _aligned(pa, n)
    sb, ib = _aligned(pb, n)
    Cab = None  # whitened input: both networks read the same z
    for i in range(n - 1):
        Cab = _pad_cov(_cross(sa[i], sb[i], ia[i], ib[i], Cab))
    return _diag_cross(sa[-1], sb[-1], ia[-1], ib[-1], Cab) + pa.out_mean * pb.out_mean


def _pad_cov(C: np.ndarray) -> np.ndarray:
    out = np.zeros((C.shape[0] + 1, C.shape[1] + 1))
    out[1:, 1:] = C
    return out


# ------------------------------------------------- one bilinear stage: quadratic forms


@dataclass
class QuadraticForms:
    """A network with one bilinear stage as ``f_c(z) = z^T Q_c z + l_c . z + k_c`` of the
    whitened input ``z ~ N(0, I_r)``: ``packed : (o, r(r+1)/2)`` holds each symmetric ``Q_c``
    as ``[diag, sqrt(2) * upper]`` (so ``<Q_a, Q_b>_F`` is a dot product), ``linear : (o, r)``
    the ``l_c``,
    ``t = tr Q_c + k_c : (o,)``. Then, exactly (Isserlis),

        E[f_a,c f_b,c] = 2 <Q_a,c, Q_b,c> + l_a,c . l_b,c + t_a,c t_b,c.
    """

    packed: np.ndarray
    linear: np.ndarray
    t: np.ndarray


def _as_padded_map(s: Stage) -> np.ndarray:
    """A linear stage ``y = A z~`` as the map ``z~ -> y~ = [1; y]``."""
    top = np.zeros((1, s.A.shape[1]))
    top[0, 0] = 1.0
    return np.concatenate([top, s.A], axis=0)


def form_size(p: Propagated) -> int | None:
    """Bytes :func:`quadratic_forms` keeps for ``p``, or None where it does not apply (not
    exactly one bilinear stage)."""
    if sum(s.bilinear for s in p.stages) != 1:
        return None
    r = p.inputs[0].m.size - 1
    return 8 * p.net.n_out * (r * (r + 1) // 2 + r + 1)


def route_costs(props: list[Propagated]) -> tuple[float, float | None]:
    """Estimated multiply-adds of every pair by :func:`cross_moments` and of every
    network's :func:`quadratic_forms` (None where a network has more than one bilinear
    stage): the quadratic forms pay once per network, the moments once per pair."""
    def hidden(p):
        return max((s.D.shape[1] for s in p.stages if s.bilinear), default=1)

    def width(p):
        return max(s.L.shape[1] if s.bilinear else s.A.shape[1] for s in p.stages)

    n = len(props)
    pairs = sum(6.0 * hidden(a) * hidden(b) * max(width(a), width(b))
                for i, a in enumerate(props) for b in props[i:])
    if any(form_size(p) is None for p in props):
        return pairs, None
    forms = sum(float(p.net.n_out) * width(p) ** 2 * (hidden(p) + n) for p in props)
    return pairs, forms


def quadratic_forms(p: Propagated) -> QuadraticForms:
    """:class:`QuadraticForms` of a network with one bilinear stage (see :func:`form_size`):
    the linear stages before it folded into its factors, those after into ``D`` and ``A``."""
    k = next(i for i, s in enumerate(p.stages) if s.bilinear)
    r = p.inputs[0].m.size - 1
    before = np.eye(r + 1)
    for s in p.stages[:k]:
        before = _as_padded_map(s) @ before
    s = p.stages[k]
    L, R = s.L @ before, s.R @ before
    A = s.A @ before if s.A is not None else None
    D = s.D
    for after in p.stages[k + 1:]:
        # y' = A' [1; A z~ + D g] = A'[:, 0] + A'[:, 1:] A z~ + A'[:, 1:] D g
        A0 = np.zeros((after.q, r + 1))
        A0[:, 0] = after.A[:, 0]
        A = A0 + (after.A[:, 1:] @ A if A is not None else 0.0)
        D = after.A[:, 1:] @ D
    o = D.shape[0]
    iu = np.triu_indices(r)
    weight = np.where(iu[0] == iu[1], 1.0, np.sqrt(2.0))
    packed = np.empty((o, iu[0].size))
    lin = np.empty((o, r))
    t = np.empty(o)
    h = D.shape[1]
    # Every output's M_c = L^T diag(D_c) R in one product: (r+1, h) x (h, o (r+1)).
    Ms = (L.T @ (D.T[:, :, None] * R[:, None, :]).reshape(h, -1)).reshape(r + 1, o, r + 1)
    for c in range(o):
        M = Ms[:, c, :]  # (r+1, r+1): f_c = z~^T M z~ (+ A z~)
        Q = 0.5 * (M[1:, 1:] + M[1:, 1:].T)
        packed[c] = Q[iu] * weight
        lin[c] = M[0, 1:] + M[1:, 0] + (A[c, 1:] if A is not None else 0.0)
        t[c] = np.trace(Q) + M[0, 0] + (A[c, 0] if A is not None else 0.0)
    return QuadraticForms(packed, lin, t)


def form_moments(fa: QuadraticForms, fb: QuadraticForms) -> np.ndarray:
    """``E[f_a,c f_b,c] : (o,)`` from two networks' quadratic forms (exact)."""
    return (2.0 * np.einsum("ci,ci->c", fa.packed, fb.packed)
            + np.einsum("ci,ci->c", fa.linear, fb.linear) + fa.t * fb.t)

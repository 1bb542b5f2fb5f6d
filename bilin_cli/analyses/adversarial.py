"""Adversarial masks built from eigenvectors alone (the paper's §4.4): ``bilin adversarial``.

A single-layer classifier computes ``logit_c(x) = sum_i lambda_ci (v_ci . E x)^2``
(``E : (d, n_in)`` the embedding, identity for a model without one). The recipe:

1. **Stack** the top ``n`` positive eigenvectors of every class's ``Q(e_c)`` (hidden
   space, ``v : (d,)``) as the rows of ``S : (m, d)``, ``m = n_classes * n``,
   class-major (class 0's eigenvectors 1..n, then class 1's, ...).
2. **Pseudo-invert in the layer's space** (``--inverse hidden``, the paper's recipe and
   the default). ``M = pinv(S) : (d, m)`` has ``S M = I``: its column ``m_j`` excites
   stacked eigenvector ``j`` by one unit and every other one by zero.
3. **Project to pixels** through the embedding, as ``bilin eig`` shows eigenvectors:
   ``p_j = E^T m_j``. The layer then sees ``E p_j = E E^T m_j``, which is not exactly
   ``m_j``, so the isolation is approximate: the mask leaks a little into the other
   stacked eigenvectors, and how much is measured and reported (``leak``).

   The alternative ``--inverse pixel`` takes the exact minimum-norm pixel mask
   ``p_j = pinv(S E) e_j``: ``S (E p_j) = e_j`` with no leak at all. It is
   ill-conditioned once many eigenvectors are stacked (on the MNIST sample the smallest
   singular value of ``S E`` is 1.19 with 10 rows and 0.006 with 100): the mask is then
   made of near-null pixel directions and, once scaled to unit size, barely excites its
   own eigenvector. Its conditioning is reported.
4. **Sign** (the paper's rule): ``s = sign(p . xbar)``, where ``xbar`` is the mean over
   the *other* classes of each class's mean image (classes weigh equally), so the mask
   points the way images of the other classes already lean. On a tie (no other-class
   image touches the mask's pixels, as can happen at the edge) the mask's largest pixel
   is made positive, so the sign never depends on an eigenvector's arbitrary sign.
5. **Scale** to unit standard deviation about zero over *all* ``n_in`` pixels
   (``sqrt(mean(p^2)) = 1``), so ``strength`` is the root-mean-square pixel change
   and ``||strength * p||_2 = strength * sqrt(n_in)`` for every variant: variants
   are compared at equal L2 budget.

Each mask reports ``excitation = |v_j . E p|`` (the change in its eigenvector's
activation per unit strength), ``efficiency`` (that excitation over the largest any mask
of the same L2 size on the same pixels could give, ``sqrt(n_in) ||E[:, R]^T v_j||``,
reached by the eigenvector itself) and ``leak = max_{k != j} |v_k . E p| / |v_j . E p|``
(0 = perfectly isolated), with the stacked eigenvector ``k`` that receives it.

Variants: ``dense`` (all pixels); ``edge`` (only pixels lit, ``x > 0``, in under 1% of
the images ``R``: hidden inverse, ``p_j = E[:, R]^T m_j`` on those pixels, zero
elsewhere, as the paper does; pixel inverse, ``pinv(S E[:, R])``, so the isolation stays
exact); ``top-pixels`` (the dense mask at a fixed strength restricted to its ``N``
largest-``|p|`` pixels, inputs clamped to [0, 1]). Baseline: the same mask with its
pixels permuted (fixed seed) within the pixels the variant may use (all of them for
dense and top-pixels, the edge for edge), then the same restriction and clamping.

The data set supplies the sign (step 4), the edge pixels and the metrics; the
masks themselves come from the weights.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bilin_cli.core.errors import BilinError, option
from bilin_cli.core.printable import printable, with_article
from bilin_cli.model.bilinear import BilinearLayer, BilinearModel
from bilin_cli.model.interaction import interaction
from bilin_cli.model.spectra import eigh_sorted
from bilin_cli.storage.files import image_size, regular_file

VARIANTS = ("dense", "edge", "top-pixels")
INVERSES = ("hidden", "pixel")  # hidden: the paper's E^T pinv(S); pixel: the exact pinv(S E)
# --inverse pixel warns above this condition number of S E: its masks then come from
# near-null pixel directions (the MNIST sample: 2.2 with 10 stacked rows, 691 with 100).
ILL_CONDITIONED = 100.0
MAX_INPUT_PIXELS = 1 << 24  # an --input PNG larger than this is refused from its header
EDGE_SHARE = 0.01  # a pixel is "edge" when lit (> 0) in under 1% of the images
DENSE_SWEEP = tuple(round(0.025 * i, 3) for i in range(1, 13))  # 0.025 .. 0.300
# Edge pixels reach the hidden layer through embedding columns about 3.5x weaker than
# central ones on the MNIST sample (weight decay shrinks what is almost never lit), so
# the dense range moves nothing there; the edge sweep goes ten times further.
EDGE_SWEEP = tuple(round(0.25 * i, 2) for i in range(1, 13))  # 0.25 .. 3.00
TOP_PIXELS_SWEEP = tuple(range(20, 401, 20))  # N = 20, 40, .., 400
# At unit strength the dense mask's std is a full pixel range: on the MNIST sample its
# ~190 largest pixels exceed 1 in size, so the clamp sets them to 0 or 1, and the
# top-pixels sweep mostly measures how many pixels must be switched, not how far.
TOP_PIXELS_STRENGTH = 1.0


def check_supported(model: BilinearModel) -> None:
    """Masks need a classifier with one bilinear layer and no residual path."""
    if model.kind == "lm":
        raise BilinError(
            "adversarial masks need a classifier (its head defines the classes); this is "
            f"{with_article(model.layout)}"
        )
    if model.n_layers != 1:
        raise BilinError(
            f"adversarial masks support single-bilinear-layer models; this one has "
            f"{model.n_layers}"
        )
    if model.residual:
        raise BilinError(
            "adversarial masks of residual models are not supported: the linear skip path is "
            "not part of the eigendecomposition"
        )


@dataclass
class EigenStack:
    """The stacked top positive eigenvectors of every class and their pseudo-inverse."""

    classes: np.ndarray  # (m,) class of each stacked eigenvector
    ranks: np.ndarray  # (m,) 1-based rank among that class's positive eigenvalues
    eig_ranks: np.ndarray  # (m,) 1-based rank by |lambda| in Q(e_c), as bilin eig numbers it
    eigenvalues: np.ndarray  # (m,)
    S: np.ndarray  # (m, d) eigenvectors as rows (hidden space, unit norm)
    hidden: np.ndarray  # (m, d) rows m_j = column j of pinv(S), so S @ hidden.T = I
    per_class: int

    def index(self, target: int, eig: int) -> int:
        """Row of class ``target``'s eigenvector ``eig`` (1 = top) in the stack."""
        return target * self.per_class + eig - 1


def eigen_stack(model: BilinearModel, per_class: int = 1,
                advance: Callable[[], None] | None = None) -> EigenStack:
    """Stack the top ``per_class`` positive eigenvectors of every class (float64).

    The eigenvectors are those of the interaction part ``Q(e_c)`` of the layer's input
    ``E x`` (with biases, the linear and constant parts are left out: a mask cannot
    change the constant input 1).
    """
    check_supported(model)
    if per_class < 1:
        raise BilinError(f"{option('--per-class', 'per_class')} must be >= 1, got {per_class}")
    L = model.layer(0, np.float64)
    n_cls = L.o
    if n_cls * per_class > L.d:
        raise BilinError(
            f"{n_cls} classes x {per_class} eigenvectors = {n_cls * per_class} stacked vectors "
            f"exceed the layer's input dimension {L.d}: the pseudo-inverse cannot isolate them; "
            f"lower {option('--per-class', 'per_class')}"
        )
    rows, classes, ranks, eig_ranks, lams = [], [], [], [], []
    for c in range(n_cls):
        u = np.zeros(n_cls)
        u[c] = 1.0
        lam, vecs = eigh_sorted(interaction(L, u).Q)
        pos = np.flatnonzero(lam > 0)[:per_class]  # |lambda| order = largest positive first
        if pos.size < per_class:
            raise BilinError(
                f"class {c} has only {pos.size} positive eigenvalue(s); lower "
                f"{option('--per-class', 'per_class')}"
            )
        rows.append(vecs[pos])
        lams.append(lam[pos])
        classes += [c] * per_class
        ranks += list(range(1, per_class + 1))
        eig_ranks += [int(i) + 1 for i in pos]
        if advance:
            advance()
    S = np.concatenate(rows)
    return EigenStack(np.array(classes), np.array(ranks), np.array(eig_ranks),
                      np.concatenate(lams), S,
                      np.linalg.pinv(S).T, per_class)


def embedding(model: BilinearModel) -> np.ndarray:
    """``E : (d, n_in)`` in float64; the identity for a model that takes ``x`` directly."""
    E = model.embed(np.float64)
    return np.eye(model.shapes[0].d) if E is None else E


def edge_region(x: np.ndarray, share: float = EDGE_SHARE) -> np.ndarray:
    """``(n_in,)`` bool: pixels lit (``> 0``) in fewer than ``share`` of the images ``x``."""
    return (x > 0).mean(axis=0) < share


def _region(region: np.ndarray | None, n_in: int) -> np.ndarray:
    return np.ones(n_in, bool) if region is None else region


def hidden_directions(stack: EigenStack, E: np.ndarray,
                      region: np.ndarray | None = None) -> np.ndarray:
    """The paper's recipe: rows ``p_j = E[:, R]^T m_j`` placed into ``(m, n_in)`` (zero
    outside ``R``), ``m_j`` column ``j`` of ``pinv(S)``."""
    n_in = E.shape[1]
    region = _region(region, n_in)
    out = np.zeros((stack.S.shape[0], n_in))
    out[:, region] = stack.hidden @ E[:, region]
    return out


def pixel_inverse(S: np.ndarray, E: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
    """Rows ``p_j = pinv(S E[:, R]) e_j`` placed into ``(m, n_in)`` (zero outside ``R``).

    ``S (E p_j) = e_j`` whenever ``S E[:, R]`` has full row rank ``m``.
    """
    n_in = E.shape[1]
    region = _region(region, n_in)
    if region.sum() < S.shape[0]:
        raise BilinError(
            f"only {int(region.sum())} pixels may change but {S.shape[0]} eigenvectors are "
            f"stacked: the mask cannot isolate one of them; lower "
            f"{option('--per-class', 'per_class')} or use "
            f"{option('--variant dense', 'variant=dense')}"
        )
    out = np.zeros((S.shape[0], n_in))
    out[:, region] = np.linalg.pinv(S @ E[:, region]).T
    return out


def conditioning(A: np.ndarray, name: str) -> dict:
    """Extreme singular values and condition number of the ``(m, k)`` matrix inverted."""
    sv = np.linalg.svd(A, compute_uv=False)
    lo, hi = float(sv[-1]), float(sv[0])
    return {"matrix": name, "smallest_singular_value": lo, "largest_singular_value": hi,
            "condition_number": hi / lo if lo > 0 else float("inf")}


def mask_directions(stack: EigenStack, E: np.ndarray, inverse: str,
                    region: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """``(directions (m, n_in), conditioning)`` for ``inverse`` in :data:`INVERSES`.

    Rows are the unsigned, unscaled pixel masks; ``conditioning`` is that of the matrix
    the inverse is taken of: ``S`` (hidden) or ``S E`` restricted to the region (pixel).
    """
    n_in = E.shape[1]
    region = _region(region, n_in)
    where = "" if region.all() else "[:, edge]"
    if inverse == "hidden":
        return hidden_directions(stack, E, region), conditioning(stack.S, "S")
    if inverse == "pixel":
        directions = pixel_inverse(stack.S, E, region)
        return directions, conditioning(stack.S @ E[:, region], f"S E{where}")
    raise BilinError(f"{option('--inverse', 'inverse')} {inverse!r}: choose one of "
                     f"{', '.join(INVERSES)}")


@dataclass
class Mask:
    """One target's mask at unit strength, ready to add to inputs."""

    target: int
    eig: int  # 1-based rank among the target's positive eigenvalues
    variant: str
    index: int  # row of the target eigenvector in the stack (0-based, internal)
    pixel: np.ndarray  # (n_in,) sign fixed, unit std about zero over all pixels
    baseline: np.ndarray  # (n_in,) ``pixel`` permuted within ``region``
    region: np.ndarray  # (n_in,) bool: pixels the variant may change
    sign: int
    excitations: np.ndarray  # (m,) S E pixel: the stack's activations one unit adds
    excitation: float  # |v_j . E pixel|: the target eigenvector's, per unit strength
    efficiency: float  # excitation / sqrt(n_in) ||E[:, R]^T v_j|| (1 = the best possible)
    leak: float  # max_{k != j} |excitations_k| / excitation (0 = perfectly isolated)
    leak_class: int | None  # class of the stacked eigenvector that receives the most
    leak_eig: int | None  # its 1-based rank among that class's positive eigenvalues
    eig_rank: int = 0  # the target eigenvector's rank as bilin eig numbers it (|lambda| order)
    leak_eig_rank: int | None = None  # the same for the eigenvector that receives the most


def other_class_mean(x: np.ndarray, y: np.ndarray, target: int) -> np.ndarray:
    """``(n_in,)`` mean over the classes other than ``target`` of each class's mean image."""
    classes = [c for c in np.unique(y) if c != target]
    if not classes:
        raise BilinError(f"the data has no images outside class {target}: nothing to move")
    return np.mean([x[y == c].mean(axis=0, dtype=np.float64) for c in classes], axis=0)


def build_mask(
    stack: EigenStack,
    E: np.ndarray,
    directions: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    target: int,
    eig: int,
    variant: str,
    region: np.ndarray,
    seed: int = 0,
) -> Mask:
    """Sign-fixed, unit-std mask for ``target``'s eigenvector ``eig`` (see module docstring).

    ``directions : (m, n_in)`` is :func:`mask_directions` for ``region``; ``x : (N, n_in)``,
    ``y : (N,)`` supply the images of the other classes that fix the sign.
    """
    j = stack.index(target, eig)
    p = directions[j].copy()
    xbar = other_class_mean(x, y, target)
    overlap = float(p @ xbar)
    if overlap == 0:  # no other-class image touches the mask: its largest pixel is positive
        overlap = float(p[np.argmax(np.abs(p))])
    sign = -1 if overlap < 0 else 1
    rms = float(np.sqrt(np.mean(p**2)))
    if rms == 0:
        raise BilinError(f"the mask for class {target} is zero: its eigenvector has no pixels"
                         + ("" if region.all() else " in the edge region"))
    p *= sign / rms
    excitations = stack.S @ (E @ p)
    excitation = float(abs(excitations[j]))
    best = float(np.sqrt(p.size) * np.linalg.norm(stack.S[j] @ E[:, region]))
    efficiency = excitation / best if best > 0 else 0.0
    off = np.abs(excitations)
    off[j] = -1.0
    k = int(np.argmax(off)) if off.size > 1 else None
    if k is None:
        leak, leak_class, leak_eig, leak_rank = 0.0, None, None, None
    else:
        leak = float(off[k] / excitation) if excitation > 0 else float("inf")
        leak_class, leak_eig = int(stack.classes[k]), int(stack.ranks[k])
        leak_rank = int(stack.eig_ranks[k])
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(region)
    baseline = np.zeros_like(p)
    baseline[idx] = p[rng.permutation(idx)]
    return Mask(target, eig, variant, j, p, baseline, region, sign, excitations, excitation,
                efficiency, leak, leak_class, leak_eig, int(stack.eig_ranks[j]), leak_rank)


def restrict_top(mask: np.ndarray, n_pixels: int) -> np.ndarray:
    """``mask`` with all but its ``n_pixels`` largest-``|value|`` pixels set to zero."""
    keep = np.argsort(-np.abs(mask), kind="stable")[:n_pixels]
    out = np.zeros_like(mask)
    out[keep] = mask[keep]
    return out


def perturb(x: np.ndarray, mask: np.ndarray, strength: float,
            n_pixels: int | None = None) -> np.ndarray:
    """``x + strength * mask``; with ``n_pixels``: top-pixels only, clamped to [0, 1]."""
    if n_pixels is None:
        return x + (strength * mask).astype(x.dtype)
    q = restrict_top(strength * mask, n_pixels).astype(x.dtype)
    return np.clip(x + q, 0, 1)


@dataclass
class LayerCache:
    """The layer's pre-activations on the clean data, computed once for every mask."""

    H: np.ndarray  # (N, d) E x
    left: np.ndarray  # (N, h) W E x + b_w
    right: np.ndarray  # (N, h) V E x + b_v


def layer_cache(model: BilinearModel, x: np.ndarray, dtype: type = np.float32) -> LayerCache:
    L = model.layer(0, dtype)
    E = model.embed(dtype)
    H = x.astype(dtype) if E is None else x.astype(dtype) @ E.T
    return LayerCache(H, _side(H, L.W, L.b_w), _side(H, L.V, L.b_v))


def _side(H: np.ndarray, W: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    out = H @ W.T
    return out if b is None else out + b


def _logits(L: BilinearLayer, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    g = left * right
    y = g if L.P is None else g @ L.P.T
    return y if L.b_p is None else y + L.b_p


def _rates(logits: np.ndarray, y: np.ndarray, target: int) -> tuple[float, float]:
    """``(accuracy, share of other-class images predicted as target)``."""
    pred = np.argmax(logits, axis=1)
    other = y != target
    return float(np.mean(pred == y)), float(np.mean(pred[other] == target))


def clean_rates(model: BilinearModel, cache: LayerCache, y: np.ndarray,
                targets: Sequence[int]) -> dict[int, tuple[float, float]]:
    """Accuracy and target rate of the unperturbed model, per target."""
    logits = _logits(model.layer(0, cache.H.dtype.type), cache.left, cache.right)
    return {t: _rates(logits, y, t) for t in targets}


def sweep(
    model: BilinearModel,
    cache: LayerCache,
    x: np.ndarray,
    y: np.ndarray,
    mask: Mask,
    strengths: Sequence[float],
    n_pixels: Sequence[int] | None = None,
    advance: Callable[[], None] | None = None,
) -> list[dict]:
    """One row per strength (or per ``n_pixels`` at the single strength ``strengths[0]``).

    Rows: ``strength``, (``n_pixels``,) ``accuracy``, ``target_rate``,
    ``baseline_accuracy``, ``baseline_target_rate``, ``ratio`` (target rate over the
    baseline's; None when the baseline moves nothing).

    Without clamping the layer input is ``E x + s E p``, so each strength costs one
    element-wise product and the head: ``W E (x + s p) = W E x + s W E p``.
    """
    dtype = cache.H.dtype.type
    L = model.layer(0, dtype)
    E = model.embed(dtype)
    rows = []
    if n_pixels is None:
        for s in strengths:
            row = {"strength": float(s)}
            for key, vec in (("", mask.pixel), ("baseline_", mask.baseline)):
                dh = (s * vec).astype(dtype)
                if E is not None:
                    dh = E @ dh
                logits = _logits(L, cache.left + L.W @ dh, cache.right + L.V @ dh)
                row[key + "accuracy"], row[key + "target_rate"] = _rates(logits, y, mask.target)
            rows.append(_with_ratio(row))
            if advance:
                advance()
        return rows
    s = float(strengths[0])
    # The layer's input weights seen from the pixels: W E, V E : (h, n_in).
    WE, VE = (L.W, L.V) if E is None else (L.W @ E, L.V @ E)
    for n in n_pixels:
        row = {"n_pixels": int(n), "strength": s}
        for key, vec in (("", mask.pixel), ("baseline_", mask.baseline)):
            q = restrict_top(s * vec, int(n))
            idx = np.flatnonzero(q)
            # Clamping makes the change per image, but only on the N chosen pixels.
            delta = np.clip(x[:, idx] + q[idx].astype(dtype), 0, 1) - x[:, idx]
            logits = _logits(L, cache.left + delta @ WE[:, idx].T,
                             cache.right + delta @ VE[:, idx].T)
            row[key + "accuracy"], row[key + "target_rate"] = _rates(logits, y, mask.target)
        rows.append(_with_ratio(row))
        if advance:
            advance()
    return rows


def _with_ratio(row: dict) -> dict:
    b = row["baseline_target_rate"]
    row["ratio"] = row["target_rate"] / b if b > 0 else None
    return row


def mean_rows(per_target: list[list[dict]]) -> list[dict]:
    """Average the rows of several targets (same sweep) metric by metric.

    ``ratio`` is the ratio of the mean rates, not the mean of the ratios.
    """
    out = []
    for rows in zip(*per_target, strict=True):
        row = {k: rows[0][k] for k in ("n_pixels", "strength") if k in rows[0]}
        for k in ("accuracy", "target_rate", "baseline_accuracy", "baseline_target_rate"):
            row[k] = float(np.mean([r[k] for r in rows]))
        out.append(_with_ratio(row))
    return out


def input_logits(model: BilinearModel, x1: np.ndarray, mask: Mask, strength: float,
                 n_pixels: int | None = None, dtype: type = np.float32) -> dict[str, np.ndarray]:
    """Logits ``(n_classes,)`` of one input ``x1 : (n_in,)``: clean, masked, baseline-masked."""
    x1 = np.asarray(x1, dtype)[None]
    return {
        "old": model.forward(x1, dtype)[0],
        "new": model.forward(perturb(x1, mask.pixel, strength, n_pixels), dtype)[0],
        "baseline": model.forward(perturb(x1, mask.baseline, strength, n_pixels), dtype)[0],
    }


@dataclass
class InputImage:
    """One input read by ``--input``."""

    x: np.ndarray  # (n_in,) flattened row-major
    label: int | None  # None for a PNG
    data: str  # the data file it came from ("" for a PNG)
    shape: tuple[int, ...] | None  # image shape, where known


def load_input(spec: str, dtype: type = np.float32, n_in: int | None = None) -> InputImage:
    """``DATA:INDEX`` (an .npz or idx directory and a 0-based index) or ``IMAGE.png``.

    A PNG is read with
    matplotlib (values in [0, 1]); colour images are averaged over R, G, B. Like the
    data sets, it must show a light digit on a dark background.
    """
    if spec.lower().endswith(".png"):
        if not os.path.lexists(spec):
            raise BilinError(f"{printable(spec)}: no such image file")
        path = regular_file(spec, "PNG file")
        where = printable(path)
        import matplotlib.image

        try:
            w, h = image_size(path)  # the header only: refuse giant images undecoded
            if n_in is not None and w * h != n_in:
                raise BilinError(f"{option('--input', 'input')} {where}: {w}x{h} = {w * h} pixels, "
                                 f"the model takes "
                                 f"{n_in}")
            if w * h > MAX_INPUT_PIXELS:
                raise BilinError(f"{where}: {w}x{h} pixels is far larger than any input")
            img = np.asarray(matplotlib.image.imread(path), dtype=np.float64)
        except BilinError:
            raise
        except Exception as exc:  # PIL raises several types for a broken file
            raise BilinError(f"{where}: not a readable PNG ({printable(exc, 120)})") from None
        if img.ndim == 3:
            img = img[..., :3].mean(axis=2)
        if img.ndim != 2:
            raise BilinError(f"{where}: expected a greyscale image, got shape {img.shape}")
        if img.max() > 1:  # 16-bit or integer PNGs come back unscaled
            img = img / (65535.0 if img.max() > 255 else 255.0)
        return InputImage(img.reshape(-1).astype(dtype), None, "", img.shape)
    data, sep, index = spec.rpartition(":")
    if not sep or not data:
        raise BilinError(f"{option('--input', 'input')} {printable(spec, 80)}: give DATA.npz:INDEX "
                         f"(e.g. "
                         "sample_checkpoints/data/mnist-test.npz:17) or IMAGE.png")
    try:
        i = int(index)
    except ValueError:
        raise BilinError(f"{option('--input', 'input')} {printable(spec, 80)}: the index after ':' "
                         f"must be an "
                         "integer") from None
    from bilin_cli.storage.data import load_dataset

    dataset = load_dataset(data, dtype)
    n = dataset.y.size
    if not 0 <= i < n:
        raise BilinError(f"{option('--input', 'input')} index {i} is out of range: "
                         f"{printable(data)} has {n} images "
                         f"(0..{n - 1})")
    return InputImage(dataset.x[i], int(dataset.y[i]), data, dataset.image_shape)

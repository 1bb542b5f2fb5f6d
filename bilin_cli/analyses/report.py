"""The data of ``bilin report``: one overview and one page per output direction, as plain data.

:func:`build_report` gathers everything the browsable report shows from the library
modules the other commands use (``decompose`` for ``bilin eig``, ``truncation`` for
``bilin truncate``, ``adversarial`` for ``bilin adversarial``, ``token_reading`` and
``features`` for language models and SAEs). It prints nothing; the HTML is written by
:mod:`bilin_cli.render.report_html`.

Every page's eigenpairs come from :func:`bilin_cli.analyses.decompose.decompose` with every
eigenpair kept, so its numbers are those ``bilin eig`` prints (``|lambda|`` descending,
ranks from 1). The truncation bound of a page is the exact one of docs/architecture.md
("Truncation"): keeping the ``K``
eigenpairs of largest ``|lambda|``, ``|x^T Q x - x^T Q_K x| <= max_discarded |lambda| * ||x||^2``
with ``x`` in the layer's input space (for a classifier with biases, the augmented input
``[E x; 1]``, whose spectrum ``bilin truncate`` truncates).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import numpy as np

from bilin_cli.analyses import directions as dirs
from bilin_cli.analyses.decompose import decompose
from bilin_cli.core.errors import BilinError
from bilin_cli.model.bilinear import BilinearModel
from bilin_cli.model.spectra import check_top, share_of_top, summarize

DEFAULT_FEATURES = 64  # SAE feature pages by default: the most low-rank ones
RANK_K = 2  # features are ranked by the share of sum |lambda| in their top RANK_K
MASK_STRENGTHS = (0.1, 0.2, 0.3)  # the masks' target rate at these strengths (rms pixel change)
SWEEP_KS = (0, 1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500)
MAX_BOUND_POINTS = 200  # the bound curve is drawn for K = 0 .. this many
TOKENS_PER_SIDE = 8  # token readings: tokens per sign of each eigenvector
FEATURES_PER_EIG = 8  # input-SAE readings: features per eigenvector

TOKENS_NOTE = ("tokens: direct path from the embedding ({x_t}; attention and "
               "earlier layers left out), as bilin eig --tokens reads them: v . x_t > 0 in the "
               "left column, < 0 in the right, largest first")

Progress = Callable[[str, int], AbstractContextManager]


@dataclass
class Eigenvector:
    """One eigenpair shown on a page: its rank (from 1, ``|lambda|`` order) and readings."""

    rank: int
    eigenvalue: float
    vector: np.ndarray  # (dim,) in the page's basis (pixels for image models)
    tokens: dict | None = None  # {"positive": [...], "negative": [...]} (token_reading)
    features: list[dict] | None = None  # input-SAE loadings D^T v, largest |loading| first


@dataclass
class DirectionPage:
    """One output direction (a class, a token or an SAE feature) and what its page shows."""

    key: str  # file stem: class-3, token-17, feature-12
    kind: str  # class | token | feature
    index: int
    label: str  # as people read it: the class name, the token's text
    eigenvalues: np.ndarray  # (d,) every eigenvalue, |lambda| descending, as bilin eig
    summary: dict  # spectra.summarize plus top_k_share
    positive: list[Eigenvector]
    negative: list[Eigenvector]
    bound: dict  # k, max_discarded, share_kept (curves); at_top: the bound for --top
    basis: str
    image_shape: tuple[int, ...] | None = None
    mask: dict | None = None  # classifiers: adversarial mask of the top positive eigenvector
    linear_norm: float | None = None  # models with biases: the linear part's size
    constant: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    title: str
    model: dict  # storage.summary.describe: what bilin info shows
    layer: int
    top: int
    pages: list[DirectionPage]
    truncation: dict | None = None  # classifiers with data: truncation.accuracy_sweep
    bound_space: str = "layer input"  # the x of the pages' bounds |error| <= bound * ||x||^2
    notes: list[str] = field(default_factory=list)
    # Fully bilinear transformers: bilin attention's document (every head, read by weight)
    attention: dict | None = None


def _bound(lam: np.ndarray, top: int) -> dict:
    """Per K: the largest discarded ``|lambda|`` (the bound's factor) and the share kept."""
    a = np.sort(np.abs(np.asarray(lam, dtype=np.float64)))[::-1]
    total = a.sum()
    ks = np.arange(0, min(a.size, MAX_BOUND_POINTS) + 1)
    kept = np.concatenate([[0.0], np.cumsum(a)])[ks] / (total if total else 1.0)
    worst = np.array([a[k] if k < a.size else 0.0 for k in ks])
    k = min(top, a.size)
    return {"k": ks, "max_discarded": worst, "share_kept": kept, "top": k,
            "at_top": float(a[k]) if k < a.size else 0.0,
            "share_at_top": float(a[:k].sum() / total) if total else 1.0}


def _pick(lam: np.ndarray, vecs: np.ndarray, top: int, sign: int) -> list[Eigenvector]:
    ranks = np.flatnonzero(np.sign(lam) == sign)[:top]
    return [Eigenvector(int(r) + 1, float(lam[r]), vecs[r]) for r in ranks]


def _label(model: BilinearModel, u: dirs.Direction) -> str:
    info = u.info
    if info["kind"] == "class":
        name = info.get("name")
        return f"class {info['index']}" + (f" ({name})" if name and name != str(info["index"])
                                           else "")
    if info["kind"] == "token":
        s = info.get("string")
        return f"token {info['index']}" + (f" {s!r}" if s is not None else "")
    return f"feature {info['feature']}"


def _kind_index(u: dirs.Direction) -> tuple[str, int]:
    if u.info["kind"] == "sae_feature":
        return "feature", int(u.info["feature"])
    return u.info["kind"], int(u.info["index"])


def direction_page(model: BilinearModel, layer: int, u: dirs.Direction, top: int,
                   dtype: type = np.float32, sae_in=None, spectrum=None) -> DirectionPage:
    """One direction's page: its whole spectrum, its top ``top`` eigenvectors of each sign
    (with token and input-SAE readings where they apply) and its truncation bound.

    ``spectrum``: eigenvalues to take the bound from (a classifier's augmented spectrum,
    as ``bilin truncate`` uses); default the page's own.
    """
    dec = decompose(model, layer, u, top=None, dtype=dtype)
    lam, vecs = dec.eigenvalues, dec.eigenvectors
    summary = {**summarize(lam), "top_k": top, "top_k_share": share_of_top(lam, top)}
    pos, neg = _pick(lam, vecs, top, 1), _pick(lam, vecs, top, -1)
    shown = pos + neg
    notes = list(dec.notes)
    if shown and model.kind == "lm" and model.embed_key is not None:
        from bilin_cli.analyses.token_reading import read_as_tokens, token_input

        notes.append(TOKENS_NOTE.format(x_t=token_input(model)))

        for e, t in zip(shown, read_as_tokens(model, layer, np.stack([e.vector for e in shown]),
                                              TOKENS_PER_SIDE), strict=True):
            e.tokens = t
    if shown and sae_in is not None:
        notes.append("input-SAE features: the eigenvector's loadings D^T v on the input SAE's "
                     "decoder columns, largest |loading| first (as bilin interact reads them)")
        for e in shown:
            load = sae_in.dec.T @ e.vector
            idx = np.argsort(-np.abs(load), kind="stable")[:FEATURES_PER_EIG]
            e.features = [{"feature": int(i), "loading": float(load[i])} for i in idx]
    kind, index = _kind_index(u)
    return DirectionPage(
        key=f"{kind}-{index}", kind=kind, index=index, label=_label(model, u),
        eigenvalues=lam, summary=summary, positive=pos, negative=neg,
        bound=_bound(lam if spectrum is None else spectrum, top), basis=dec.basis,
        image_shape=dec.input_shape,
        linear_norm=None if dec.linear is None else float(np.linalg.norm(dec.linear)),
        constant=dec.constant, notes=notes,
    )


def _masks(model: BilinearModel, data, classes: list[int]) -> dict[int, dict]:
    """Per class: the dense adversarial mask of its top positive eigenvector (``bilin
    adversarial``'s recipe, hidden-space inverse) and its target rate against strength."""
    from bilin_cli.analyses import adversarial as adv
    stack = adv.eigen_stack(model, 1)
    E = adv.embedding(model)
    directions, _ = adv.mask_directions(stack, E, "hidden")
    region = np.ones(E.shape[1], bool)
    cache = adv.layer_cache(model, data.x)
    out = {}
    for c in classes:
        m = adv.build_mask(stack, E, directions, data.x, data.y, c, 1, "dense", region)
        rows = adv.sweep(model, cache, data.x, data.y, m, MASK_STRENGTHS)
        out[c] = {"pixel": m.pixel, "eig_rank": m.eig_rank,
                  "eigenvalue": float(stack.eigenvalues[m.index]), "excitation": m.excitation,
                  "efficiency": m.efficiency, "leak": m.leak, "sweep": rows}
    return out


def _truncation(model: BilinearModel, data, dtype) -> tuple[list, dict | None]:
    """Every class's (augmented) spectrum, and accuracy against K where there is data."""
    from bilin_cli.analyses.truncation import accuracy_sweep, class_spectra

    spectra = class_spectra(model, dtype)
    if data is None:
        return spectra, None
    dim = spectra[0].lam.size
    ks = sorted({k for k in SWEEP_KS if k <= dim} | {dim})
    return spectra, accuracy_sweep(model, spectra, data, ks, dtype)


def build_report(
    model: BilinearModel,
    description: dict,
    directions: list[dirs.Direction],
    *,
    layer: int,
    title: str,
    top: int = 4,
    sae_in=None,
    dataset=None,
    notes: list[str] | None = None,
    dtype: type = np.float32,
    progress: Progress | None = None,
) -> Report:
    """Everything ``bilin report`` shows for ``directions`` of ``model``'s layer ``layer``.

    ``description``: what ``bilin info`` shows of the checkpoint. ``sae_in``: an input SAE
    whose decoder reads each eigenvector as features. ``dataset`` (labelled data; single-
    layer classifiers only) gives the accuracy-versus-K curve and adversarial masks.
    ``progress``: a ``(description, total)`` context manager yielding ``advance()``.
    Loading and choosing the directions is :func:`bilin_cli.api.report`'s job.
    """
    check_top(top, "top")
    if not directions:
        raise BilinError("no directions to report")
    progress = progress or (lambda text, total: nullcontext(lambda n=1: None))
    notes = list(notes or ())
    index = layer
    spectra = truncation = masks = None
    if is_classifier(model):
        with progress("truncation sweep", 1) as advance:
            spectra, truncation = _truncation(model, dataset, dtype)
            advance()
        if dataset is not None and model.kind == "classifier":
            with progress("adversarial masks", 1) as advance:
                masks = _masks(model, dataset, [u.info["index"] for u in directions])
                advance()
    pages = []
    with progress("decomposing directions", len(directions)) as advance:
        for u in directions:
            c = u.info["index"] if u.info["kind"] == "class" else None
            page = direction_page(model, index, u, top, dtype, sae_in,
                                  spectra[c].lam if spectra is not None and c is not None
                                  else None)
            if masks is not None and c is not None:
                page.mask = masks[c]
            pages.append(page)
            advance()
    space = "layer input E x" if model.embed_key and model.kind != "lm" else "layer input"
    if spectra is not None and model.shapes[0].bias:
        space = "augmented layer input [E x; 1]"
        notes.append("biases: truncation bounds are for the augmented input [E x; 1], as "
                     "bilin truncate truncates it; the pages' spectra are the quadratic part")
    attention = None
    if model.n_attention:
        from bilin_cli.analyses.attention_circuits import read_heads

        n_heads = model.n_attention * model.attention_settings.n_heads
        with progress("reading attention heads", n_heads) as advance:
            attention = read_heads(model, top=3, pairs=5, tokens=TOKENS_PER_SIDE // 2,
                                   dtype=dtype).as_dict()
            advance(n_heads)
    return Report(title, description, index, top, pages, truncation, space, notes, attention)


def is_classifier(model: BilinearModel) -> bool:
    """Single-layer classifiers get an accuracy curve and masks (with data)."""
    return model.kind != "lm" and model.n_layers == 1 and not model.residual


def ranked_features(model: BilinearModel, layer: int, s_out, n: int, dtype) -> list[int]:
    """The ``n`` most low-rank features of an output SAE (``bilin rank-features``)."""
    from bilin_cli.analyses.features import rank_features

    rows = rank_features(model.layer(layer, dtype), s_out.enc, RANK_K, sort_by="top_k_share")
    return [int(r["feature"]) for r in rows[:n]]

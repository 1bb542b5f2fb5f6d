"""Figures for ``hosvd`` and ``explain``; imported only when --plot is given.

Drawn in the shared style (:mod:`bilin_cli.render.style`): eigenvectors and loadings in
the diverging RdBu map on a scale symmetric about 0 (white = 0) with a colorbar, each
eigenvector panel on its own scale; inputs in grey on the data range; eigenvalues printed
by :func:`~bilin_cli.render.style.eigenvalue_text`. ``build_hosvd_plot`` and
``build_explain_plot`` return the figure without writing it.
"""

from __future__ import annotations

import math

import numpy as np

from bilin_cli.analyses.explain import Explanation
from bilin_cli.analyses.hosvd import HOSVD
from bilin_cli.render import style as st
from bilin_cli.render.plotting import _pyplot, save_figure

_CONTRIBUTION = "contribution λ_i (v_i · h)² to the logit"


def image_shape(shape: tuple[int, ...] | None, n: int) -> tuple[int, int] | None:
    """The 2-D shape to draw an ``n``-vector as: the model's input shape, or a square."""
    if shape and len(shape) == 2 and shape[0] * shape[1] == n:
        return int(shape[0]), int(shape[1])
    side = math.isqrt(n)
    return (side, side) if side * side == n and side > 1 else None


def _heatmap(ax, vec: np.ndarray, shape: tuple[int, int], fig=None):
    """One eigenvector as an image on its own symmetric scale (with ``fig``: a colorbar)."""
    return st.signed_image(ax, vec.reshape(shape), fig)


@st.styled
def build_hosvd_plot(res: HOSVD, title: str, n_images: int = 4):
    """The figure of :func:`hosvd_plot`, not written."""
    plt = _pyplot()
    shape = image_shape(res.input_shape, res.eigenvectors.shape[-1]) if res.basis == "input" \
        else None
    n_img = min(n_images, res.sigma.size) if shape else 0
    ncols = max(2, n_img)
    fig = plt.figure(figsize=(max(9, 2.3 * ncols), 6.6 if n_img else 3.8), layout="constrained")
    grid = fig.add_gridspec(2 if n_img else 1, ncols, height_ratios=[1.3, 1] if n_img else [1])
    ax = fig.add_subplot(grid[0, : ncols // 2])
    ks = np.arange(1, res.sigma_all.size + 1)
    ax.bar(ks, res.sigma_all,
           color=[st.POSITIVE_COLOR if k <= res.sigma.size else st.MUTED_COLOR for k in ks])
    ax.set_xlabel("component k (from 1)")
    st.integer_axis(ax)
    ax.set_ylabel("singular value σ_k")
    ax.set_title(f"singular values (rank {res.rank}; grey: not shown)")
    ax = fig.add_subplot(grid[0, ncols // 2 :])
    if not res.U.size:  # B is zero: no component, nothing to draw
        ax.axis("off")
        ax.text(0.5, 0.5, "B is zero: no components", ha="center", va="center")
        return st.apply(fig, title)
    st.signed_image(ax, res.U, fig, label="loading", aspect="auto")
    ax.set_xlabel("component k")
    ax.set_ylabel("output" if not res.output_names else "output (class)")
    ax.set_title("loadings u_k (RdBu, centred on 0)")
    ax.set_xticks(np.arange(res.sigma.size), [str(k + 1) for k in range(res.sigma.size)])
    if res.output_names and res.o <= 30:
        ax.set_yticks(np.arange(res.o), res.output_names)
    for k in range(n_img):
        ax = fig.add_subplot(grid[1, k])
        _heatmap(ax, res.eigenvectors[k, 0], shape, fig)
        ax.set_title(f"component {k + 1}: eigenvector #1\n{st.lambda_text(res.eigenvalues[k, 0])}",
                     fontsize=st.PANEL_TITLE_SIZE)
    if n_img:
        fig.supxlabel("images: each component's top eigenvector in input space, blue > 0, "
                      "red < 0, each on its own scale symmetric about 0", fontsize=st.TICK_SIZE)
    return st.apply(fig, title)


def hosvd_plot(res: HOSVD, title: str, path, force, n_images: int = 4):
    """Singular values, loadings heatmap, and (image models) each component's top eigenvector.

    Components are numbered from 1 (``component 1`` has the largest sigma) and so are
    eigenvectors (``eigenvector 1`` = largest |lambda|), as in the table and JSON. The
    format (.png, .pdf, .svg) follows ``path``'s extension.
    """
    return save_figure(build_hosvd_plot(res, title, n_images), path, force)


def _picks(ex: Explanation, top: int, per_sign: int) -> list[np.ndarray]:
    return [np.concatenate([ce.top(min(top, per_sign), +1), ce.top(min(top, per_sign), -1)])
            for ce in ex.classes]


def _sign_color(x: float) -> str:
    return st.POSITIVE_COLOR if x >= 0 else st.NEGATIVE_COLOR


@st.styled
def build_explain_plot(ex: Explanation, top: int, title: str, per_sign: int = 3):
    """The figure of :func:`explain_plot`, not written."""
    plt = _pyplot()
    shape = image_shape(ex.input_shape, ex.classes[0].vectors.shape[1]) \
        if ex.basis == "input" else None
    picks = _picks(ex, top, per_sign)
    n = len(ex.classes)
    if shape is None:
        # No pixel picture of the eigenvectors: bar charts of the contributions instead.
        fig, axes = plt.subplots(n, 1, figsize=(7, 1.0 + 1.6 * n), squeeze=False,
                                 layout="constrained")
        for ax, ce, idx in zip(axes[:, 0], ex.classes, picks, strict=True):
            vals = ce.contributions[idx]
            ax.barh(np.arange(idx.size), vals, color=[_sign_color(v) for v in vals])
            ax.set_yticks(np.arange(idx.size),
                          [f"#{i + 1} ({st.lambda_text(ce.eigenvalues[i])})" for i in idx])
            ax.axvline(0, color="k", lw=0.6)
            ax.invert_yaxis()
            ax.set_ylabel("eigenvector")
            ax.set_xlabel(_CONTRIBUTION)
            ax.set_title(f"class {ce.name}: logit {st.value_text(ce.logit)}")
        return st.apply(fig, title)
    ncols = 1 + max(max((p.size for p in picks), default=0), 1)
    fig, axes = plt.subplots(n, ncols, figsize=(2.0 * ncols, 2.0 * n + 0.7), squeeze=False,
                             layout="constrained")
    in_shape = image_shape(ex.input_shape, ex.input.x.size)
    for r, (ce, idx) in enumerate(zip(ex.classes, picks, strict=True)):
        ax = axes[r, 0]
        if in_shape:
            st.grey_image(ax, ex.input.x.reshape(in_shape), 0.0,
                          max(1.0, float(ex.input.x.max())))
        else:
            st.bare(ax)
        ax.set_title(f"class {ce.name}\nlogit {st.value_text(ce.logit)}")
        if r == 0 and in_shape:
            ax.set_xlabel("input", fontsize=st.TICK_SIZE)
        for j in range(1, ncols):
            ax = axes[r, j]
            if j - 1 >= idx.size:
                ax.axis("off")
                continue
            i = idx[j - 1]
            _heatmap(ax, ce.vectors[i], shape, fig)
            ax.set_title(f"#{i + 1}  {st.lambda_text(ce.eigenvalues[i])}\n"
                         f"contribution {st.value_text(ce.contributions[i])}",
                         fontsize=st.PANEL_TITLE_SIZE, color=_sign_color(ce.contributions[i]))
    fig.supxlabel("left: the input (grey); then per class the eigenvectors with the largest "
                  "positive and negative contributions, blue > 0, red < 0, each on its own "
                  "scale symmetric about 0", fontsize=st.TICK_SIZE)
    return st.apply(fig, title)


def explain_plot(ex: Explanation, top: int, title: str, path, force, per_sign: int = 3):
    """The paper's explanation figure: the input, then per class its largest contributions."""
    return save_figure(build_explain_plot(ex, top, title, per_sign), path, force)

"""Figures for ``hosvd`` and ``explain`` (PNG, headless); imported only when --plot is given.

Eigenvectors are drawn with the diverging RdBu map centred on 0 (white = 0), each
panel scaled to its own largest magnitude.
"""

from __future__ import annotations

import math

import numpy as np

from bilin_cli.explain import Explanation
from bilin_cli.hosvd import HOSVD
from bilin_cli.render.plotting import _pyplot, save_figure


def image_shape(shape: tuple[int, ...] | None, n: int) -> tuple[int, int] | None:
    """The 2-D shape to draw an ``n``-vector as: the model's input shape, or a square."""
    if shape and len(shape) == 2 and shape[0] * shape[1] == n:
        return int(shape[0]), int(shape[1])
    side = math.isqrt(n)
    return (side, side) if side * side == n and side > 1 else None


def _heatmap(ax, vec: np.ndarray, shape: tuple[int, int]):
    a = float(np.abs(vec).max()) or 1.0
    im = ax.imshow(vec.reshape(shape), cmap="RdBu", vmin=-a, vmax=a)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def hosvd_plot(res: HOSVD, title: str, path, force, n_images: int = 4):
    """Singular values, loadings heatmap, and (image models) each component's top eigenvector.

    Components are numbered from 1 (``component 1`` has the largest sigma) and so are
    eigenvectors (``eigenvector 1`` = largest |lambda|), as in the table and JSON. The
    format (.png, .pdf, .svg) follows ``path``'s extension.
    """
    from bilin_cli.render.figures import save_figure as save_by_extension

    plt = _pyplot()
    shape = image_shape(res.input_shape, res.eigenvectors.shape[-1]) if res.basis == "input" \
        else None
    n_img = min(n_images, res.sigma.size) if shape else 0
    ncols = max(2, n_img)
    fig = plt.figure(figsize=(max(9, 2.3 * ncols), 7 if n_img else 4))
    grid = fig.add_gridspec(2 if n_img else 1, ncols, height_ratios=[1.3, 1] if n_img else [1])
    ax = fig.add_subplot(grid[0, : ncols // 2])
    ks = np.arange(1, res.sigma_all.size + 1)
    ax.bar(ks, res.sigma_all, color=["C0" if k <= res.sigma.size else "0.7" for k in ks])
    ax.set_xlabel("component k (from 1)")
    ax.set_ylabel("singular value sigma_k")
    ax.set_title(f"singular values (rank {res.rank}; grey: not shown)", fontsize=9)
    ax = fig.add_subplot(grid[0, ncols // 2 :])
    if not res.U.size:  # B is zero: no component, nothing to draw
        ax.axis("off")
        ax.text(0.5, 0.5, "B is zero: no components", ha="center", va="center")
        fig.suptitle(title)
        return save_by_extension(fig, path, force)
    a = float(np.abs(res.U).max()) or 1.0
    im = ax.imshow(res.U, cmap="RdBu", vmin=-a, vmax=a, aspect="auto", interpolation="nearest")
    ax.set_xlabel("component k")
    ax.set_ylabel("output")
    ax.set_title("loadings u_k", fontsize=9)
    ax.set_xticks(np.arange(res.sigma.size), [str(k + 1) for k in range(res.sigma.size)])
    if res.output_names and res.o <= 30:
        ax.set_yticks(np.arange(res.o), res.output_names, fontsize=7)
    fig.colorbar(im, ax=ax, shrink=0.8)
    for k in range(n_img):
        ax = fig.add_subplot(grid[1, k])
        _heatmap(ax, res.eigenvectors[k, 0], shape)
        ax.set_title(f"component {k + 1}: eigenvector 1\nlambda = {res.eigenvalues[k, 0]:+.3f}",
                     fontsize=8)
    fig.suptitle(title)
    return save_by_extension(fig, path, force)


def explain_plot(ex: Explanation, top: int, title: str, path, force, per_sign: int = 3):
    """The paper's explanation figure: the input, then per class its largest contributions."""
    plt = _pyplot()
    shape = image_shape(ex.input_shape, ex.classes[0].vectors.shape[1]) \
        if ex.basis == "input" else None
    picks = []
    for ce in ex.classes:
        idx = np.concatenate([ce.top(min(top, per_sign), +1), ce.top(min(top, per_sign), -1)])
        picks.append(idx)
    n = len(ex.classes)
    if shape is None:
        # No pixel picture of the eigenvectors: bar charts of the contributions instead.
        fig, axes = plt.subplots(n, 1, figsize=(7, 1.0 + 1.6 * n), squeeze=False,
                                 layout="constrained")
        for ax, ce, idx in zip(axes[:, 0], ex.classes, picks, strict=True):
            vals = ce.contributions[idx]
            ax.barh(np.arange(idx.size), vals, color=np.where(vals >= 0, "C0", "C3"))
            ax.set_yticks(np.arange(idx.size),
                          [f"#{i + 1} (lambda {ce.eigenvalues[i]:+.2g})" for i in idx], fontsize=7)
            ax.axvline(0, color="k", lw=0.6)
            ax.invert_yaxis()
            ax.set_title(f"class {ce.name}: logit {ce.logit:.3g}", fontsize=9)
        axes[-1, 0].set_xlabel("contribution lambda_i (v_i . h)^2")
        fig.suptitle(title)
        return save_figure(fig, path, force)
    ncols = 1 + max(max((p.size for p in picks), default=0), 1)
    fig, axes = plt.subplots(n, ncols, figsize=(1.8 * ncols, 2.0 * n + 0.6), squeeze=False)
    in_shape = image_shape(ex.input_shape, ex.input.x.size)
    for r, (ce, idx) in enumerate(zip(ex.classes, picks, strict=True)):
        ax = axes[r, 0]
        if in_shape:
            ax.imshow(ex.input.x.reshape(in_shape), cmap="gray", vmin=0, vmax=max(
                1.0, float(ex.input.x.max())))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"class {ce.name}\nlogit {ce.logit:.3g}", fontsize=8)
        for j in range(1, ncols):
            ax = axes[r, j]
            if j - 1 >= idx.size:
                ax.axis("off")
                continue
            i = idx[j - 1]
            _heatmap(ax, ce.vectors[i], shape)
            ax.set_title(f"#{i + 1} lambda {ce.eigenvalues[i]:+.2g}\n"
                         f"contrib {ce.contributions[i]:+.3g}", fontsize=7,
                         color="C0" if ce.contributions[i] >= 0 else "C3")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, force)

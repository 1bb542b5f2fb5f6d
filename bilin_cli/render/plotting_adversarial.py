"""Figures for ``bilin adversarial``: rate curves, masks (RdBu, centred on 0), examples (grey).

Written in the format the file's extension names (.png, .pdf, .svg), atomically.
"""

from __future__ import annotations

import numpy as np

from bilin_cli.render.figures import save_figure
from bilin_cli.render.plotting import _pyplot


def rate_curves(xs: list[float], rows: list[dict], per_target: list[list[dict]] | None,
                xlabel: str, title: str, path, force: bool):
    """Target rate (left) and accuracy (right) against strength or pixel count.

    ``rows`` are one target's rows or the mean over targets; ``per_target`` (with
    ``--target all``) adds each target's mask curve as a thin line.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label in ((axes[0], "target_rate", "other-class images classified as target"),
                           (axes[1], "accuracy", "accuracy")):
        for t_rows in per_target or []:
            ax.plot(xs, [r[key] for r in t_rows], "-", color="tab:red", lw=0.6, alpha=0.35)
        ax.plot(xs, [r[key] for r in rows], "o-", color="tab:red", label="eigenvector mask")
        ax.plot(xs, [r["baseline_" + key] for r in rows], "s--", color="tab:gray",
                label="baseline (pixels permuted)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path, force)


def _symmetric(ax, img: np.ndarray, title: str):
    lim = float(np.abs(img).max()) or 1.0
    im = ax.imshow(img, cmap="RdBu", vmin=-lim, vmax=lim)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    return im


def mask_figure(mask: np.ndarray, baseline: np.ndarray, shape: tuple[int, ...], title: str,
                path, force: bool):
    """The mask and its permuted baseline side by side (RdBu, 0 = white)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.2))
    for ax, img, name in ((axes[0], mask, "mask"), (axes[1], baseline, "baseline (permuted)")):
        im = _symmetric(ax, img.reshape(shape), name)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, force)


def examples_figure(clean: np.ndarray, perturbed: np.ndarray, shape: tuple[int, ...],
                    top_titles: list[str], bottom_titles: list[str], title: str, path,
                    force: bool):
    """Clean images (top row) over their perturbed versions (bottom row), grey.

    Clean images use the data range [0, 1]; the perturbed row shares one grey scale
    that also covers whatever the mask pushed outside it.
    """
    plt = _pyplot()
    k = clean.shape[0]
    lo = min(0.0, float(perturbed.min()))
    hi = max(1.0, float(perturbed.max()))
    fig, axes = plt.subplots(2, k, figsize=(1.6 * k, 3.6), squeeze=False)
    for i in range(k):
        for row, imgs, titles in ((0, clean, top_titles), (1, perturbed, bottom_titles)):
            ax = axes[row, i]
            ax.imshow(imgs[i].reshape(shape), cmap="gray", vmin=0 if row == 0 else lo,
                      vmax=1 if row == 0 else hi)
            ax.set_title(titles[i], fontsize=8)
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, force)


def input_figure(x: np.ndarray, change: np.ndarray, perturbed: np.ndarray,
                 shape: tuple[int, ...], titles: tuple[str, str, str], path, force: bool):
    """One input, the change the mask made (RdBu) and the perturbed input (grey)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(8.4, 3.0))
    lo = min(0.0, float(perturbed.min()))
    hi = max(1.0, float(perturbed.max()))
    axes[0].imshow(x.reshape(shape), cmap="gray", vmin=0, vmax=1)
    im = _symmetric(axes[1], change.reshape(shape), titles[1])
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.04)
    axes[2].imshow(perturbed.reshape(shape), cmap="gray", vmin=lo, vmax=hi)
    for ax, t in ((axes[0], titles[0]), (axes[2], titles[2])):
        ax.set_title(t, fontsize=9)
        ax.axis("off")
    return save_figure(fig, path, force)

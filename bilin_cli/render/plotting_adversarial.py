"""Figures for ``bilin adversarial``: rate curves, masks (RdBu, centred on 0), examples (grey).

Drawn in the shared style (:mod:`bilin_cli.render.style`): signed images (masks, the
change a mask makes) in RdBu on a scale symmetric about 0 with a colorbar; clean inputs
in grey on the data range [0, 1]; perturbed inputs in grey on a range that also covers
what the mask pushed outside it, with a colorbar. Each public function has a ``build_*``
twin returning the figure unwritten. Written in the format the file's extension names
(.png, .pdf, .svg), atomically.
"""

from __future__ import annotations

import numpy as np

from bilin_cli.render import style as st
from bilin_cli.render.figures import save_figure
from bilin_cli.render.plotting import _pyplot

_GREY_LABEL = "pixel intensity"


@st.styled
def build_rate_curves(xs: list[float], rows: list[dict], per_target: list[list[dict]] | None,
                      xlabel: str, title: str):
    """The figure of :func:`rate_curves`, not written."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for ax, key, label in ((axes[0], "target_rate",
                            "target rate (other-class images\nclassified as the target)"),
                           (axes[1], "accuracy", "accuracy (fraction classified correctly)")):
        for t_rows in per_target or []:
            ax.plot(xs, [r[key] for r in t_rows], "-", color=st.POSITIVE_COLOR, lw=0.6,
                    alpha=0.35)
        ax.plot(xs, [r[key] for r in rows], "o-", color=st.POSITIVE_COLOR, ms=4,
                label="eigenvector mask" + (" (thin: each target)" if per_target else ""))
        ax.plot(xs, [r["baseline_" + key] for r in rows], "s--", color=st.NEUTRAL_COLOR, ms=4,
                label="baseline (pixels permuted)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True)
    axes[0].legend()
    return st.apply(fig, title)


def rate_curves(xs: list[float], rows: list[dict], per_target: list[list[dict]] | None,
                xlabel: str, title: str, path, force: bool):
    """Target rate (left) and accuracy (right) against strength or pixel count.

    ``rows`` are one target's rows or the mean over targets; ``per_target`` (with
    ``--target all``) adds each target's mask curve as a thin line.
    """
    return save_figure(build_rate_curves(xs, rows, per_target, xlabel, title), path, force)


@st.styled
def build_mask_figure(mask: np.ndarray, baseline: np.ndarray, shape: tuple[int, ...],
                      title: str):
    """The figure of :func:`mask_figure`, not written."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(6.0, 3.3), layout="constrained")
    lim = st.symmetric_limit(np.concatenate([np.ravel(mask), np.ravel(baseline)]))
    im = None
    for ax, img, name in ((axes[0], mask, "mask"), (axes[1], baseline, "baseline (permuted)")):
        im = st.signed_image(ax, img.reshape(shape), limit=lim)
        ax.set_title(name)
    st.colorbar(fig, im, list(axes), "mask value (pixel units)", shrink=0.85)
    return st.apply(fig, title)


def mask_figure(mask: np.ndarray, baseline: np.ndarray, shape: tuple[int, ...], title: str,
                path, force: bool):
    """The mask and its permuted baseline side by side (RdBu, 0 = white, one shared scale)."""
    return save_figure(build_mask_figure(mask, baseline, shape, title), path, force)


def _grey_range(perturbed: np.ndarray) -> tuple[float, float]:
    """The grey scale of perturbed inputs: the data range [0, 1] and whatever lies outside."""
    return min(0.0, float(perturbed.min())), max(1.0, float(perturbed.max()))


@st.styled
def build_examples_figure(clean: np.ndarray, perturbed: np.ndarray, shape: tuple[int, ...],
                          top_titles: list[str], bottom_titles: list[str], title: str):
    """The figure of :func:`examples_figure`, not written."""
    plt = _pyplot()
    k = clean.shape[0]
    lo, hi = _grey_range(perturbed)
    fig, axes = plt.subplots(2, k, figsize=(1.6 * k + 0.8, 3.8), squeeze=False,
                             layout="constrained")
    rows = ((clean, top_titles, 0.0, 1.0, "clean"), (perturbed, bottom_titles, lo, hi, "perturbed"))
    for row, (imgs, titles, vmin, vmax, name) in enumerate(rows):
        im = None
        for i in range(k):
            ax = axes[row, i]
            im = st.grey_image(ax, imgs[i].reshape(shape), vmin, vmax)
            ax.set_title(titles[i], fontsize=st.PANEL_TITLE_SIZE)
        axes[row, 0].set_ylabel(name)
        if row == 1 and im is not None:
            st.colorbar(fig, im, list(axes[row]), _GREY_LABEL, symmetric=False)
    return st.apply(fig, title)


def examples_figure(clean: np.ndarray, perturbed: np.ndarray, shape: tuple[int, ...],
                    top_titles: list[str], bottom_titles: list[str], title: str, path,
                    force: bool):
    """Clean images (top row) over their perturbed versions (bottom row), grey.

    Clean images use the data range [0, 1]; the perturbed row shares one grey scale
    (with its colorbar) that also covers whatever the mask pushed outside it.
    """
    return save_figure(build_examples_figure(clean, perturbed, shape, top_titles,
                                             bottom_titles, title), path, force)


@st.styled
def build_input_figure(x: np.ndarray, change: np.ndarray, perturbed: np.ndarray,
                       shape: tuple[int, ...], titles: tuple[str, str, str]):
    """The figure of :func:`input_figure`, not written."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(8.4, 3.0), layout="constrained")
    lo, hi = _grey_range(perturbed)
    st.grey_image(axes[0], x.reshape(shape), 0.0, 1.0)
    st.signed_image(axes[1], change.reshape(shape), fig, label="pixel change")
    im = st.grey_image(axes[2], perturbed.reshape(shape), lo, hi)
    st.colorbar(fig, im, axes[2], _GREY_LABEL, symmetric=False)
    for ax, t in zip(axes, titles, strict=True):
        ax.set_title(t)
    return st.apply(fig)


def input_figure(x: np.ndarray, change: np.ndarray, perturbed: np.ndarray,
                 shape: tuple[int, ...], titles: tuple[str, str, str], path, force: bool):
    """One input, the change the mask made (RdBu) and the perturbed input (grey)."""
    return save_figure(build_input_figure(x, change, perturbed, shape, titles), path, force)

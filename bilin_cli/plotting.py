"""Figures (PNG) with matplotlib's headless backend; imported only by commands that draw."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from bilin_cli.atomic import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, force: bool) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return atomic_write(path, lambda fh: fh.write(buf.getvalue()), force)


def accuracy_curve(ks: list[int], accuracy: list[float], full: float, title: str, path, force):
    """The paper's accuracy-versus-rank plot: classification error on a log axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    err = np.maximum(1 - np.asarray(accuracy), 1e-4)
    ax.plot(ks, err, "o-", label="truncated")
    ax.axhline(max(1 - full, 1e-4), color="k", ls="--", lw=1, label=f"full model ({full:.2%})")
    ax.set_yscale("log")
    ax.set_xlabel("eigenvectors kept per class (K)")
    ax.set_ylabel("classification error")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return save_figure(fig, path, force)


def spectra_plot(labels: list[str], spectra: list[np.ndarray], n: int, title: str, path, force):
    """Eigenvalues against rank, positive and negative separately (the paper's Fig. 3, left)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    cmap = plt.get_cmap("tab10" if len(spectra) <= 10 else "viridis")
    for i, (label, lam) in enumerate(zip(labels, spectra, strict=True)):
        color = cmap(i % 10 if len(spectra) <= 10 else i / max(len(spectra) - 1, 1))
        pos = np.sort(lam[lam > 0])[::-1][:n]
        neg = np.sort(lam[lam < 0])[:n]
        ax.plot(np.arange(1, pos.size + 1), pos, "-", color=color, label=label, lw=1.2)
        ax.plot(np.arange(1, neg.size + 1), neg, "-", color=color, lw=1.2, alpha=0.6)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("rank (by |eigenvalue|, positive and negative separately)")
    ax.set_ylabel("eigenvalue")
    ax.set_title(title)
    if len(spectra) <= 12:
        ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path, force)


def eigen_figure(rows: list[dict], shape: tuple[int, int], n: int, n_curve: int, title: str,
                 path, force):
    """The paper's eigenspectrum figure, one row per direction.

    Each row: the top ``n_curve`` positive and negative eigenvalues as a curve, then the
    top ``n`` positive and ``n`` negative eigenvectors as images (RdBu, centred on 0).
    ``rows``: dicts with ``label``, ``lam`` (all eigenvalues), ``pos``/``neg`` lists of
    ``(lam_i, vec_i)``.
    """
    plt = _pyplot()
    n_cols = 1 + 2 * n
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.9 * n_cols + 1.2, 1.9 * len(rows)),
                             squeeze=False, gridspec_kw={"width_ratios": [1.6] + [1] * (2 * n)})
    for r, row in enumerate(rows):
        ax = axes[r, 0]
        lam = row["lam"]
        pos = np.sort(lam[lam > 0])[::-1][:n_curve]
        neg = np.sort(lam[lam < 0])[:n_curve]
        ax.plot(np.arange(1, pos.size + 1), pos, ".-", color="tab:blue", ms=3, lw=1)
        ax.plot(np.arange(1, neg.size + 1), neg, ".-", color="tab:red", ms=3, lw=1)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylabel(row["label"], fontsize=9)
        ax.tick_params(labelsize=6)
        if r == 0:
            ax.set_title("eigenvalues", fontsize=8)
        pictures = list(row["pos"][:n]) + [None] * (n - len(row["pos"][:n]))
        pictures += list(row["neg"][:n]) + [None] * (n - len(row["neg"][:n]))
        for c, item in enumerate(pictures):
            ax = axes[r, 1 + c]
            ax.set_xticks([])
            ax.set_yticks([])
            if item is None:
                ax.axis("off")
                continue
            value, vec = item
            img = np.asarray(vec).reshape(shape)
            vmax = np.abs(img).max() or 1.0
            ax.imshow(img, cmap="RdBu", vmin=-vmax, vmax=vmax)
            ax.set_title(f"λ={value:+.3g}", fontsize=7)
    fig.tight_layout()
    fig.suptitle(title, fontsize=10, y=1.0 + 0.15 / len(rows))
    return save_figure(fig, path, force)

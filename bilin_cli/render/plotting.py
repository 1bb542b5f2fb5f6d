"""Figures with matplotlib's headless backend; imported only by commands that draw.

Each figure is written in the format its file name asks for (``.png``, ``.pdf``, ``.svg``)
by :func:`bilin_cli.render.figures.save_figure`. Eigenvectors are numbered by rank from 1
(``#r``, ``|lambda|`` descending), as ``bilin eig`` prints them.
"""

from __future__ import annotations

import numpy as np

from bilin_cli.render import figures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


save_figure = figures.save_figure  # the one helper every figure goes through


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
    ax.set_xlabel("i-th largest positive / negative eigenvalue (not the |lambda| rank)")
    ax.set_ylabel("eigenvalue")
    ax.set_title(title)
    if len(spectra) <= 12:
        ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path, force)


def eigen_figure(rows: list[dict], shape: tuple[int, int], n: int, n_curve: int, title: str,
                 path, force):
    """The paper's eigenspectrum figure, one row per direction.

    Each row: the top ``n_curve`` positive and negative eigenvalues as a curve, then the
    top ``n`` positive and ``n`` negative eigenvectors as images (RdBu, centred on 0), each
    titled with its rank from 1 (``#r``, as ``bilin eig`` numbers it). ``rows``: dicts with
    ``label``, ``lam`` (all eigenvalues), ``pos``/``neg`` lists of ``(rank, lam_r, vec_r)``.
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
            rank, value, vec = item
            img = np.asarray(vec).reshape(shape)
            vmax = np.abs(img).max() or 1.0
            ax.imshow(img, cmap="RdBu", vmin=-vmax, vmax=vmax)
            ax.set_title(f"#{rank} λ={value:+.3g}", fontsize=7)
    fig.tight_layout()
    fig.suptitle(title, fontsize=10, y=1.0 + 0.15 / len(rows))
    return save_figure(fig, path, force)

"""Figures with matplotlib's headless backend; imported only by commands that draw.

Every figure takes the one style of :mod:`bilin_cli.render.style`: fonts and sizes,
signed images in RdBu on a scale symmetric about zero with a colorbar, inputs in grey,
tick-free image panels, labelled axes on every curve, eigenvalues printed with
:func:`~bilin_cli.render.style.eigenvalue_text`. Each public function has a ``build_*``
twin that returns the :class:`matplotlib.figure.Figure` without writing it (tests and
notebooks inspect that); the public one writes it in the format its file name asks for
(``.png``, ``.pdf``, ``.svg``) through :func:`bilin_cli.render.figures.save_figure`.
Eigenvectors are numbered by rank from 1 (``#r``, ``|lambda|`` descending), as
``bilin eig`` prints them.
"""

from __future__ import annotations

import numpy as np

from bilin_cli.render import figures
from bilin_cli.render import style as st


def _pyplot():
    return st.pyplot()


save_figure = figures.save_figure  # the one helper every figure goes through


# Accuracies drawn on a logit axis are kept this far from 0 and 1 (where it is infinite).
ACCURACY_CLIP = 1e-4
ACCURACY_TICKS = (0.001, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999,
                  0.9999)


@st.styled
def build_accuracy_curve(ks: list[int], accuracy: list[float], full: float, title: str):
    """The figure of :func:`accuracy_curve`, not written: the curve is the accuracy, on the
    y axis that says so, under a title about accuracy."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    acc = np.clip(np.asarray(accuracy, dtype=np.float64), ACCURACY_CLIP, 1 - ACCURACY_CLIP)
    ax.plot(ks, acc, "o-", color=st.POSITIVE_COLOR, ms=4, label="truncated model")
    ax.axhline(float(np.clip(full, ACCURACY_CLIP, 1 - ACCURACY_CLIP)), color=st.NEUTRAL_COLOR,
               ls="--", lw=1, label=f"full model (accuracy {full:.2%})")
    # logit: as fine near 100% as a log axis of the error (1 - accuracy) would be
    ax.set_yscale("logit")
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    lo, hi = float(min(acc.min(), full)), float(max(acc.max(), full))
    ticks = [t for t in ACCURACY_TICKS if lo / 1.5 <= t and 1 - t >= (1 - hi) / 1.5]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:.4g}%"))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("eigenvectors kept per class (K)")
    st.integer_axis(ax)
    ax.set_ylabel("test accuracy (logit scale)")
    ax.set_title(title if "accuracy" in title.lower() else f"{title}: accuracy")
    ax.grid(True, which="both")
    ax.legend()
    return fig


def accuracy_curve(ks: list[int], accuracy: list[float], full: float, title: str, path, force):
    """The paper's accuracy-versus-rank plot: the truncated model's accuracy against K on a
    logit axis (which spreads 90%, 99%, 99.9% as a log axis spreads the error)."""
    return save_figure(build_accuracy_curve(ks, accuracy, full, title), path, force)


@st.styled
def build_spectra_plot(labels: list[str], spectra: list[np.ndarray], n: int, title: str):
    """The figure of :func:`spectra_plot`, not written."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    many = len(spectra) > 10
    cmap = plt.get_cmap("viridis" if many else "tab10")
    for i, (label, lam) in enumerate(zip(labels, spectra, strict=True)):
        color = cmap(i / max(len(spectra) - 1, 1) if many else i % 10)
        pos = np.sort(lam[lam > 0])[::-1][:n]
        neg = np.sort(lam[lam < 0])[:n]
        ax.plot(np.arange(1, pos.size + 1), pos, "-", color=color, label=label)
        ax.plot(np.arange(1, neg.size + 1), neg, "-", color=color, alpha=0.6)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("i (i-th largest positive / i-th most negative eigenvalue; not the |λ| rank)")
    ax.set_ylabel(f"eigenvalue {st.LAMBDA}")
    st.integer_axis(ax)
    ax.set_title(title)
    ax.grid(True)
    if len(spectra) <= 12:
        ax.legend(ncol=2, title="direction (negative side faded)", title_fontsize=st.TICK_SIZE)
    return fig


def spectra_plot(labels: list[str], spectra: list[np.ndarray], n: int, title: str, path, force):
    """Eigenvalues against rank, positive and negative separately (the paper's Fig. 3, left)."""
    return save_figure(build_spectra_plot(labels, spectra, n, title), path, force)


@st.styled
def build_eigen_figure(rows: list[dict], shape: tuple[int, int], n: int, n_curve: int,
                       title: str):
    """The figure of :func:`eigen_figure`, not written."""
    plt = _pyplot()
    n_cols = 1 + 2 * n
    fig, axes = plt.subplots(len(rows), n_cols,
                             figsize=(2.0 * n_cols + 1.0, 1.9 * len(rows) + 0.7),
                             squeeze=False, layout="constrained",
                             gridspec_kw={"width_ratios": [1.6] + [1] * (2 * n)})
    for r, row in enumerate(rows):
        ax = axes[r, 0]
        lam = row["lam"]
        pos = np.sort(lam[lam > 0])[::-1][:n_curve]
        neg = np.sort(lam[lam < 0])[:n_curve]
        ax.plot(np.arange(1, pos.size + 1), pos, ".-", color=st.POSITIVE_COLOR, ms=3, lw=1,
                label=f"{st.LAMBDA} > 0")
        ax.plot(np.arange(1, neg.size + 1), neg, ".-", color=st.NEGATIVE_COLOR, ms=3, lw=1,
                label=f"{st.LAMBDA} < 0")
        ax.axhline(0, color="k", lw=0.5)
        st.integer_axis(ax)
        ax.set_ylabel(f"class {row['label']}\neigenvalue {st.LAMBDA}")
        ax.set_xlabel("i-th largest |λ| of its sign" if r == len(rows) - 1 else "")
        if r == 0:
            ax.set_title("eigenvalues")
            ax.legend(loc="upper right")
        pictures = list(row["pos"][:n]) + [None] * (n - len(row["pos"][:n]))
        pictures += list(row["neg"][:n]) + [None] * (n - len(row["neg"][:n]))
        for c, item in enumerate(pictures):
            ax = axes[r, 1 + c]
            if item is None:
                ax.axis("off")
                continue
            rank, value, vec = item
            st.signed_image(ax, np.asarray(vec).reshape(shape), fig)
            ax.set_title(f"#{rank}  {st.lambda_text(value)}", fontsize=st.PANEL_TITLE_SIZE)
    fig.supxlabel("images: eigenvectors in input space, blue > 0, red < 0, each on its own "
                  "scale symmetric about 0 (colorbar)", fontsize=st.TICK_SIZE)
    return st.apply(fig, title)


def eigen_figure(rows: list[dict], shape: tuple[int, int], n: int, n_curve: int, title: str,
                 path, force):
    """The paper's eigenspectrum figure, one row per direction.

    Each row: the top ``n_curve`` positive and negative eigenvalues as a curve, then the
    top ``n`` positive and ``n`` negative eigenvectors as images (RdBu, centred on 0, each
    with its colorbar), each titled with its rank from 1 (``#r``, as ``bilin eig`` numbers
    it) and eigenvalue. ``rows``: dicts with ``label``, ``lam`` (all eigenvalues),
    ``pos``/``neg`` lists of ``(rank, lam_r, vec_r)``.
    """
    return save_figure(build_eigen_figure(rows, shape, n, n_curve, title), path, force)

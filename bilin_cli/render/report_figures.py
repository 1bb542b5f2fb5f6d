"""The report's interactive figures (plotly), each as an HTML snippet: a ``<div>`` and the
``Plotly.newPlot`` call plotly writes for it. plotly.js itself is not included: every page
loads it once from the report folder (``plotly.min.js``), so pages open from disk with no
network. Signed images use the shared diverging map centred on zero (``render.style``).

Figures are plain plotly figure dicts (no graph-object validation, which costs ~50 ms a
figure); numbers are kept to 4 significant digits to keep pages small.
"""

from __future__ import annotations

import numpy as np

from bilin_cli.render import style as st

LAMBDA = "\u03bb"
_LAYOUT = dict(
    font=dict(family=f"{st.FONT_FAMILY}, Arial, sans-serif", size=12, color="#222"),
    paper_bgcolor="white", plot_bgcolor="white", hovermode="closest",
    margin=dict(l=60, r=20, t=40, b=50),
)
_AXIS = dict(showline=True, linecolor="#888", gridcolor="#eee", zerolinecolor="#999",
             ticks="outside", tickcolor="#888", automargin=True)
CONFIG = {"displaylogo": False, "responsive": True,
          "modeBarButtonsToRemove": ["sendDataToCloud", "lasso2d", "select2d"]}


def colorscale() -> list:
    """The diverging map as an explicit list (plotly.js' own "RdBu" runs the other way)."""
    from plotly.colors import get_colorscale

    return get_colorscale(st.DIVERGING_CMAP)


def _r(a) -> list:
    """An array as (nested) lists of floats with 4 significant digits (NaN as None)."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim > 1:
        return [_r(row) for row in a]
    return [float(f"{x:.4g}") if np.isfinite(x) else None for x in a]


def _axis(**kw) -> dict:
    return {**_AXIS, **kw}


def _title(text: str) -> dict:
    return {"text": text, "font": {"size": 13}, "x": 0.02}


class Figures:
    """Numbers the figures of one page (``fig-1``, ``fig-2``, ...) so pages are reproducible."""

    def __init__(self) -> None:
        self.n = 0

    def html(self, fig: dict, height: int, width: int | None = None) -> str:
        import plotly.io as pio

        self.n += 1
        layout = {**_LAYOUT, **fig.get("layout", {}), "height": height}
        if width:
            layout["width"] = width
        # Small figures keep zoom (drag a box, double-click to reset) but no mode bar,
        # which would cover their titles.
        config = CONFIG if not width or width >= 600 else {**CONFIG, "displayModeBar": False}
        return pio.to_html({"data": fig["data"], "layout": layout}, full_html=False,
                           include_plotlyjs=False, validate=False, div_id=f"fig-{self.n}",
                           config=config, default_height=f"{height}px",
                           default_width=f"{width}px" if width else "100%")


def _signed_text(values) -> list[list[str]]:
    return [[st.eigenvalue_text(float(v))] for v in values]


def spectrum(lam: np.ndarray, title: str) -> dict:
    """Every eigenvalue by rank (``|lambda|`` order), blue > 0, red < 0, with hover values."""
    lam = np.asarray(lam, dtype=np.float64)
    rank = np.arange(1, lam.size + 1)
    data = []
    for sign, name, color in ((1, f"{LAMBDA} > 0", st.POSITIVE_COLOR),
                              (-1, f"{LAMBDA} < 0", st.NEGATIVE_COLOR)):
        keep = np.sign(lam) == sign
        data.append({
            "type": "bar", "x": rank[keep].tolist(), "y": _r(lam[keep]), "name": name,
            "marker": {"color": color, "line": {"width": 0}},
            "customdata": _signed_text(lam[keep]),
            "hovertemplate": f"rank %{{x}}<br>{LAMBDA} = %{{customdata[0]}}<extra></extra>"})
    return {"data": data, "layout": {
        "title": _title(title), "bargap": 0, "legend": {"x": 0.99, "xanchor": "right", "y": 0.99},
        "xaxis": _axis(title={"text": f"rank (by |{LAMBDA}|, from 1)"},
                       dtick=1 if lam.size <= 20 else None),
        "yaxis": _axis(title={"text": f"eigenvalue {LAMBDA}"})}}


def bound(b: dict, title: str, space: str) -> dict:
    """The truncation bound's factor (largest discarded ``|lambda|``) and the share kept."""
    ks = np.asarray(b["k"]).tolist()
    data = [
        {"type": "scatter", "x": ks, "y": _r(b["max_discarded"]), "mode": "lines+markers",
         "marker": {"size": 3}, "line": {"color": st.NEUTRAL_COLOR},
         "name": f"max discarded |{LAMBDA}| (bound / ||x||\u00b2)",
         "hovertemplate": "K = %{x}<br>|error| \u2264 %{y:.4g} \u00b7 ||x||\u00b2"
                          "<extra></extra>"},
        {"type": "scatter", "x": ks, "y": _r(b["share_kept"]), "mode": "lines", "yaxis": "y2",
         "line": {"color": st.POSITIVE_COLOR, "dash": "dot"},
         "name": f"share of \u03a3|{LAMBDA}| kept",
         "hovertemplate": "K = %{x}<br>share kept %{y:.2%}<extra></extra>"},
    ]
    return {"data": data, "layout": {
        "title": _title(title), "legend": {"x": 0.98, "xanchor": "right", "y": 0.6},
        "xaxis": _axis(title={"text": f"K = eigenpairs kept (largest |{LAMBDA}|)"}),
        "yaxis": _axis(title={"text": f"max discarded |{LAMBDA}| ({space})"}, rangemode="tozero"),
        "yaxis2": _axis(title={"text": "share kept"}, overlaying="y", side="right",
                        range=[0, 1.02], tickformat=".0%", tickmode="linear", tick0=0,
                        dtick=0.25, showgrid=False),
        "margin": {"l": 60, "r": 60, "t": 40, "b": 50}}}


def signed_image(vec: np.ndarray, shape: tuple[int, ...], title: str,
                 what: str = "value") -> dict:
    """A signed vector as an image: RdBu centred on zero (symmetric limits), colorbar."""
    z = np.asarray(vec, dtype=np.float64).reshape(shape[-2], -1)
    lim = st.symmetric_limit(z)
    data = [{"type": "heatmap", "z": _r(z), "colorscale": colorscale(), "zmid": 0,
             "zmin": -lim, "zmax": lim,
             "colorbar": {"thickness": 10, "len": 0.9, "tickformat": ".2g"},
             "hovertemplate": f"row %{{y}}, column %{{x}}<br>{what} %{{z:.3g}}<extra></extra>"}]
    return {"data": data, "layout": {
        "title": _title(title), "margin": {"l": 45, "r": 10, "t": 40, "b": 40},
        "xaxis": _axis(title={"text": "column"}, showgrid=False, constrain="domain"),
        "yaxis": _axis(title={"text": "row"}, showgrid=False, autorange="reversed",
                       scaleanchor="x", constrain="domain")}}


def signed_bars(vec: np.ndarray, title: str) -> dict:
    """A short signed vector (no image shape) as bars, blue > 0, red < 0."""
    v = np.asarray(vec, dtype=np.float64)
    data = [{"type": "bar", "x": list(range(v.size)), "y": _r(v),
             "marker": {"line": {"width": 0}, "color": [
                 st.POSITIVE_COLOR if x >= 0 else st.NEGATIVE_COLOR for x in v]},
             "hovertemplate": "entry %{x}<br>value %{y:.4g}<extra></extra>"}]
    return {"data": data, "layout": {
        "title": _title(title), "bargap": 0.1 if v.size < 64 else 0,
        "xaxis": _axis(title={"text": "input index"}, dtick=1 if v.size <= 16 else None),
        "yaxis": _axis(title={"text": "entry"})}}


def mask_sweep(rows: list[dict], title: str) -> dict:
    """Target rate of the mask and of its pixel-permuted baseline against strength."""
    s = [r["strength"] for r in rows]
    data = [
        {"type": "scatter", "x": s, "y": _r([r["target_rate"] for r in rows]),
         "mode": "lines+markers", "name": "mask", "line": {"color": st.NEGATIVE_COLOR},
         "hovertemplate": "strength %{x}<br>target rate %{y:.2%}<extra>mask</extra>"},
        {"type": "scatter", "x": s, "y": _r([r["baseline_target_rate"] for r in rows]),
         "mode": "lines+markers", "name": "permuted baseline",
         "line": {"color": st.NEUTRAL_COLOR, "dash": "dot"},
         "hovertemplate": "strength %{x}<br>target rate %{y:.2%}<extra>baseline</extra>"},
    ]
    return {"data": data, "layout": {
        "title": _title(title), "legend": {"x": 0.02, "y": 0.98},
        "xaxis": _axis(title={"text": "strength (rms pixel change)"}),
        "yaxis": _axis(title={"text": "sent to the target"},
                       tickformat=".0%", rangemode="tozero")}}


def accuracy_curve(doc: dict, title: str) -> dict:
    """Accuracy of the truncated classifier against K, and the full model's."""
    ks = [str(r["k"]) for r in doc["sweep"]]
    full = doc["full_accuracy"]
    data = [
        {"type": "scatter", "x": ks, "y": _r([r["accuracy"] for r in doc["sweep"]]),
         "mode": "lines+markers", "name": "truncated (K per class)",
         "line": {"color": st.POSITIVE_COLOR},
         "hovertemplate": "K = %{x}<br>accuracy %{y:.2%}<extra></extra>"},
        {"type": "scatter", "x": ks, "y": [full] * len(ks), "mode": "lines",
         "name": f"full model {full:.2%}", "line": {"color": st.NEUTRAL_COLOR, "dash": "dash"},
         "hoverinfo": "skip"},
    ]
    return {"data": data, "layout": {
        "title": _title(title),
        "legend": {"x": 0.98, "xanchor": "right", "y": 0.05, "yanchor": "bottom"},
        "xaxis": _axis(title={"text": "K = eigenpairs kept per class (evenly spaced)"},
                       type="category"),
        "yaxis": _axis(title={"text": "test accuracy"}, tickformat=".0%", range=[0, 1.02])}}


def spectra_heatmap(labels: list[str], spectra: list[np.ndarray], n: int, title: str) -> dict:
    """The top ``n`` eigenvalues (``|lambda|`` order, signed) of every direction, one row each."""
    z = np.full((len(spectra), n), np.nan)
    for i, lam in enumerate(spectra):
        top = np.asarray(lam[:n], dtype=np.float64)
        z[i, : top.size] = top
    lim = st.symmetric_limit(z)
    data = [{"type": "heatmap", "z": _r(z), "x": list(range(1, n + 1)), "y": labels,
             "colorscale": colorscale(), "zmid": 0, "zmin": -lim, "zmax": lim,
             "colorbar": {"title": {"text": LAMBDA}, "thickness": 12},
             "hovertemplate": f"%{{y}}<br>rank %{{x}}<br>{LAMBDA} = %{{z:+.4g}}<extra></extra>"}]
    return {"data": data, "layout": {
        "title": _title(title),
        "xaxis": _axis(title={"text": f"rank (by |{LAMBDA}|)"}, showgrid=False),
        "yaxis": _axis(title={"text": "direction"}, autorange="reversed", showgrid=False,
                       type="category")}}


def effective_ranks(labels: list[str], values: list[float], title: str) -> dict:
    data = [{"type": "bar", "x": labels, "y": _r(values), "marker": {"color": st.NEUTRAL_COLOR},
             "hovertemplate": "%{x}<br>effective rank %{y:.2f}<extra></extra>"}]
    return {"data": data, "layout": {
        "title": _title(title),
        "xaxis": _axis(title={"text": "direction"}, type="category"),
        "yaxis": _axis(title={"text": f"effective rank (\u03a3|{LAMBDA}|)\u00b2 / "
                                      f"\u03a3{LAMBDA}\u00b2"})}}

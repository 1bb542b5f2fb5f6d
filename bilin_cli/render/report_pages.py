"""The HTML of ``bilin report``'s pages: the overview and one page per output direction.

Every string that comes from a file (paths, class names, token texts) is HTML-escaped.
Figures are plotly snippets from :mod:`bilin_cli.render.report_figures`.
"""

from __future__ import annotations

from html import escape

from bilin_cli.analyses.report import DirectionPage, Eigenvector, Report
from bilin_cli.render import report_figures as rf
from bilin_cli.render.style import eigenvalue_text

L = "\u03bb"
N_HEATMAP = 30  # overview: the top eigenvalues of each direction drawn

CSS = """body{font-family:"DejaVu Sans",Arial,sans-serif;margin:0 auto;max-width:1200px;
padding:0 20px 40px;color:#222;font-size:14px}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:8px 0;z-index:9}
nav a{margin-right:14px}h1{font-size:22px}h2{font-size:17px;margin-top:28px;
border-bottom:1px solid #eee}a{color:#1f5fa8}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:right}th{background:#f5f5f5}td.l,th.l{text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:6px}.note{color:#555;font-size:13px}
.cell{border:1px solid #eee;padding:4px}.tok{font-family:monospace;white-space:pre}
"""


def _plain(text: str) -> str:
    """Text for a plotly figure: plotly reads a few HTML tags in text and decodes only some
    entities (not ``&quot;``), so escape ``& < >`` alone (quotes are safe in its JSON)."""
    return escape(text, quote=False)


def _page(title: str, nav: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(title)}</title>"
            '<link rel="stylesheet" href="report.css"><script src="plotly.min.js"></script>'
            f"</head><body><nav>{nav}</nav>{body}</body></html>\n")


def _table(head: list[str] | None, rows: list[list[str]], left: int = 1) -> str:
    """A table; cells are HTML already (escape text before); the first ``left`` columns
    are left-aligned; no header row with ``head=None``."""
    n = len(head) if head else len(rows[0]) if rows else 0
    cls = [' class="l"' if i < left else "" for i in range(n)]
    th = "<tr>" + "".join(f"<th{c}>{h}</th>" for c, h in zip(cls, head, strict=True)) + \
        "</tr>" if head else ""
    trs = "".join("<tr>" + "".join(f"<td{c}>{v}</td>" for c, v in zip(cls, r, strict=True))
                  + "</tr>" for r in rows)
    return f"<table>{th}{trs}</table>"


def _notes(notes: list[str]) -> str:
    return "".join(f'<p class="note">{escape(n)}</p>' for n in dict.fromkeys(notes))


def _num(x, fmt: str = ".4g") -> str:
    return "&ndash;" if x is None else format(x, fmt)


def _model_table(m: dict) -> str:
    out = m.get("outputs") or {}
    names = out.get("names")
    shown = f"{out.get('n')} {out.get('kind', '')}"
    if names:
        shown += ": " + ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
    rows = [
        ("path", m.get("path")), ("layout", m.get("layout")), ("container", m.get("container")),
        ("parameters", f"{m.get('n_parameters', 0):,} in {m.get('n_tensors')} tensors"),
        ("dtype", ", ".join(f"{k} ({v:,})" for k, v in (m.get("dtype") or {}).items())),
        ("bilinear layers", m.get("n_layers")), ("bias", "yes" if m.get("bias") else "no"),
        ("residual", "yes" if m.get("residual") else "no"),
        ("embedding", "none" if not m.get("embedding")
         else "x".join(str(s) for s in m["embedding"])),
        ("outputs", shown),
    ]
    if m.get("input_shape"):
        rows.append(("input shape", "x".join(str(s) for s in m["input_shape"])))
    return _table(None, [[escape(str(k)), escape(str(v))] for k, v in rows], left=2)


def _layers_table(m: dict, reported: int) -> str:
    rows = [[str(x["index"]) + (" (this report)" if x["index"] == reported else ""),
             str(x["d"]), str(x["h"]), str(x["o"]), escape(str(x["out_space"])),
             "yes" if x["bias"] else "no"] for x in m.get("layers", [])]
    return _table(["layer", "d", "h", "o", "output space", "bias"], rows)


def index_page(r: Report) -> str:
    figs = rf.Figures()
    labels = [_plain(p.label) for p in r.pages]
    k = r.top
    rows = [[f'<a href="{p.key}.html">{escape(p.key)}</a>', escape(p.label),
             escape(eigenvalue_text(p.summary["top_positive"][0]))
             if p.summary["top_positive"] else "&ndash;",
             escape(eigenvalue_text(p.summary["top_negative"][0]))
             if p.summary["top_negative"] else "&ndash;",
             _num(p.summary["effective_rank"], ".2f"), _num(p.summary["top_k_share"], ".1%"),
             str(p.summary["k50"]), str(p.summary["k90"]), str(p.summary["k99"]),
             _num(p.bound["at_top"])] for p in r.pages]
    body = [f"<h1>{escape(r.title)}</h1>", _notes(r.notes), "<h2>Model</h2>",
            _model_table(r.model), "<h2>Layers</h2>", _layers_table(r.model, r.layer)]
    if r.truncation is not None:
        t = r.truncation
        body += ["<h2>Truncation: accuracy against K</h2>",
                 f'<p class="note">Each class keeps its K eigenpairs of largest |{L}| '
                 f"(bilin truncate --sweep); {t['n']:,} examples of "
                 f"{escape(str(t['data']))}.</p>",
                 figs.html(rf.accuracy_curve(t, "test accuracy of the rank-K model"), 380)]
    if r.attention is not None:
        body += _attention_section(r.attention)
    body += [f"<h2>Directions of layer {r.layer}</h2>",
             f'<p class="note">effective rank = (&Sigma;|{L}|)&sup2; / &Sigma;{L}&sup2;; '
             f"top-{k} share = share of &Sigma;|{L}| in the {k} largest |{L}|; kP = eigenvalues "
             f"holding P% of &Sigma;|{L}|; bound = largest discarded |{L}| keeping the top {k} "
             "(|error| &le; bound &middot; ||x||&sup2;).</p>",
             _table(["page", "direction", f"largest {L} &gt; 0", f"largest {L} &lt; 0",
                     "effective rank", f"top-{k} share", "k50", "k90", "k99",
                     f"bound at K={k}"], rows, left=2),
             f"<h2>Spectra of layer {r.layer}</h2>",
             figs.html(rf.spectra_heatmap(labels, [p.eigenvalues for p in r.pages], N_HEATMAP,
                                          f"top {N_HEATMAP} eigenvalues of each direction "
                                          f"(by |{L}|, signed)"),
                       max(260, 80 + 18 * len(labels))),
             figs.html(rf.effective_ranks(labels, [p.summary["effective_rank"]
                                                   for p in r.pages],
                                          "effective rank of each direction"), 320)]
    return _page(r.title, '<a href="index.html">overview</a>', "".join(body))


def _attention_section(att: dict) -> list[str]:
    """The overview's table of bilinear attention heads (``bilin attention``'s numbers)."""
    s = att["attention"]

    def tok(token: int, text) -> str:
        return escape(_token({"token": token, "text": text}))

    rows = []
    for h in att["heads"]:
        pairs = ", ".join(f"{tok(p['query'], p['query_text'])}&rarr;"
                          f"{tok(p['key'], p['key_text'])} {_num(p['score'], '+.3g')}"
                          for p in h["top_pairs"][:3])
        writes = ", ".join(f"{tok(w['source'], w['source_text'])}&rArr;"
                           f"{tok(w['token'], w['text'])} {_num(w['logit'], '+.3g')}"
                           for w in h["top_writes"][:3])
        rows.append([f"{h['layer']}.{h['head']}",
                     _num(h["qk"][0]["singular_values"][0]),
                     _num(h["qk"][1]["singular_values"][0]),
                     _num(h["ov"]["singular_values"][0]),
                     f'<span class="tok">{pairs or "&ndash;"}</span>',
                     f'<span class="tok">{writes or "&ndash;"}</span>'])
    return ["<h2>Attention heads</h2>",
            f'<p class="note">Bilinear attention, score = {escape(s["scale_text"])} &middot; '
            "(x<sub>q</sub>&#7511;A<sub>1</sub>x<sub>k</sub>)(x<sub>q</sub>&#7511;A<sub>2</sub>"
            "x<sub>k</sub>), no softmax; &sigma;<sub>1</sub> of each form "
            "(A<sub>n</sub> = Wq<sub>n</sub>&#7511;Wk<sub>n</sub>, OV = Wo Wv), the query&rarr;key "
            "token pairs of largest score and the source&rArr;token writes of largest logit, as "
            "bilin attention prints them.</p>",
            _table(["head", "&sigma;<sub>1</sub>(A<sub>1</sub>)",
                    "&sigma;<sub>1</sub>(A<sub>2</sub>)", "&sigma;<sub>1</sub>(OV)", "top pairs",
                    "top writes"], rows, left=1),
            _notes(att["notes"])]


def _token(t: dict) -> str:
    """A token as it reads, quoted so whitespace shows (``'\\n'``, ``' '``); its id if unknown."""
    return repr(t["text"]) if t["text"] is not None else f"#{t['token']}"


def _eigen_cell(figs: rf.Figures, page: DirectionPage, e: Eigenvector) -> str:
    title = f"#{e.rank}  {L} = {eigenvalue_text(e.eigenvalue)}"
    parts = []
    if page.image_shape and len(page.image_shape) >= 2:
        parts.append(figs.html(rf.signed_image(e.vector, page.image_shape, title), 260, 270))
    elif e.tokens is None and e.features is None:
        parts.append(figs.html(rf.signed_bars(e.vector, title), 240, 320))
    else:
        parts.append(f"<b>{escape(title)}</b>")
    if e.tokens is not None:
        def side(items):
            return "<br>".join(f'<span class="tok">{escape(_token(t))}</span> '
                               f"{t['value']:+.3g}" for t in items) or "&ndash;"
        parts.append(_table(["v&middot;x &gt; 0", "v&middot;x &lt; 0"],
                            [[side(e.tokens["positive"]), side(e.tokens["negative"])]], left=2))
    if e.features is not None:
        parts.append(_table(["input-SAE feature", "loading D&#7488;v"],
                            [[str(f["feature"]), f"{f['loading']:+.3g}"] for f in e.features]))
    return f'<div class="cell">{"".join(parts)}</div>'


def _eigen_section(figs, page: DirectionPage, items: list[Eigenvector], sign: str) -> str:
    if not items:
        return f"<p>No {sign} eigenvalues.</p>"
    return '<div class="grid">' + "".join(_eigen_cell(figs, page, e) for e in items) + "</div>"


def _mask_section(figs, page: DirectionPage) -> str:
    m = page.mask
    cells = [figs.html(rf.signed_image(m["pixel"], page.image_shape,
                                       f"mask for eigenvector #{m['eig_rank']}", "pixel"),
                       300, 320)] if page.image_shape else []
    cells.append(figs.html(rf.mask_sweep(m["sweep"], "images of other classes moved to "
                                         f"{_plain(page.label)}"), 300, 480))
    return ("<h2>Adversarial mask of the top positive eigenvector</h2>"
            f'<p class="note">Eigenvector #{m["eig_rank"]} ({L} = '
            f"{escape(eigenvalue_text(m['eigenvalue']))}), isolated by the pseudo-inverse of "
            "every class's top positive eigenvector (bilin adversarial, dense, hidden inverse), "
            "signed by the other classes' mean image, unit rms. Excitation "
            f"{m['excitation']:.3g} per unit strength, efficiency {m['efficiency']:.1%}, "
            f"leak {m['leak']:.1%}.</p>"
            f'<div class="grid">{"".join(f"<div class=cell>{c}</div>" for c in cells)}</div>')


def direction_page(r: Report, i: int) -> str:
    page = r.pages[i]
    figs = rf.Figures()
    s, b, k = page.summary, page.bound, r.top
    nav = ['<a href="index.html">overview</a>']
    if i > 0:
        nav.append(f'<a href="{r.pages[i - 1].key}.html">&larr; {escape(r.pages[i - 1].label)}</a>')
    if i + 1 < len(r.pages):
        nav.append(f'<a href="{r.pages[i + 1].key}.html">{escape(r.pages[i + 1].label)} &rarr;</a>')
    if page.basis != "input":
        where = "the layer's input space"
    elif page.image_shape is not None and len(page.image_shape) == 2:
        where = "pixels (E&#7488;v, each image on its own scale, symmetric about 0)"
    else:
        where = "the model's inputs (E&#7488;v)"
    space = r.bound_space if page.kind == "class" else "layer input"
    body = [f"<h1>{escape(page.label)} &mdash; layer {r.layer}</h1>",
            f"<p>{s['n_eigenvalues']} eigenvalues; effective rank "
            f"{_num(s['effective_rank'], '.2f')}; &Sigma;|{L}| = {_num(s['sum_abs_eigenvalues'])}; "
            f"top-{k} share {_num(s['top_k_share'], '.1%')}; k50/k90/k99 = "
            f"{s['k50']}/{s['k90']}/{s['k99']}.</p>"]
    if page.linear_norm is not None or page.constant is not None:
        body.append(f'<p class="note">Bias parts (not in Q): linear part norm '
                    f"{_num(page.linear_norm)}, constant {_num(page.constant)}.</p>")
    body += [figs.html(rf.spectrum(page.eigenvalues, f"eigenvalues of Q(u), {_plain(page.label)}"),
                       340),
             f"<h2>Top positive eigenvectors</h2><p class='note'>In {where}; ranks from 1 by "
             f"|{L}|, as bilin eig numbers them.</p>",
             _eigen_section(figs, page, page.positive, "positive"),
             "<h2>Top negative eigenvectors</h2>",
             _eigen_section(figs, page, page.negative, "negative"),
             "<h2>Truncation error bound</h2>",
             f"<p>Keeping the top {b['top']} eigenpairs (largest |{L}|): |u&middot;y(x) &minus; "
             f"truncated| &le; {_num(b['at_top'])} &middot; ||x||&sup2; (x the {space}), with "
             f"{b['share_at_top']:.1%} of &Sigma;|{L}| kept.</p>",
             figs.html(rf.bound(b, "error bound factor and share kept against K", space), 340)]
    if page.mask is not None:
        body.append(_mask_section(figs, page))
    body.append(_notes(page.notes))
    return _page(f"{page.label} — {r.title}", " ".join(nav), "".join(body))

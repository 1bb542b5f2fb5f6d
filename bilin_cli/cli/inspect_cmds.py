"""Commands that read one checkpoint and report on it: ``info`` and ``eig``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from bilin_cli import api
from bilin_cli.cli.options import (
    Ckpt,
    ClassOpt,
    DirectionOpt,
    FeatureOpt,
    Float64Opt,
    ForceOpt,
    FormatOpt,
    IndexList,
    JsonOpt,
    LayerOpt,
    MapOpt,
    OutputOpt,
    SaeOpt,
    ShardOpt,
    TokenFileOpt,
    TokenOpt,
    TokenStrOpt,
    count,
    dtype_of,
    index_file,
    index_list,
    index_lists,
    output_settings,
)
from bilin_cli.cli.shards import write_part
from bilin_cli.core.errors import BilinError
from bilin_cli.core.printable import say_wrote
from bilin_cli.render.output import Report, Stream, emit
from bilin_cli.render.progress import progress, status
from bilin_cli.render.views import (
    chain_report,
    eig_report,
    info_report,
    spectrum_report,
    suggest_map_report,
)


class Basis(str, Enum):
    auto = "auto"
    input = "input"
    hidden = "hidden"


class Method(str, Enum):
    auto = "auto"
    dense = "dense"
    arpack = "arpack"


def info(
    ckpt: Ckpt,
    map_file: MapOpt = None,
    suggest_map: Annotated[
        bool,
        typer.Option("--suggest-map", help="Print a ready-to-edit --map JSON for this checkpoint "
                     "(the roles bilin found, or its best guess where they are ambiguous)."),
    ] = False,
    json_: JsonOpt = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
) -> None:
    """Show what a checkpoint holds: layout, layers (d, h, o), dtype, parameters, outputs.

    Reads only headers and config.json, no tensor data. A checkpoint whose layout is not
    recognised is listed tensor by tensor; --suggest-map prints a map to start from.

    A map (--map FILE, or "bilin_map" in config.json) names the tensor of each role:
    "layers" (a list, or one object with {i} in its names): "w" and "v" (the two (h, d)
    factors) or "wv" (stacked (2h, d)), optional "p" (o, h), "w_bias", "v_bias",
    "wv_bias", "p_bias"; "embed"; "head" and "head_bias" (after "p" when both: logits =
    H (P g + b_p) + b_h); "kind" (classifier | lm); "residual" (true | false); "norm"
    {"kind": rms | layer | none | scale, "gain": KEY, "bias": KEY} in front of each MLP,
    for token readings ("scale": a linear y = s * x, folded into W and V); "attention"
    {"layers": [{"q1", "q2", "k1", "k2", "v", "o", "scale"}], "norm": scale | rms |
    none, "n_heads": N} for bilinear attention; "final_scale" (a linear scale before the
    unembedding). Keys starting with _ are comments.

    Fully bilinear transformers (two query and two key projections per block) are
    recognised without a map: info reports their heads, d_head, score scale, RoPE and
    causal mask (from config.json where stated) and which linear scales were folded.

    Examples:

    \b
        bilin info sample_checkpoints/mnist
        bilin info sample_checkpoints/toy --suggest-map -o map.json
    """
    if suggest_map:
        if json_ or fmt:
            raise typer.BadParameter("--suggest-map prints JSON already; drop --json/--format",
                                     param_hint="--suggest-map")
        output_settings(False, None, output, force)
        emit(suggest_map_report(*api.suggest_map(ckpt)), "json", output, force)
        return
    fmt_ = output_settings(json_, fmt, output, force)
    emit(info_report(api.info(ckpt, map_file)), fmt_, output, force)


def _kinds(**given) -> list[str]:
    return [f"--{k.rstrip('_').replace('_', '-')}" for k, v in given.items() if v]


@dataclass
class _Directions:
    """The direction options parsed: index lists for classes, tokens (``--token`` then
    ``--token-file``) and SAE features; token texts, .npy files and the SAE as given."""

    classes: list[IndexList]
    ids: list[IndexList]
    feats: list[IndexList]
    token_str: list[str] | None
    direction: list[Path] | None
    sae: Path | None
    from_file: bool

    @property
    def many(self) -> bool:
        """More than one direction (or a list, a range, all or a file that may be)."""
        specs = self.classes + self.ids + self.feats
        return (len(specs) + len(self.token_str or ()) + len(self.direction or ()) > 1
                or any(s.many for s in specs) or self.from_file)

    def api_args(self) -> dict:
        """The keyword arguments of :func:`bilin_cli.api.output_directions`."""
        return {"cls": self.classes, "token": self.ids, "token_text": self.token_str,
                "direction": self.direction, "sae": self.sae, "feature": self.feats or None}


def _directions(class_, token, token_file, token_str, sae, feature, direction, *,
                check: Callable[[], None] | None = None) -> _Directions:
    """Parse the direction options of ``eig`` and ``spectrum``. ``check`` (the command's
    own cross-checks) runs after the --sae/--feature check, before any index is parsed."""
    if (sae is None) != (not feature):
        raise typer.BadParameter("--sae and --feature go together", param_hint="--sae")
    if check is not None:
        check()
    classes = index_lists(class_, "--class")
    ids = index_lists(token, "--token") + ([index_file(token_file)] if token_file else [])
    feats = index_lists(feature, "--feature")
    return _Directions(classes, ids, feats, token_str, direction, sae, token_file is not None)


def _one_kind(class_, token, token_file, token_str, sae, direction) -> None:
    """``eig`` decomposes one kind of direction: classes, tokens, texts, features or files."""
    chosen = _kinds(class_=class_, token=token, token_file=token_file, token_str=token_str,
                    sae=sae, direction=direction)
    if len({"--token" if c == "--token-file" else c for c in chosen}) != 1:
        raise typer.BadParameter(
            "give exactly one of --class, --token (or --token-file), --token-str, "
            "--sae/--feature or --direction" + (f" (got {' and '.join(chosen)})" if chosen
                                                else ""),
            param_hint="direction",
        )


def _whole_run(shard, plot) -> None:
    """``spectrum --plot`` draws a whole run, never a shard's part."""
    if shard is not None and plot is not None:
        raise typer.BadParameter("--shard writes a part file; draw --plot from a whole run",
                                 param_hint="--shard")


def _eig_one(model, index, u, *, k, basis, method, dtype, tokens, chain, show) -> Report:
    """One direction's eig report (a chain of layers with ``chain``)."""
    if chain is not None:
        with status(f"decomposing layer {index} and the layers below"):
            steps = api.chain(model, chain, direction=u, layer=index, top=k, basis=basis,
                              dtype=dtype)
        report = chain_report(steps, chain, model.warnings)
    else:
        d = model.shapes[index].d
        with status(f"eigendecomposing the {d}x{d} interaction matrix of layer {index}"):
            dec = api.eig(model, direction=u, layer=index, top=k, basis=basis, dtype=dtype,
                          method=method, tokens=tokens)
        report = eig_report(dec, model.warnings)
    if show:
        last = steps[-1] if chain is not None else dec
        report.pictures = [(f"#{i + 1}  λ={lam:+.3g}", vec) for i, (lam, vec)
                           in enumerate(zip(last.eigenvalues, last.eigenvectors, strict=True))]
        report.picture_shape = last.input_shape
    return report


def eig(
    ckpt: Ckpt,
    class_: ClassOpt = None,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    token_str: TokenStrOpt = None,
    sae: SaeOpt = None,
    feature: FeatureOpt = None,
    direction: DirectionOpt = None,
    head: Annotated[
        str | None,
        typer.Option("--head", help="Bilinear attention: head H of block L (L.H, from 0); with "
                     "--query-token the score for that query is decomposed as a quadratic form "
                     "in the key.", show_default=False, metavar="L.H"),
    ] = None,
    query_token: Annotated[
        int | None,
        typer.Option("--query-token", help="With --head: the query token's id.",
                     show_default=False, metavar="T", callback=count(0)),
    ] = None,
    query_str: Annotated[
        str | None,
        typer.Option("--query-str", help="With --head: the query token by its text (one "
                     "token, as --token-str).", show_default=False, metavar="S"),
    ] = None,
    layer: LayerOpt = None,
    top: Annotated[
        int, typer.Option("--top", "-k", help="Keep the K eigenpairs of largest |lambda| (all "
                          "of them, with a note, when K is more than there are).",
                          callback=count(1))
    ] = 10,
    all_: Annotated[bool, typer.Option("--all", help="Keep every eigenpair.")] = False,
    basis: Annotated[
        Basis,
        typer.Option(
            help="input: through the embedding, in pixels (default where there is one); "
            "hidden: the layer's own input space (unit-norm eigenvectors, Q v = lambda v)."
        ),
    ] = Basis.auto,
    method: Annotated[
        Method,
        typer.Option(help="dense: eigh of the (d, d) Q; arpack: matrix-free top-K (huge layers)."),
    ] = Method.auto,
    show: Annotated[
        bool, typer.Option("--show", help="Draw the eigenvectors in the terminal (blue > 0, "
                           "red < 0, as RdBu); images for image models.")
    ] = False,
    tokens: Annotated[
        int | None,
        typer.Option("--tokens", help="Language models: read each eigenvector as the N tokens "
                     "whose embeddings (direct path) it weighs most, per sign; 0 = off "
                     "[default: 5].", show_default=False, callback=count(0)),
    ] = None,
    chain: Annotated[
        int | None,
        typer.Option("--chain", help="Multi-layer models: use eigenvector J (its rank from 1, "
                     "as the table numbers it) of layer L as the output direction of layer L-1, "
                     "down to the input.",
                     show_default=False, callback=count(1)),
    ] = None,
    shard: ShardOpt = None,
    float64: Float64Opt = False,
    map_file: MapOpt = None,
    json_: JsonOpt = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
) -> None:
    """Eigendecompose the interaction matrix Q(u) of one output direction.

    u . y(x) = sum_i lambda_i (v_i . x)^2, exactly. Eigenpairs are ordered by
    |lambda| (signs kept) and numbered by rank from 1: eigenvector r here is
    eigenvector r of explain, hosvd, adversarial --eig and --chain. Each
    eigenvector's largest-magnitude entry (in the layer's input space) is
    positive. With biases the linear and constant parts are reported separately.

    Many directions in one run: --class 0,3,7, --class 0-4, --class all (likewise
    --token, --feature, --token-file FILE, or an option given again) give one result
    per direction: a table each, --json as JSON Lines (one line per direction, each the
    document one direction prints), --format csv|tsv with a first column 'direction'
    (class3, token101, feature395, file0), --format npz -o FILE with arrays KEY_eigenvalues,
    KEY_eigenvectors (KEY as that column) and 'directions', the keys in order.
    --shard i/N computes the i-th of N blocks of them into a part file; 'bilin merge'
    joins the parts.

    Bilinear attention (fully bilinear transformers): --head L.H --query-token T
    decomposes head H of block L's score for query token T as a quadratic form in the
    key, score = x_k^T Q x_k (rank 2, direct path, relative distance 0); eigenvectors
    live in the residual stream and are read as key tokens.

    Examples:

    \b
        bilin eig sample_checkpoints/mnist --class 3
        bilin eig sample_checkpoints/mnist --class 3 --top 20 --json | jq '.eigenvalues'
        bilin eig sample_checkpoints/mnist --class 3 --all --basis hidden --format npz -o eig3.npz
        bilin eig sample_checkpoints/mnist --class 3 --top 4 --show
        bilin eig sample_checkpoints/mnist --class all --top 3 --json
        bilin eig sample_checkpoints/mnist --class 0,3,7 --top 5 --format npz -o eig-037.npz
        bilin eig sample_checkpoints/mnist --class all --top 3 --json --shard 1/2 -o eig.part1
        bilin eig sample_checkpoints/shakespeare --layer 2 --token-str e
        bilin eig sample_checkpoints/shakespeare --layer 1 --token-str " " --top 4 --tokens 8
        bilin eig sample_checkpoints/shakespeare --layer 1 --sae sample_checkpoints/shakespeare/sae-mlp-out-L1 --feature 0
        bilin eig sample_checkpoints/shakespeare --layer 1 --sae sample_checkpoints/shakespeare/sae-mlp-out-L1 --feature 0-3 --top 2 --format csv
        bilin eig sample_checkpoints/shakespeare-bilinear --head 0.1 --query-str e --top 2
    """
    if head is not None or query_token is not None or query_str is not None:
        _query_eig(ckpt, head, query_token, query_str, top=None if all_ else top,
                   tokens=tokens, show=show, float64=float64, map_file=map_file, json_=json_,
                   fmt=fmt, output=output, force=force,
                   others=_kinds(class_=class_, token=token, token_file=token_file,
                                 token_str=token_str, sae=sae, direction=direction,
                                 layer=layer is not None, chain=chain is not None,
                                 shard=shard))
        return
    specs = _directions(class_, token, token_file, token_str, sae, feature, direction,
                        check=partial(_one_kind, class_, token, token_file, token_str, sae,
                                      direction))
    if show and (json_ or (fmt or "table").lower() != "table"):
        raise typer.BadParameter("--show draws in the terminal; drop --json/--format",
                                 param_hint="--show")
    if shard is not None and (show or chain is not None):
        raise typer.BadParameter("--shard writes a part file of eigendecompositions; drop "
                                 f"{'--show' if show else '--chain'}", param_hint="--shard")
    fmt_ = output_settings(json_, fmt, output, force)
    dtype = dtype_of(float64)
    model = api.load(ckpt, map_file)
    index = model.resolve_layer(layer)
    dirs = api.output_directions(model, index, **specs.api_args(), dtype=dtype)
    k = None if all_ else top
    tokens = api.token_reading(model, tokens, chain)
    one = partial(_eig_one, model, index, k=k, basis=basis.value, method=method.value,
                  dtype=dtype, tokens=tokens, chain=chain, show=show)
    if shard is not None:
        total = len(dirs)
        items = []
        with progress(f"eigendecomposing directions (part {shard})", total) as advance:
            for u in shard.select(dirs):
                items.append({"key": u.info_key, "doc": one(u).doc})
                advance()
        write_part("eig", shard, total, fmt_, items, output, force, many=specs.many,
                   warnings=model.warnings)
        return
    if not specs.many:
        emit(one(dirs[0]), fmt_, output, force)
        return
    stream = Stream(fmt_, output, force)
    with progress("eigendecomposing directions", len(dirs)) as advance:
        for u in dirs:
            stream.add(one(u), u.info_key)
            advance()
    stream.close()


def _query_eig(ckpt, head, query_token, query_str, *, top, tokens, show, float64, map_file,
               json_, fmt, output, force, others) -> None:
    """``eig --head L.H --query-token T``: one head's score for one query, as a form."""
    if head is None:
        raise typer.BadParameter("--query-token and --query-str go with --head L.H",
                                 param_hint="--head")
    if (query_token is None) == (query_str is None):
        raise typer.BadParameter("--head L.H needs exactly one of --query-token T or "
                                 "--query-str S", param_hint="--head")
    if others:
        raise typer.BadParameter(f"--head chooses the block and the direction itself; drop "
                                 f"{' and '.join(others)}", param_hint="--head")
    if show and (json_ or (fmt or "table").lower() != "table"):
        raise typer.BadParameter("--show draws in the terminal; drop --json/--format",
                                 param_hint="--show")
    fmt_ = output_settings(json_, fmt, output, force)
    model = api.load(ckpt, map_file)
    dec = api.eig(model, head=head, query_token=query_str if query_token is None else query_token,
                  top=top, dtype=dtype_of(float64), tokens=5 if tokens is None else tokens)
    report = eig_report(dec, model.warnings)
    if show:
        report.pictures = [(f"#{i + 1}  λ={lam:+.3g}", vec) for i, (lam, vec)
                           in enumerate(zip(dec.eigenvalues, dec.eigenvectors, strict=True))]
    emit(report, fmt_, output, force)


def spectrum(
    ckpt: Ckpt,
    class_: ClassOpt = None,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    token_str: TokenStrOpt = None,
    sae: SaeOpt = None,
    feature: FeatureOpt = None,
    direction: DirectionOpt = None,
    layer: LayerOpt = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Draw the spectra to a figure (.png, .pdf or "
                                  ".svg, by the extension).", show_default=False)
    ] = None,
    plot_top: Annotated[
        int, typer.Option("--plot-top", help="Eigenvalues per sign drawn in --plot.",
                          callback=count(1))
    ] = 30,
    shard: ShardOpt = None,
    float64: Float64Opt = False,
    map_file: MapOpt = None,
    json_: JsonOpt = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
) -> None:
    """Spectra of many output directions: extremes, effective rank, K for 50/90/99%.

    Without a direction option a classifier shows every class. kP is how many
    eigenvalues (largest |lambda| first) hold P% of sum |lambda|. --shard i/N
    computes the i-th of N blocks of the directions into a part file; 'bilin merge'
    joins the parts into exactly what one run prints.

    Examples:

    \b
        bilin spectrum sample_checkpoints/mnist
        bilin spectrum sample_checkpoints/mnist --class 0 --class 1 --plot spectra.png
        bilin spectrum sample_checkpoints/mnist --class 0-4,9 --format csv
        bilin spectrum sample_checkpoints/shakespeare --layer 1 --token 5 --format csv
        bilin spectrum sample_checkpoints/shakespeare --layer 1 --token-str e --token-str " "
        bilin spectrum sample_checkpoints/shakespeare --layer 1 --sae sample_checkpoints/shakespeare/sae-mlp-out-L1 --feature 395 --feature 8
        bilin spectrum sample_checkpoints/shakespeare --layer 1 --sae sample_checkpoints/shakespeare/sae-mlp-out-L1 --feature 0-63 --shard 2/4 -o spectrum.part2
    """
    specs = _directions(class_, token, token_file, token_str, sae, feature, direction,
                        check=partial(_whole_run, shard, plot))
    fmt_ = output_settings(json_, fmt, output, force, figures=(plot,))
    dtype = dtype_of(float64)
    model = api.load(ckpt, map_file)
    index = model.resolve_layer(layer)
    dirs = api.output_directions(model, index, **specs.api_args(), dtype=dtype)
    if not dirs:
        if model.kind == "lm" or model.head_key is None:
            raise BilinError("choose directions with --token T, --token-str S, --sae DIR "
                             "--feature F (all repeatable) or --direction FILE")
        dirs = api.output_directions(model, index, cls=[index_list("all", "--class")],
                                     dtype=dtype)
    total = len(dirs)
    if shard is not None:
        dirs = shard.select(dirs)
    with progress("eigendecomposing directions", len(dirs)) as advance:
        result = api.spectrum(model, direction=dirs, layer=index, dtype=dtype, advance=advance)
    doc, lams = result.as_dict(), list(result.eigenvalues)
    if shard is not None:
        items = [{"key": u.info_key, "row": row, "eigenvalues": lam.tolist()}
                 for u, row, lam in zip(dirs, doc["directions"], lams, strict=True)]
        head = {**doc, "directions": None, "_dtype": np.dtype(dtype).name}
        write_part("spectrum", shard, total, fmt_, items, output, force, head=head)
        return
    report = spectrum_report(doc)
    report.warnings = list(model.warnings)
    report.arrays = {"eigenvalues": result.eigenvalues}
    if plot is not None:
        from bilin_cli.render.plotting import spectra_plot
        from bilin_cli.render.views import direction_label

        spectra_plot([direction_label(d.info) for d in dirs], lams, plot_top,
                     f"{Path(ckpt).name}, layer {index}", plot, force)
        say_wrote(plot)
    emit(report, fmt_, output, force)


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=True)(info)
    app.command(no_args_is_help=True)(eig)
    app.command(no_args_is_help=True)(spectrum)

"""Commands for language models and SAE features: ``interact`` and ``rank-features``."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from bilin_cli import api
from bilin_cli.cli.options import (
    Ckpt,
    Float64Opt,
    ForceOpt,
    FormatOpt,
    JsonOpt,
    LayerOpt,
    MapOpt,
    OutputOpt,
    ShardOpt,
    count,
    dtype_of,
    output_settings,
    warned,
)
from bilin_cli.cli.shards import write_part
from bilin_cli.core.accel import torch_device
from bilin_cli.render.output import emit
from bilin_cli.render.progress import progress
from bilin_cli.render.views import interact_report, rank_features_report
from bilin_cli.render.views_features import rank_sq_report
from bilin_cli.storage.sae import load_sae


class SortBy(str, Enum):
    share = "top_k_share"
    rank = "effective_rank"


MAX_THREADS = 1024  # more threads than this is a typo, not a machine

SaeOutOpt = Annotated[
    Path,
    typer.Option("--sae-out", help="SAE on the layer's output (paper or SAELens format).",
                 show_default=False),
]


def interact(
    ckpt: Ckpt,
    sae_in: Annotated[
        Path, typer.Option("--sae-in", help="SAE on the layer's input (its decoder is the basis).",
                           show_default=False)
    ],
    sae_out: SaeOutOpt,
    feature: Annotated[int, typer.Option("--feature", help="Output SAE feature index.",
                                         show_default=False)],
    layer: LayerOpt = None,
    top: Annotated[
        int, typer.Option("--top", "-n", help="Feature pairs of each kind.", callback=count(1))
    ] = 10,
    eig: Annotated[
        int, typer.Option("--eig", help="Eigenvectors to express in features (the top N, "
                          "numbered by rank from 1 as bilin eig does).",
                          callback=count(0))
    ] = 3,
    per_eig: Annotated[
        int, typer.Option("--features-per-eig", help="Input features shown per eigenvector.",
                          callback=count(1))
    ] = 5,
    float64: Float64Opt = False,
    map_file: MapOpt = None,
    json_: JsonOpt = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
) -> None:
    """Interactions of input-SAE features for one output-SAE feature: D^T Q D.

    Q is the interaction matrix of the output feature's encoder row; D holds the
    input SAE's decoder columns. Shows the top self (z_i^2) and cross (z_i z_j)
    interactions, and Q's top eigenvectors as their largest input-feature loadings
    D^T v. The (f_in, f_in) matrix is streamed in blocks, never held whole.

    Example:

    \b
        bilin interact sample_checkpoints/shakespeare --layer 1 --sae-in sample_checkpoints/shakespeare/sae-mlp-in-L1 --sae-out sample_checkpoints/shakespeare/sae-mlp-out-L1 --feature 0
    """
    fmt_ = output_settings(json_, fmt, output, force)
    dtype = dtype_of(float64)
    model = api.load(ckpt, map_file)
    result = api.interact(model, sae_in, sae_out, feature, layer, top, eig, per_eig, dtype)
    emit(warned(interact_report(result.as_dict()), model), fmt_, output, force)


def rank_features_cmd(
    ckpt: Ckpt,
    sae_out: SaeOutOpt,
    layer: LayerOpt = None,
    k: Annotated[
        int, typer.Option("--k", "-k", help="Eigenvalues counted as 'top' (as -k counts the top "
                          "k eigenvalues in eig).", callback=count(1, says="positive"))
    ] = 2,
    limit: Annotated[
        int | None,
        typer.Option("--limit", help="Rank only the first N features (a quick look).",
                     show_default=False, callback=count(1, says="positive")),
    ] = None,
    top: Annotated[
        int | None,
        typer.Option("--top", "-n", help="Report only the N most low-rank features (all are "
                     "ranked), as head -n.",
                     show_default=False, callback=count(1, says="positive")),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option("--threads", help="Worker threads, at most "
                     f"{MAX_THREADS} [default: every available core].", show_default=False,
                     callback=count(1, MAX_THREADS, says=f"positive and at most {MAX_THREADS}")),
    ] = None,
    sort: Annotated[
        SortBy, typer.Option("--sort", help="Most low-rank first by the top-k share (largest "
                             "first) or by the effective rank (smallest first).")
    ] = SortBy.share,
    device: Annotated[
        str | None,
        typer.Option("--device", help="Run Q and its eigenvalues on a torch device (cuda, "
                     "cuda:1, mps, cpu) in batches; needs torch [default: NumPy on the CPU].",
                     show_default=False),
    ] = None,
    measure: Annotated[
        str, typer.Option("--measure", help="What is ranked: top_k_share (the paper's share of "
                          "sum|lambda| in the top k, at every layer size) or effective_rank "
                          "(the paper's, sorted by it), or sq_top_k_share (the share of sum "
                          "lambda^2, only when asked). 'auto' is an old spelling of "
                          "top_k_share.")
    ] = "top_k_share",
    route: Annotated[
        str, typer.Option("--route", help="How: auto (bilin chooses and says which: certified "
                          "with --top on a layer where building every Q is long, features x h "
                          "x d^2 >= 1e12, else dense), dense (every Q built) or certified "
                          "(Lanczos bounds rule out the rest; the rows are still dense).")
    ] = "auto",
    shard: ShardOpt = None,
    float64: Float64Opt = False,
    map_file: MapOpt = None,
    json_: JsonOpt = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
) -> None:
    """Rank output-SAE features by how low-rank their interaction matrices are.

    For every feature: the share of sum |lambda| in its top-k eigenvalues and its
    effective rank ((sum|lambda|)^2 / sum lambda^2), most low-rank first: the paper's
    search for low-rank circuits. Streams over features with a progress bar, on
    every available core.

    --measure says what is ranked and bilin chooses how (--route), and says which. On
    large layers with --top N the certified route ranks the same measure without building
    every Q: sum lambda^2 exactly from Gram matrices, Lanczos bounds batched over features
    (on sum |lambda|, the top-k sum and the effective rank), the N reported rows exact
    (dense float64), every other feature ruled out below the N-th exact value except with
    the probability the certificate states (at most 1e-10 per feature), one line under
    the table and "certificate" in the JSON. --measure sq_top_k_share ranks by the share
    of sum lambda^2 instead, only when asked.

    Examples:

    \b
        bilin rank-features sample_checkpoints/shakespeare --layer 1 --sae-out sample_checkpoints/shakespeare/sae-mlp-out-L1 --top 10
        bilin rank-features sample_checkpoints/shakespeare --layer 1 --sae-out sample_checkpoints/shakespeare/sae-mlp-out-L1 --limit 50 --sort effective_rank
        bilin rank-features sample_checkpoints/shakespeare --layer 1 --sae-out sample_checkpoints/shakespeare/sae-mlp-out-L1 --format csv -o ranks.csv
        bilin rank-features sample_checkpoints/shakespeare --layer 1 --sae-out sample_checkpoints/shakespeare/sae-mlp-out-L1 --top 10 --shard 1/4 -o ranks.part1
        bilin rank-features sample_checkpoints/shakespeare --layer 1 --sae-out sample_checkpoints/shakespeare/sae-mlp-out-L1 --top 10 --measure sq_top_k_share
    """
    fmt_ = output_settings(json_, fmt, output, force)
    if device is not None:
        torch_device(device)  # a missing torch or GPU fails before any loading
    dtype = dtype_of(float64)
    model = api.load(ckpt, map_file)
    index = model.resolve_layer(layer)
    s_out = load_sae(sae_out, dtype)
    features = np.arange(s_out.n_features if limit is None else min(limit, s_out.n_features))
    total, features = len(features), features if shard is None else shard.select(
        features, align=32 if device is None else 256)  # the chunks rank_features uses
    if measure not in ("auto", "top_k_share", "effective_rank", "sq_top_k_share"):
        raise typer.BadParameter("use top_k_share, effective_rank or sq_top_k_share",
                                 param_hint="--measure")
    if route not in ("auto", "dense", "certified"):
        raise typer.BadParameter("use auto, dense or certified", param_hint="--route")
    if route == "certified" and (top is None or shard is not None):
        raise typer.BadParameter("the certified route needs --top N and no --shard",
                                 param_hint="--route")
    if measure == "auto":
        print("warning: --measure auto is deprecated; it means top_k_share (the paper's "
              "measure) at every layer size", file=sys.stderr)
        measure = "top_k_share"
    if measure == "sq_top_k_share" and shard is not None:
        raise typer.BadParameter("sq_top_k_share screens every feature at once; shard "
                                 "top_k_share or effective_rank", param_hint="--shard")
    with progress("ranking features", len(features)) as advance:
        r = api.rank_features(model, s_out, index, k, features=features,
                              top=None if shard is not None else top, sort=sort.value,
                              measure=measure, workers=threads, device=device, dtype=dtype,
                              sharded=shard is not None, advance=advance, route=route)
    if r.measure == "sq_top_k_share":
        emit(warned(rank_sq_report({"layer": index, "sae_out": str(sae_out), "k": k,
                                    "measure": r.measure, "sorted_by": r.measure,
                                    "features_ranked": r.features_ranked, "features": r.rows,
                                    "certificate": r.certificate, "notes": r.notes}), model),
             fmt_, output, force)
        return
    doc = {"layer": index, "sae_out": str(sae_out), "k": k, "measure": r.measure,
           "sorted_by": r.sorted_by, "route": r.route, "features_ranked": r.features_ranked,
           "features": r.rows[:top]}
    if r.certificate:
        doc["certificate"] = r.certificate
    if r.notes:
        doc["notes"] = r.notes
    if shard is not None:  # every row of the part: --top applies after 'bilin merge'
        return write_part("rank-features", shard, total, fmt_, r.rows, output, force,
                          head={**doc, "features": None, "_top": top})
    emit(warned(rank_features_report(doc), model), fmt_, output, force)


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=True)(interact)
    app.command("rank-features", no_args_is_help=True)(rank_features_cmd)

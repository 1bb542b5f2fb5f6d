"""The ``attention`` command: weight-based readings of bilinear attention heads."""

from __future__ import annotations

from typing import Annotated

import typer

from bilin_cli import api
from bilin_cli.cli.options import (
    Ckpt,
    Float64Opt,
    ForceOpt,
    FormatOpt,
    JsonOpt,
    MapOpt,
    OutputOpt,
    count,
    dtype_of,
    output_settings,
)
from bilin_cli.core.errors import BilinError
from bilin_cli.render.output import emit
from bilin_cli.render.progress import status


def _heads(values: list[str] | None, layer: int | None) -> tuple[int | None, list[int] | None]:
    """``--head H`` (with ``--layer``) or ``--head L.H`` (repeatable, one block)."""
    if not values:
        return layer, None
    layers, heads = set(), []
    for text in values:
        if "." in text:
            L, H = api.parse_head(text)
            layers.add(L)
        else:
            try:
                H = int(text)
            except ValueError:
                raise BilinError(f"--head must be H or L.H, got {text[:40]!r}") from None
            layers.add(layer)
        heads.append(H)
    if layer is not None:
        layers.add(layer)
    layers.discard(None)
    if len(layers) > 1:
        raise BilinError("--head: give heads of one block at a time (one L, or --layer L)")
    return (layers.pop() if layers else None), heads


def attention(
    ckpt: Ckpt,
    layer: Annotated[
        int | None,
        typer.Option("--layer", "-l", help="Block (from 0; default: every block with bilinear "
                     "attention).", show_default=False),
    ] = None,
    head: Annotated[
        list[str] | None,
        typer.Option("--head", help="Head H of --layer, or L.H (repeatable; default: all).",
                     show_default=False, metavar="H"),
    ] = None,
    top: Annotated[
        int, typer.Option("--top", "-k", help="Singular components of each form to show (at "
                          "most d_head).", callback=count(1))
    ] = 5,
    pairs: Annotated[
        int, typer.Option("--pairs", help="Query/key token pairs (largest and most negative "
                          "score) and source=>token writes to list per head; 0 = off.",
                          callback=count(0))
    ] = 10,
    tokens: Annotated[
        int, typer.Option("--tokens", help="Tokens per side read from each singular vector; "
                          "0 = off.", callback=count(0))
    ] = 5,
    float64: Float64Opt = False,
    map_file: MapOpt = None,
    json_: JsonOpt = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
) -> None:
    """Read bilinear attention heads from their weights: QK forms, OV map, token pairs.

    A fully bilinear transformer's head scores query x_q against key x_k as
    scale * (x_q^T A_1 x_k)(x_q^T A_2 x_k), with A_1 = Wq1^T Wk1 and A_2 = Wq2^T Wk2,
    and writes Wo Wv x_k (no softmax). For each head: the singular values and vectors
    of A_1, A_2 and OV = Wo Wv (components by rank from 1, each vector read as the
    tokens whose direct-path input, or for OV's output side whose unembedding row, it
    weighs most), the query->key token pairs of largest and most negative score, and
    the source=>token writes U Wo Wv x_s of largest logit. Exact functions of the
    weights, read on the direct path at relative distance 0: positional terms (RoPE),
    the causal mask, earlier layers and other paths are left out, as the notes say.
    For one query token's score as a quadratic form in the key, use 'bilin eig CKPT
    --head L.H --query-token T'.

    --format csv|tsv lists every component (layer, head, form, rank, sigma, share,
    tokens); --format npz -o FILE writes LxHy_{A_1,A_2,OV}_{sigma,query,key,output,input}.

    Examples:

    \b
        bilin attention sample_checkpoints/shakespeare-bilinear --layer 0 --head 1
        bilin attention sample_checkpoints/shakespeare-bilinear --head 1.0 --top 3 --json | jq '.heads[0].top_pairs'
        bilin attention sample_checkpoints/shakespeare-bilinear --pairs 0 --tokens 0 --format csv
    """
    from bilin_cli.render.views_network import attention_report

    fmt_ = output_settings(json_, fmt, output, force)
    block, heads = _heads(head, layer)
    model = api.load(ckpt, map_file)
    with status("reading attention heads"):
        result = api.attention(model, block, heads, top, pairs, tokens, dtype_of(float64))
    emit(attention_report(result.as_dict(), model.warnings), fmt_, output, force)


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=True)(attention)

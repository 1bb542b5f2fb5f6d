"""Commands that show what a model's features are: ``hosvd``, ``explain`` and ``compare``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from bilin_cli import api
from bilin_cli.cli.inspect_cmds import Basis
from bilin_cli.cli.options import (
    Ckpt,
    Float64Opt,
    ForceOpt,
    FormatOpt,
    JsonOpt,
    LayerOpt,
    MapOpt,
    OutputOpt,
    count,
    dtype_of,
    number,
    output_settings,
)
from bilin_cli.core.printable import say_wrote
from bilin_cli.render.output import emit
from bilin_cli.render.progress import progress

PlotOpt = Annotated[
    Path | None, typer.Option("--plot", help="Also draw a figure to this file (.png, .pdf or "
                              ".svg, by the extension).", show_default=False)
]


class HosvdMethod(str, Enum):
    auto = "auto"
    gram = "gram"
    unfold = "unfold"


def hosvd(
    ckpt: Ckpt,
    layer: LayerOpt = None,
    components: Annotated[
        int, typer.Option("--components", "-K", help="Number of components (largest sigma) to "
                          "show; at most the rank of B.", callback=count(1))
    ] = 10,
    top: Annotated[
        int, typer.Option("--top", "-k", help="Eigenpairs of each component's Q_k to show.",
                          callback=count(1))
    ] = 5,
    basis: Annotated[
        Basis,
        typer.Option(help="input: eigenvectors through the embedding, in pixels (default where "
                     "there is one); hidden: the layer's own input space."),
    ] = Basis.auto,
    method: Annotated[
        HosvdMethod,
        typer.Option(help="gram: B B^T from (h, h) products, never forms B; unfold: SVD of the "
                     "(o, d^2) unfolding; auto: whichever needs less memory."),
    ] = HosvdMethod.auto,
    max_memory: Annotated[
        float | None,
        typer.Option("--max-memory", help="Memory limit in GB (default: MemAvailable).",
                     show_default=False,
                     callback=number(0, low_open=True, says="a positive, finite number of GB")),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Also draw a figure to this file (.png, .pdf or .svg, by "
                     "the extension).", show_default=False),
    ] = None,
    float64: Float64Opt = False,
    map_file: MapOpt = None,
    json_: JsonOpt = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
) -> None:
    """Higher-order SVD of a layer: B = sum_k sigma_k u_k (x) Q_k, each Q_k eigendecomposed.

    The symmetrized tensor B (o, d, d) unfolded to (o, d^2) is split into
    components: u_k (unit, one entry per output/class) says how much each output
    uses component k, and Q_k (a symmetric interaction matrix, unit Frobenius
    norm) is eigendecomposed like any other (|lambda| descending, bilin eig's sign
    rule). Each u_k's largest-magnitude entry is positive. With biases only the
    interaction block is decomposed. The (o, d^2) unfolding is not formed by
    default; the estimated memory is checked against MemAvailable first.

    Components are numbered from 1 (component 1 has the largest sigma), and so
    are each Q_k's eigenvalues (rank 1 = largest |lambda|), as bilin eig numbers
    eigenvectors. Only components with a nonzero singular value are shown: the
    rank of B counts singular values above a tolerance that suits the method
    (unfold: sigma_1 * max(o, d^2) * eps; gram, which gets sigma from sigma^2:
    sigma_1 * sqrt((o + h + d) * eps)); JSON reports rank and rank_tolerance.
    CSV/TSV columns are the JSON keys of each component.

    --format npz -o FILE writes sigma (K,), U (o, K), eigenvalues (K, top),
    eigenvectors (K, top, dim) and all_singular_values; index k-1 of an axis of
    length K is component k, index r-1 of an axis of length top is rank r.

    Examples:

    \b
        bilin hosvd sample_checkpoints/mnist --components 5
        bilin hosvd sample_checkpoints/mnist --json | jq '.components[0].eigenvalues'
        bilin hosvd sample_checkpoints/mnist --plot hosvd.pdf --format npz -o hosvd.npz
    """
    from bilin_cli.render.views_features import hosvd_report

    fmt_ = output_settings(json_, fmt, output, force, figures=(plot,))
    dtype = dtype_of(float64)
    model = api.load(ckpt, map_file)
    index = model.resolve_layer(layer)
    res = api.hosvd(model, index, components, top, basis.value, dtype, method=method.value,
                    max_memory_gb=max_memory)
    if plot is not None:
        from bilin_cli.render.plotting_features import hosvd_plot

        hosvd_plot(res, f"{Path(ckpt).name}, layer {index}: HOSVD", plot, force)
        say_wrote(plot)
    emit(hosvd_report(res, model.warnings), fmt_, output, force)


def explain(
    ckpt: Ckpt,
    input_: Annotated[
        str,
        typer.Option("--input", "-i", help="DATA:INDEX (an .npz with x, y or an idx directory), "
                     "an image file (28x28 greyscale PNG for MNIST), a .npy vector, or "
                     "comma-separated numbers.", show_default=False),
    ],
    classes: Annotated[
        int, typer.Option("--classes", help="Explain the N classes with the largest logits.",
                          callback=count(1))
    ] = 3,
    top: Annotated[
        int, typer.Option("--top", "-k", help="Largest contributions to show per sign.",
                          callback=count(1))
    ] = 5,
    plot: PlotOpt = None,
    float64: Float64Opt = False,
    map_file: MapOpt = None,
    json_: JsonOpt = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
) -> None:
    """Explain one prediction: each eigenvector's contribution lambda_i (v_i . h)^2 to a logit.

    For each of the top classes the logit is split exactly into the contributions
    of all eigenvectors of that class's Q (h = E x, the layer's input) plus, with
    biases, a linear and a constant part (and the skip path of a residual model).
    The largest positive and negative contributions are listed with their rank
    (from 1, |lambda| descending: eigenvector r is row r of 'bilin eig --class C
    --all'; the figure's #r too); the check field gives the residual of the sum
    against the model's forward pass. Classifiers only (image and toy models).

    Examples:

    \b
        bilin explain sample_checkpoints/mnist --input sample_checkpoints/data/mnist-test.npz:0
        bilin explain sample_checkpoints/mnist --input sample_checkpoints/data/mnist-test.npz:1 --classes 2 --plot why.png
        bilin explain sample_checkpoints/mnist -i sample_checkpoints/data/mnist-test.npz:7 --json
    """
    from bilin_cli.render.views_features import explain_report

    fmt_ = output_settings(json_, fmt, output, force, figures=(plot,))
    dtype = dtype_of(float64)
    model = api.load(ckpt, map_file)
    ex = api.explain(model, input_, classes, dtype)
    inp = ex.input
    if plot is not None:
        from bilin_cli.render.plotting_features import explain_plot

        label = f", label {inp.source['label']}" if "label" in inp.source else ""
        explain_plot(ex, top, f"{Path(ckpt).name}: predicted {ex.classes[0].name}{label}", plot,
                     force)
        say_wrote(plot)
    emit(explain_report(ex, top, model.warnings + inp.warnings), fmt_, output, force)


def compare(
    models: Annotated[list[Path], typer.Argument(
        help="Checkpoints: two (A B), or with --network two or more.", show_default=False,
        metavar="A B [C ...]")],
    network: Annotated[
        bool, typer.Option("--network", help="Data-free similarity of whole networks: "
                           "E_x[f_a(x) . f_b(x)] over Gaussian inputs, as a cosine (a matrix "
                           "for more than two).")
    ] = False,
    class_: Annotated[
        list[int] | None,
        typer.Option("--class", "-c", help="Classes to compare (repeatable; default: all; "
                     "with --network: outputs given a per-output cosine).",
                     show_default=False),
    ] = None,
    top: Annotated[
        int, typer.Option("--top", "-k", help="Compare the K eigenpairs of largest |lambda| "
                          "(all of them, with a note, when K is more than there are).",
                          callback=count(1))
    ] = 10,
    basis: Annotated[
        Basis,
        typer.Option(help="input: pixels (E^T v), where both models embed inputs of the same "
                     "size (default then); hidden: the layers' input space (needs equal d)."),
    ] = Basis.auto,
    input_cov: Annotated[
        Path | None,
        typer.Option("--input-cov", help="With --network: x ~ N(0, Sigma), Sigma the "
                     "covariance of a data file's inputs (.npz with x, an idx folder) or a "
                     ".npy (n, n) matrix (default: N(0, I)).", show_default=False),
    ] = None,
    input_mean: Annotated[
        bool, typer.Option("--input-mean", help="With --network --input-cov DATA: also use the "
                           "data's mean, x ~ N(mean, Sigma).")
    ] = False,
    float64: Float64Opt = False,
    map_file: MapOpt = None,
    json_: JsonOpt = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
) -> None:
    """How alike two classifiers' features are, per class (e.g. two training seeds).

    For each class: |cos| of rank-matched eigenvectors (i-th of A vs i-th of B),
    the mean |cos| after Hungarian matching of the top-K (never below the
    rank-matched mean), and the Quadratic Form Similarity
    QFS = tr(A B) / (||A||_F ||B||_F) with A = sum_{top-K} lambda_i x_i x_i^T
    (1 = the same quadratic form; independent of eigenvector signs). "QFS all"
    uses every eigenpair. Vectors are compared in pixel space where both models
    embed the same input size, else in hidden space. Hungarian pairs [i, j, |cos|]
    name eigenvectors by rank from 1, as bilin eig numbers them.

    --network compares whole networks (seeds, checkpoints over training, fine-tunes)
    by the data-free similarity <f_a, f_b> = E_x[f_a(x) . f_b(x)], x ~ N(0, I) (or
    --input-cov), as a cosine overall and per output. Exact for one bilinear layer
    (closed form by Isserlis' theorem, biases, residual path, embedding and head
    included); deeper stacks use the Gaussian closure (each layer's input taken as
    Gaussian with its exact mean and covariance), which the output states. Language
    models: the input is a residual-stream vector, each MLP with its residual path and
    the unembedding are covered, attention is left out. With more than two networks
    the result is the cosine matrix (-o sim.csv); an interrupted run keeps its
    finished pairs in FILE.partial.jsonl beside -o FILE, and the same command resumes
    from them.

    Examples:

    \b
        bilin compare sample_checkpoints/mnist sample_checkpoints/fmnist --top 5
        bilin compare sample_checkpoints/mnist sample_checkpoints/mnist --class 3 --json
        bilin compare --network sample_checkpoints/mnist sample_checkpoints/mnist-bias
        bilin compare --network sample_checkpoints/mnist sample_checkpoints/mnist-bias sample_checkpoints/fmnist -o sim.csv
        bilin compare --network sample_checkpoints/mnist sample_checkpoints/fmnist --input-cov sample_checkpoints/data/mnist-test.npz --json
    """
    if network:
        _network(models, class_, input_cov, input_mean, map_file, json_, fmt, output, force)
        return
    if input_cov is not None or input_mean:
        raise typer.BadParameter("--input-cov and --input-mean go with --network",
                                 param_hint="--input-cov")
    if len(models) != 2:
        raise typer.BadParameter(f"give two checkpoints A B (got {len(models)}); --network "
                                 "compares more", param_hint="A B")
    from bilin_cli.render.views_features import compare_report

    fmt_ = output_settings(json_, fmt, output, force)
    dtype = dtype_of(float64)
    a, b = models
    ma, mb = api.load(a, map_file), api.load(b, map_file)
    n = len(class_) if class_ else ma.shapes[-1].o
    with progress("comparing classes", n) as advance:
        result = api.compare(ma, mb, class_ or None, top, basis.value, dtype, advance=advance)
    emit(compare_report(result.as_dict(), ma.warnings + mb.warnings), fmt_, output, force)


def _network(models, class_, input_cov, input_mean, map_file, json_, fmt, output,
             force) -> None:
    """``compare --network``: the similarity of whole networks, resumable with ``-o``."""
    from bilin_cli.render.views_network import network_report

    if len(models) < 2:
        raise typer.BadParameter("--network needs at least two checkpoints", param_hint="A B")
    fmt_ = output_settings(json_, fmt, output, force)
    resume = None if output is None else Path(str(output) + ".partial.jsonl")
    loaded = []
    with progress("loading networks", len(models)) as advance:
        for path in models:
            loaded.append(api.load(path, map_file))
            advance()
    n = len(models)
    with progress("network similarity (pairs)", n * (n + 1) // 2) as advance:
        result = api.network_similarity(loaded, class_ or None, input_cov, input_mean,
                                        resume=resume, advance=advance)
    warnings = [w for m in loaded for w in m.warnings]
    emit(network_report(result.as_dict(), warnings), fmt_, output, force)
    if resume is not None and resume.exists():
        resume.unlink()


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=True)(hosvd)
    app.command(no_args_is_help=True)(explain)
    app.command(no_args_is_help=True)(compare)

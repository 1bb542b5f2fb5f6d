"""The ``bilin`` typer app, its entry point and error handling."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bilin_cli import __version__
from bilin_cli.errors import BilinError

app = typer.Typer(
    name="bilin",
    help="Weight-based interpretability for bilinear networks: every output direction u of "
    "a bilinear layer has an interaction matrix Q(u) whose eigendecomposition explains the "
    "layer exactly.\n\nExample: bilin eig sample_checkpoints/mnist --class 3",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"bilin {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    pass


def _register() -> None:
    from bilin_cli.cli import (
        adversarial_cmds,
        features_cmds,
        inspect_cmds,
        lm_cmds,
        lowrank_cmds,
        plot_cmds,
    )

    inspect_cmds.register(app)
    lowrank_cmds.register(app)
    plot_cmds.register(app)
    lm_cmds.register(app)
    features_cmds.register(app)
    adversarial_cmds.register(app)


_register()


def main() -> None:
    """Console entry point: user errors become one ``error:`` line and exit code 1."""
    try:
        app(prog_name="bilin")
    except BilinError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        # The reader (head, jq) went away; that is not an error of ours.
        sys.stderr.close()
        sys.exit(0)
    except MemoryError:
        print("error: out of memory; try a smaller layer, --top with --method arpack, "
              "or float32", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        sys.exit(1)

"""The ``bilin`` typer app, its entry point and error handling."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bilin_cli import __version__, entry
from bilin_cli.errors import BilinError
from bilin_cli.printable import printable


def _strict_group():
    from bilin_cli.cli.options import StrictGroup

    return StrictGroup


app = typer.Typer(
    name="bilin",
    help="Weight-based interpretability for bilinear networks: every output direction u of "
    "a bilinear layer has an interaction matrix Q(u) whose eigendecomposition explains the "
    "layer exactly.\n\nExample: bilin eig sample_checkpoints/mnist --class 3",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain click help: bracketed text ("[x; 1]", "[default: 5]") is shown as written and
    # flags get no metavar; StrictGroup refuses a repeated single-value option.
    rich_markup_mode=None,
    cls=_strict_group(),
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
        merge_cmds,
        plot_cmds,
    )

    inspect_cmds.register(app)
    lowrank_cmds.register(app)
    plot_cmds.register(app)
    lm_cmds.register(app)
    features_cmds.register(app)
    adversarial_cmds.register(app)
    merge_cmds.register(app)


_register()


def _error(message: object) -> None:
    """Print ``error: <message>`` on one line, made safe for a terminal and kept short."""
    print(f"error: {printable(message, limit=1000)}", file=sys.stderr)


def main() -> None:
    """Entry point (the console script reaches it through :func:`bilin_cli.entry.main`).

    User errors become one ``error:`` line and exit code 1; SIGINT and SIGTERM become
    ``error: interrupted`` and exit code 130, after the writers have removed their
    temporary files. Called in-process (tests), it installs the signal handlers for the
    run and puts the previous ones back afterwards.
    """
    installed_here = entry.install()
    try:
        try:
            _run()
        except SystemExit as exc:
            # A signal whose exception some library swallowed, or a KeyboardInterrupt (no
            # handlers of ours: not the main thread) that typer turned into a silent exit.
            if entry.interrupted() or _caused_by_keyboard_interrupt(exc):
                raise entry.Interrupted() from None
            raise
    except (entry.Interrupted, KeyboardInterrupt):
        entry.report_interrupted()
    finally:
        if installed_here:
            entry.uninstall()


def _caused_by_keyboard_interrupt(exc: BaseException) -> bool:
    for _ in range(8):
        exc = exc.__cause__ or exc.__context__
        if exc is None:
            return False
        if isinstance(exc, KeyboardInterrupt):
            return True
    return False


def _run() -> None:
    try:
        app(prog_name="bilin")
    except BilinError as exc:
        _error(exc)
        sys.exit(1)
    except BrokenPipeError:
        # The reader (head, jq) went away; that is not an error of ours.
        sys.stderr.close()
        sys.exit(0)
    except MemoryError:
        _error("out of memory; try a smaller layer, --top with --method arpack, or float32")
        sys.exit(1)
    except OSError as exc:
        _error(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        sys.exit(1)

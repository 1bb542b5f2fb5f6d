"""The ``bilin`` typer app, its entry point and error handling.

Start-up is kept short (users run ``bilin`` in shell loops): the root group knows each
command's name, short help and module from :data:`COMMANDS`, and imports a command's
module (and so numpy, the loaders, scipy where a command needs it) only when that command
runs or its ``--help`` is shown. ``bilin --version`` and ``bilin --help`` import typer's
click and nothing of numpy, pydantic or rich.
"""

from __future__ import annotations

import importlib
import sys
import typing
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated

import typer
import typer.main
from typer.core import TyperArgument, TyperGroup

from bilin_cli import __version__
from bilin_cli.core import interrupts
from bilin_cli.core.errors import BilinError
from bilin_cli.core.printable import printable

HELP = (
    "Weight-based interpretability for bilinear networks: every output direction u of "
    "a bilinear layer has an interaction matrix Q(u) whose eigendecomposition explains the "
    "layer exactly.\n\nExample: bilin eig sample_checkpoints/mnist --class 3"
)
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}

# Every command, in the order ``bilin --help`` lists them: (name, module in bilin_cli.cli,
# first paragraph of its docstring). tests/test_fast_path.py checks this against the
# commands the modules register.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("info", "inspect_cmds", "Show what a checkpoint holds: layout, layers (d, h, o), dtype, "
     "parameters, outputs."),
    ("eig", "inspect_cmds", "Eigendecompose the interaction matrix Q(u) of one output "
     "direction."),
    ("spectrum", "inspect_cmds", "Spectra of many output directions: extremes, effective "
     "rank, K for 50/90/99%."),
    ("truncate", "lowrank_cmds", "Keep each class's K eigenpairs of largest |lambda|; write "
     "the truncated model to -o."),
    ("eval", "lowrank_cmds", "Accuracy (overall and per class) of a classifier on labelled "
     "data."),
    ("plot", "plot_cmds", "Draw the eigenspectrum figure: eigenvalue curve plus top "
     "positive/negative eigenvectors."),
    ("interact", "lm_cmds", "Interactions of input-SAE features for one output-SAE feature: "
     "D^T Q D."),
    ("rank-features", "lm_cmds", "Rank output-SAE features by how low-rank their interaction "
     "matrices are."),
    ("hosvd", "features_cmds", "Higher-order SVD of a layer: B = sum_k sigma_k u_k (x) Q_k, "
     "each Q_k eigendecomposed."),
    ("explain", "features_cmds", "Explain one prediction: each eigenvector's contribution "
     "lambda_i (v_i . h)^2 to a logit."),
    ("compare", "features_cmds", "How alike two classifiers' features are, per class (e.g. "
     "two training seeds)."),
    ("attention", "attention_cmds", "Read bilinear attention heads from their weights: QK "
     "forms, OV map, token pairs."),
    ("adversarial", "adversarial_cmds", "Adversarial masks from eigenvectors alone: push "
     "images of other classes to a target."),
    ("merge", "merge_cmds", "Join the parts of a job run with --shard i/N into what one run prints."),
    ("report", "report_cmds", "Write a browsable HTML report: an overview and one page per "
     "output direction."),
)
MODULES = tuple(dict.fromkeys(module for _, module, _ in COMMANDS))


def _module_typer(module: str) -> typer.Typer:
    """A Typer holding the commands that ``bilin_cli.cli.<module>`` registers."""
    sub = typer.Typer(rich_markup_mode=None, add_completion=False,
                      pretty_exceptions_enable=False)
    importlib.import_module(f"bilin_cli.cli.{module}").register(sub)
    return sub


def _load_commands(module: str) -> dict:
    """The click commands of one module, built the way ``typer.main.get_command`` builds
    them for the app (plain click help, no rich)."""
    from typer.main import get_command_from_info

    return {cmd.name: cmd for cmd in (
        get_command_from_info(info, pretty_exceptions_short=True, rich_markup_mode=None)
        for info in _module_typer(module).registered_commands)}


def _plain_metavar(param) -> str:
    """A plain metavar for an option without one: what kind of value it takes, in capitals
    (N, NUM, TEXT, FILE), or its choices as ``[a|b|c]``; never a Python type."""
    desc = param.type_descriptor
    if desc.is_choice:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in desc.choices or ()) + "]"
    annotation = desc.annotation
    while typing.get_origin(annotation) is list:
        annotation = typing.get_args(annotation)[0]
    if desc.is_path or annotation is Path:
        return "FILE"
    if annotation is int:
        return "N"
    if annotation is float:
        return "NUM"
    return "TEXT"


class PlainArgument(TyperArgument):
    """An argument shown by its metavar alone: ``CKPT`` in the usage line and the list of
    arguments, not ``{CKPT}`` and ``CKPT <path>``."""

    def display_type_rich(self, ctx) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        if self.nargs != 1 and "..." not in name:
            name += "..."
        return name if self.required else f"[{name}]"


def plain_metavars(command) -> None:
    """Give ``command``'s options plain metavars (N, FILE, TEXT, [a|b]) where they have
    none, and its arguments plain names, so ``--help`` shows no ``<int>``, ``<list[Path]>``
    or ``{CKPT}``. Idempotent."""
    for param in getattr(command, "params", ()):
        if isinstance(param, TyperArgument) and not isinstance(param, PlainArgument):
            param.__class__ = PlainArgument
        elif (getattr(param, "param_type_name", "") == "option" and param.metavar is None
              and not getattr(param, "is_flag", False) and not getattr(param, "count", False)
              and hasattr(param, "type_descriptor")):
            param.metavar = _plain_metavar(param)


class BilinGroup(TyperGroup):
    """The root group: lazy commands, and a repeated single-value option refused.

    A command's module is imported when the command is resolved (to run it or show its
    ``--help``); ``bilin --help`` lists every command from :data:`COMMANDS` alone.
    Commands already in ``self.commands`` (``typer.main.get_command(app)``) are used as
    they are.
    """

    def invoke(self, ctx):
        # What the command opens is recorded for this run only (no output replaces it).
        from bilin_cli.core.errors import speaking_to_the_cli
        from bilin_cli.storage.inputs import command_run

        with speaking_to_the_cli(), command_run():
            return super().invoke(ctx)

    def list_commands(self, ctx) -> list[str]:
        return list(dict.fromkeys([*self.commands, *(name for name, _, _ in COMMANDS)]))

    def get_command(self, ctx, cmd_name: str):
        if cmd_name not in self.commands:
            for name, module, _ in COMMANDS:
                if name == cmd_name:
                    self.commands.update({k: v for k, v in _load_commands(module).items()
                                          if k not in self.commands})
                    break
        command = self.commands.get(cmd_name)
        if command is not None:
            plain_metavars(command)
        return command

    def format_commands(self, ctx, formatter) -> None:
        # Each command's whole summary (its first sentence), wrapped by write_dl, never cut.
        summaries = {name: short for name, _, short in COMMANDS}
        rows = [(name, summaries.get(name) or cmd.get_short_help_str(10_000))
                for name, cmd in ((n, self.commands.get(n)) for n in self.list_commands(ctx))
                if cmd is None or not cmd.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def resolve_command(self, ctx, args):
        try:
            name, cmd, rest = super().resolve_command(ctx, args)
        except typer.TyperException as exc:
            if getattr(exc, "exit_code", None) != 2:  # not a usage error
                raise
            # typer suggests from the loaded commands only; suggest from all of them.
            if args and "Did you mean" not in exc.message:
                matches = get_close_matches(args[0], self.list_commands(ctx))
                if matches:
                    exc.message = (exc.message.rstrip(".") + ". Did you mean "
                                   + ", ".join(f"{m!r}" for m in matches) + "?")
            raise
        if cmd is not None:
            from bilin_cli.cli.options import refuse_repeated

            rest = _old_spellings(name, rest)
            refuse_repeated(cmd, name, rest, ctx)
        return name, cmd, rest


# Short flags that once meant something else in one command, kept working with a warning:
# (command, old flag) -> the long option it stands for there.
OLD_SHORT_FLAGS = {("adversarial", "-n"): "--pixels", ("interact", "-k"): "--top"}


def _old_spellings(name: str | None, args: list[str]) -> list[str]:
    """``args`` with a command's old short flags spelled as their long options."""
    out = list(args)
    for i, arg in enumerate(args):
        if arg == "--":
            break
        for (command, flag), long in OLD_SHORT_FLAGS.items():
            if name == command and (arg == flag or (arg.startswith(flag) and arg[2:].isdigit())):
                out[i] = long if arg == flag else f"{long}={arg[2:]}"
                print(f"warning: {flag} for {long} in 'bilin {command}' is deprecated (-k "
                      f"counts eigenvalues, -n rows); write {long}", file=sys.stderr)
    return out


def _version(value: bool) -> None:
    if value:
        print(f"bilin {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    pass


SETTINGS = dict(
    name="bilin",
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain click help: bracketed text ("[x; 1]", "[default: 5]") is shown as written and
    # flags get no metavar; BilinGroup refuses a repeated single-value option.
    rich_markup_mode=None,
    cls=BilinGroup,
    add_completion=False,
    context_settings=CONTEXT_SETTINGS,
)


def root_group() -> BilinGroup:
    """The ``bilin`` group with no command loaded yet (what the console script runs)."""
    root = typer.Typer(**SETTINGS)
    root.callback()(_root)
    return typer.main.get_command(root)


class _App(typer.Typer):
    """The typer app. Calling it runs :func:`root_group` (lazy commands); its
    ``registered_commands`` (what ``typer.main.get_command(app)`` reads, as tests do)
    import and register every command module on first use."""

    _all_registered = False

    @property
    def registered_commands(self) -> list:
        if not self._all_registered:
            self._all_registered = True
            for module in MODULES:
                importlib.import_module(f"bilin_cli.cli.{module}").register(self)
        return self._registered

    @registered_commands.setter
    def registered_commands(self, value: list) -> None:
        self._registered = value

    def __call__(self, *args, **kwargs):
        return root_group()(*args, **kwargs)


app = _App(**SETTINGS)
app.callback()(_root)


def _error(message: object) -> None:
    """Print ``error: <message>`` on one line, made safe for a terminal and kept short."""
    print(f"error: {printable(message, limit=1000)}", file=sys.stderr)


def main() -> None:
    """Entry point (the console script reaches it through :func:`bilin_cli.cli.entry.main`).

    User errors become one ``error:`` line and exit code 1; SIGINT and SIGTERM become
    ``error: interrupted`` and exit code 130, after the writers have removed their
    temporary files. Called in-process (tests), it installs the signal handlers for the
    run and puts the previous ones back afterwards.
    """
    installed_here = interrupts.install()
    try:
        try:
            _run()
        except SystemExit as exc:
            # A signal whose exception some library swallowed, or a KeyboardInterrupt (no
            # handlers of ours: not the main thread) that typer turned into a silent exit.
            if interrupts.interrupted() or _caused_by_keyboard_interrupt(exc):
                raise interrupts.Interrupted() from None
            raise
    except (interrupts.Interrupted, KeyboardInterrupt):
        interrupts.report_interrupted()
    finally:
        if installed_here:
            interrupts.uninstall()


def _caused_by_keyboard_interrupt(exc: BaseException) -> bool:
    for _ in range(8):
        exc = exc.__cause__ or exc.__context__
        if exc is None:
            return False
        if isinstance(exc, KeyboardInterrupt):
            return True
    return False


def _closed_pipe() -> None:
    """The reader (head, jq) went away: that is a normal end, exit 0 and nothing on stderr.

    As the Python documentation recommends, stdout is pointed at /dev/null, so the
    interpreter's last flush at exit cannot fail again ("Exception ignored ...
    BrokenPipeError", exit code 120)."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass
    sys.exit(0)


def _run() -> None:
    try:
        app(prog_name="bilin")
    except BilinError as exc:
        _error(exc)
        sys.exit(1)
    except BrokenPipeError:
        _closed_pipe()
    except SystemExit as exc:
        # click ends a closed pipe (EPIPE) with exit code 1, having wrapped stdout in a
        # PacifyFlushWrapper: a closed pipe is no error of ours.
        if exc.code == 1 and type(sys.stdout).__name__ == "PacifyFlushWrapper":
            _closed_pipe()
        raise
    except MemoryError:
        _error("out of memory; try a smaller layer, --top with --method arpack, or float32")
        sys.exit(1)
    except OSError as exc:
        _error(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        sys.exit(1)

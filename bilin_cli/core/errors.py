"""The one exception type for problems a user can cause (bad file, bad option value).

The CLI turns it into ``error: <message>`` on stderr and exit code 1.
"""


class BilinError(Exception):
    """A user-facing error: the message is one line that says what to do."""


# Whether the running code serves the CLI: a process-wide counter (not a contextvar, so
# worker threads see it too), raised for the duration of each CLI command.
_cli_depth = 0


class speaking_to_the_cli:
    """Context manager: while it is open, :func:`option` names CLI flags."""

    def __enter__(self):
        global _cli_depth
        _cli_depth += 1
        return self

    def __exit__(self, *exc):
        global _cli_depth
        _cli_depth -= 1
        return False


def serving_the_cli() -> bool:
    """True while a CLI command runs."""
    return _cli_depth > 0


def option(cli: str, api: str) -> str:
    """How an error message names a setting: ``cli`` (e.g. ``"--per-class"``) while the CLI
    runs a command, else ``api`` (the Python API's parameter, e.g. ``"per_class"``)."""
    return cli if _cli_depth > 0 else api

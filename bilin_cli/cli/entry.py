"""The ``bilin`` console script: signal handlers first, then the (slow) import of the app.

:mod:`bilin_cli.core.interrupts` imports only :mod:`signal`, :mod:`sys` and ``_thread``, so
the handlers are in place before numpy, scipy and typer load.
"""

from __future__ import annotations

import sys

from bilin_cli.core.interrupts import Interrupted, close, install, report_interrupted


def main() -> None:
    """Console entry point: handlers first, then the (slow) import of the app, then the app."""
    install()
    if not sys.warnoptions:
        # bilin says what matters in its own "warning:" lines (it checks for overflow and
        # NaN itself); a library's Python warning would only be a traceback-like line on
        # stderr. -W or PYTHONWARNINGS (someone debugging) still sees them.
        import warnings

        warnings.simplefilter("ignore")
    try:
        try:
            from bilin_cli.cli.app import main as app_main

            app_main()
        finally:
            # From here on a signal changes nothing: the run has finished (or is reporting
            # its failure), and the interpreter's shutdown must not print a traceback.
            close()
    except Interrupted:
        report_interrupted()


if __name__ == "__main__":  # pragma: no cover - python -m bilin_cli.cli.entry
    main()

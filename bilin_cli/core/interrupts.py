"""How bilin turns SIGINT and SIGTERM into a clean exit: the interrupt state writers consult.

This module imports only :mod:`signal`, :mod:`sys` and ``_thread``, so the console script
(:func:`bilin_cli.cli.entry.main`) installs its handlers before the slow imports (numpy,
scipy, typer) start: a Ctrl-C or a ``kill``
at any moment from then on, start-up included, ends the process with one line
``error: interrupted`` on stderr and exit code 130, never a traceback. (Only the
interpreter's own start-up, a few tens of milliseconds before this module runs, is
outside bilin's reach: there SIGTERM kills the process before it has done anything.)
A signal ignored by whoever started bilin (SIGINT in a background job) stays ignored.

The handlers raise :class:`Interrupted`, which derives from :class:`BaseException` and not
from :class:`KeyboardInterrupt`, so click and typer (which turn ``KeyboardInterrupt`` into a
silent ``exit 130``) and ``except Exception`` clauses let it through to the writers' cleanup
and to the CLI's ``main``. Only the first signal raises; later ones are noted
and ignored, so the cleanup the first one started runs to its end. Code that must not be
cut in two (creating a temporary file and remembering its name, publishing it, removing
it) runs under :func:`deferred`: a signal that arrives inside is raised when it leaves.
"""

from __future__ import annotations

import _thread
import signal
import sys

SIGNALS = ("SIGINT", "SIGTERM")
EXIT_CODE = 130


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: unwind, clean up, and exit with code 130."""


class _State:
    installed = False  # our handlers are in place
    previous: dict = {}  # signal number -> the handler ours replaced
    interrupted = False  # a signal arrived (and Interrupted was raised, or is pending)
    pending = False  # it arrived inside a deferred() block and is raised when that ends
    depth = 0  # nesting of deferred() blocks in the main thread
    main_ident = None  # the thread that installed the handlers: the one they run in
    closed = False  # the run is over: late signals change nothing


def _handler(signum, frame) -> None:
    if _State.closed or _State.interrupted:
        return
    _State.interrupted = True
    if _State.depth > 0:
        _State.pending = True
        return
    raise Interrupted(signum)


def install() -> bool:
    """Route SIGINT and SIGTERM to :class:`Interrupted`; False if already done or impossible.

    Signal handlers can only be set from the main thread; elsewhere this does nothing.
    """
    if _State.installed:
        return False
    previous = {}
    try:
        for name in SIGNALS:
            num = getattr(signal, name)
            if signal.getsignal(num) == signal.SIG_IGN:
                continue  # ignored by whoever started us (a background job): keep it so
            previous[num] = signal.signal(num, _handler)
    except ValueError:  # not the main thread (or an embedded interpreter without signals)
        for num, old in previous.items():
            signal.signal(num, old)
        return False
    _State.installed, _State.previous = True, previous
    _State.main_ident = _thread.get_ident()
    _State.interrupted = _State.pending = _State.closed = False
    _State.depth = 0
    return True


def uninstall() -> None:
    """Put back the handlers :func:`install` replaced (for in-process callers such as tests)."""
    if not _State.installed:
        return
    _State.closed = True
    for num, old in _State.previous.items():
        signal.signal(num, old if old is not None else signal.SIG_DFL)
    _State.installed, _State.previous = False, {}
    _State.interrupted = _State.pending = False
    _State.depth = 0


def interrupted() -> bool:
    """Whether SIGINT or SIGTERM has arrived since the handlers were installed."""
    return _State.interrupted


def check() -> None:
    """Raise :class:`Interrupted` if a signal arrived, even one whose exception was swallowed.

    Writers call this just before publishing, so a run that was interrupted never puts a
    new file in place.
    """
    if _State.interrupted:
        raise Interrupted()


class deferred:  # noqa: N801 - used like a function: ``with deferred(): ...``
    """Hold back :class:`Interrupted` until the block ends (blocks may nest).

    Signal handlers run in the main thread only, so only blocks there count; a block in
    another thread (a writer called from a worker) is a no-op.
    """

    counted = False

    def __enter__(self) -> deferred:
        if _thread.get_ident() == _State.main_ident:
            self.counted = True
            _State.depth += 1
        return self

    def __exit__(self, *exc) -> None:
        if not self.counted:
            return
        self.counted = False
        _State.depth = max(0, _State.depth - 1)
        if _State.depth == 0 and _State.pending:
            _State.pending = False
            raise Interrupted()


def close() -> None:
    """The run is over (finished, or reporting its failure): later signals change nothing."""
    _State.closed = True


def report_interrupted() -> None:
    """The one line and the exit code for an interrupted run."""
    _State.closed = True
    try:
        print("error: interrupted", file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr closed or gone: the exit code still says it
        pass
    sys.exit(EXIT_CODE)

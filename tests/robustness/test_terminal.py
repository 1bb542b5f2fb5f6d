"""Terminal and pipe manners (DESIGN.md section 3), checked on the real ``bilin`` process:

* ``NO_COLOR`` (any non-empty value) or a stdout that is not a terminal: no escape
  sequence at all on stdout, ``--show`` pictures included (drawn in characters);
* a narrow terminal (40 columns) never cuts a number: text columns wrap or are left out;
* piped, a table row is one line however long, and nothing is truncated;
* a closed pipe (``| head -1``) is a normal end: exit 0, nothing on stderr;
* ``--help`` shows plain metavars (CKPT, FILE, N, TEXT), never ``<int>`` or ``{CKPT}``,
  and ``bilin --help`` shows every command's whole summary;
* ``plot --class`` takes the lists and ranges ``eig --class`` takes; a non-image model's
  basis is not called pixels; the truncation curve's title, axis and data agree.

Processes run with ``sys.executable -m bilin_cli`` (the console script's entry point);
the terminal is a pseudo-terminal of the ``pty`` module, sized with TIOCSWINSZ and
``COLUMNS``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MNIST = str(ROOT / "sample_checkpoints" / "mnist")
DATA = str(ROOT / "sample_checkpoints" / "data" / "mnist-test.npz")
BILIN = [sys.executable, "-m", "bilin_cli"]
ESC = "\x1b["
ELLIPSIS = "…"
RULES = "│┃"  # the column rules of a table row and of its header

# The commands of the checks: (name, arguments, JSON key of the table's rows).
TABLES = {
    "eig": (["eig", MNIST, "--class", "3"], None),
    "hosvd": (["hosvd", MNIST], "components"),
    "spectrum": (["spectrum", MNIST], "directions"),
}


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NO_COLOR", "FORCE_COLOR", "FORCE_TERMINAL", "TTY_COMPATIBLE",
                        "COLUMNS", "LINES")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_piped(args: list[str], **env) -> subprocess.CompletedProcess:
    """``bilin ARGS`` with stdout and stderr pipes."""
    return subprocess.run([*BILIN, *args], cwd=ROOT, env=_env(**env), capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=300)


def run_tty(args: list[str], columns: int = 40, **env) -> tuple[int, str, str]:
    """``bilin ARGS`` with stdout a pseudo-terminal ``columns`` wide; (code, out, err)."""
    pty = pytest.importorskip("pty")
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen([*BILIN, *args], cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=subprocess.PIPE,
                            env=_env(COLUMNS=str(columns), **env))
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    code = proc.wait(timeout=300)
    out = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    return code, out, err


def _json(args: list[str]):
    proc = run_piped([*args, "--json"])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _tokens(text: str) -> set[str]:
    return set(re.split(r"[\s" + RULES + "]+", text)) - {""}


def _g6(v: float) -> str:
    return f"{v:.6g}"


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def _table_rows(out: str) -> list[str]:
    """The body rows of the tables in ``out`` (lines with a column rule, not headers)."""
    return [line for line in out.splitlines() if "│" in line]


def _expected_numbers(name: str) -> list[list[str]]:
    """Per table row, the numbers the table must show whole (as the table formats them)."""
    args, key = TABLES[name]
    doc = _json(args)
    if name == "eig":
        rows, cum = [], 0.0
        total = doc["sum_abs_eigenvalues"]
        for i, lam in enumerate(doc["eigenvalues"]):
            cum += abs(lam) / total
            rows.append([str(i + 1), _g6(lam), _pct(abs(lam) / total), _pct(cum)])
        return rows
    if name == "hosvd":
        return [[str(c["component"]), _g6(c["sigma"]), _pct(c["energy_share"]),
                 _g6(c["effective_rank"])] for c in doc[key]]
    return [[_g6(d["effective_rank"]), str(d["k50"]), str(d["k90"]), str(d["k99"])]
            for d in doc[key]]


# ----------------------------------------------------------------- colour and escapes


@pytest.mark.parametrize("name", [*TABLES, "show"])
def test_piped_stdout_holds_no_escape_sequence(name):
    """Piped (even with a narrow COLUMNS): no colour, no bold, no cursor codes."""
    args = [*TABLES[name][0]] if name != "show" else ["eig", MNIST, "--class", "3", "--top",
                                                     "3", "--show"]
    proc = run_piped(args, COLUMNS="40")
    assert proc.returncode == 0, proc.stderr
    assert ESC not in proc.stdout and "\x1b" not in proc.stdout
    assert proc.stderr == ""
    if name == "show":  # the pictures are still there, in characters
        assert "pictures:" in proc.stdout and "#" in proc.stdout and "▀" not in proc.stdout


@pytest.mark.parametrize("name", [*TABLES, "show"])
def test_no_color_means_no_escape_sequence_on_a_terminal(name):
    args = [*TABLES[name][0]] if name != "show" else ["eig", MNIST, "--class", "3", "--top",
                                                     "3", "--show"]
    code, out, err = run_tty(args, columns=100, NO_COLOR="1")
    assert code == 0, err
    assert ESC not in out and "\x1b" not in out, out[:500]
    assert "bilin " in out.splitlines()[0]  # it was a terminal: the title line is there


def test_a_terminal_without_no_color_gets_colour():
    """The control of the NO_COLOR checks: the same pseudo-terminal does get colour, and
    an empty NO_COLOR does not count as set."""
    args = ["eig", MNIST, "--class", "3", "--top", "2", "--show"]
    code, out, err = run_tty(args, columns=100)
    assert code == 0, err
    assert ESC in out and "▀" in out
    code, out, err = run_tty(args, columns=100, NO_COLOR="")
    assert code == 0 and ESC in out


# ------------------------------------------------------------ widths and truncation


@pytest.mark.parametrize("color", [False, True])
@pytest.mark.parametrize("name", list(TABLES))
def test_a_narrow_terminal_never_cuts_a_number(name, color):
    env = {} if color else {"NO_COLOR": "1"}
    code, out, err = run_tty(TABLES[name][0], columns=40, **env)
    assert code == 0, err
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert ELLIPSIS not in plain, plain
    tokens = _tokens(plain)
    for numbers in _expected_numbers(name):
        for number in numbers:
            assert number in tokens, (number, plain)
    assert max(len(line) for line in plain.splitlines()) <= 40, plain


@pytest.mark.parametrize("name", list(TABLES))
def test_piped_rows_are_one_line_each_and_whole(name):
    proc = run_piped(TABLES[name][0], COLUMNS="40")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert ELLIPSIS not in out
    rows = _table_rows(out)
    expected = _expected_numbers(name)
    assert len(rows) == len(expected), out  # one line per row: no wrapped continuation
    for line, numbers in zip(rows, expected, strict=True):
        cells = [c.strip() for c in line.split("│")]
        assert all(cells), line  # no empty cell: nothing spilled onto another line
        tokens = _tokens(line)
        for number in numbers:
            assert number in tokens, (number, line)
    header = next(line for line in out.splitlines() if "┃" in line)
    assert len(header.split("┃")) == len(rows[0].split("│"))


def test_piped_hosvd_keeps_each_value_on_its_row():
    """The pixel positions ``(8, 13)`` of hosvd's largest_entries stay on one line."""
    proc = run_piped(["hosvd", MNIST, "--format", "csv"])
    csv_rows = proc.stdout.splitlines()[1:]
    table = run_piped(["hosvd", MNIST]).stdout
    rows = _table_rows(table)
    import csv
    import io

    for line, record in zip(rows, csv.reader(io.StringIO("\n".join(csv_rows))), strict=True):
        assert line.split("│")[-1].strip() == record[-1]


def test_piped_many_directions_one_line_per_row(cli):
    """The Stream path (many directions): every table's rows one line each."""
    code, out, err = cli("eig", MNIST, "--class", "all", "--top", "4")
    assert code == 0, err
    assert len(_table_rows(out)) == 10 * 4
    assert ESC not in out


def test_layout_never_cuts_a_number_at_any_width():
    """The table layout alone, over widths from 10 to 130 columns."""
    from bilin_cli.render.output import Report, to_table

    rows = [[i + 1, (-1) ** i * 10.0 ** (-i) * 1.234567, 0.5 / (i + 1),
             "a fairly long piece of text " * (i % 3), f"({i}, {i + 1}):+0.{i}12"]
            for i in range(6)]
    report = Report("t", {}, [("key", "value 123456789")], ["rank", "value", "share",
                    "notes", "entries"], rows, percent=("share",))
    for width in range(10, 131, 3):
        for color in (False, True):
            text = to_table(report, color=color, width=width, decorate=True)
            plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
            assert ELLIPSIS not in plain
            tokens = _tokens(plain)
            for row in rows:
                assert f"{row[1]:.6g}" in tokens and _pct(row[2]) in tokens, (width, plain)
            assert "123456789" in tokens
            if not color:
                assert ESC not in text
    piped = to_table(report, color=False, width=40, decorate=False)
    assert len(_table_rows(piped)) == len(rows) and ELLIPSIS not in piped


# ----------------------------------------------------------------------- closed pipes


@pytest.mark.parametrize("command", [
    "eig {m} --class all",
    "eig {m} --class all --all",
    "eig {m} --class all --all --json",
    "eig {m} --class all --all --format csv",
    "spectrum {m}",
    "eig {m} --class 3 --all",
    "eig --help",
    "--help",
])
def test_a_closed_pipe_is_a_normal_end(command):
    bilin = " ".join(shlex.quote(a) for a in BILIN)
    line = f"set -o pipefail; {bilin} {command.format(m=shlex.quote(MNIST))} | head -1"
    proc = subprocess.run(line, shell=True, executable="/bin/bash", cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    assert proc.stderr == ""
    assert proc.stdout.count("\n") == 1


# ------------------------------------------------------------------------------ help

TYPE_METAVAR = re.compile(
    r"<(?:int|float|str|text|path|bool|file|list\[[^>]*\]|[\w-]+(?:\|[\w-]+)+)>", re.I)
BRACED = re.compile(r"\{[A-Z][A-Za-z .\[\]]*\}")


def _commands() -> list[str]:
    from bilin_cli.cli.app import COMMANDS

    return [name for name, _, _ in COMMANDS]


@pytest.mark.parametrize("name", _commands())
def test_help_shows_plain_metavars(cli, name):
    code, out, err = cli(name, "--help")
    assert code == 0, err
    assert not TYPE_METAVAR.search(out), TYPE_METAVAR.search(out).group()
    usage = out.splitlines()[0]
    assert usage.startswith(f"Usage: bilin {name} ") and not BRACED.search(usage), usage
    assert "list[" not in out and "<path>" not in out
    # the option rows themselves: every value is named by a plain metavar
    for line in out.split("\nOptions:\n", 1)[1].splitlines():
        m = re.match(r"  (?:-\w, )?--[\w-]+ (\S+)", line)
        if m and not m.group(1)[0].isupper():
            assert re.fullmatch(r"\[[\w|-]+\]|i/N|[A-Z][\w./]*", m.group(1)), line


def test_root_help_shows_whole_summaries(cli):
    from bilin_cli.cli.app import COMMANDS

    code, out, err = cli("--help")
    assert code == 0, err
    commands = out.split("Commands:", 1)[1]
    flat = " ".join(commands.split())
    for name, _, short in COMMANDS:
        assert " ".join(short.split()) in flat, (name, short)
    assert "..." not in commands


# ---------------------------------------------------------------------- messages, plots


@pytest.fixture
def figures(monkeypatch):
    import bilin_cli.render.plotting as plotting
    from bilin_cli.render import figures as figs

    drawn = []

    def keep(fig, path, force):
        drawn.append(fig)
        return figs.save_figure(fig, path, force)

    monkeypatch.setattr(plotting, "save_figure", keep)
    return drawn


@pytest.mark.parametrize("spec, classes", [("0,3", ["0", "3"]), ("1-2", ["1", "2"]),
                                           ("0,4-5", ["0", "4", "5"])])
def test_plot_takes_the_class_lists_eig_takes(cli, figures, tmp_path, spec, classes):
    code, out, err = cli("plot", MNIST, "--class", spec, "-o", tmp_path / "p.png")
    assert code == 0, err
    assert (tmp_path / "p.png").stat().st_size > 0
    (fig,) = figures
    labels = [ax.get_ylabel().split("\n")[0] for ax in fig.axes if ax.get_ylabel()]
    assert labels == [f"class {c}" for c in classes]
    code, out, err = cli("eig", MNIST, "--class", spec, "--top", "1", "--json")
    assert code == 0 and len(out.splitlines()) == len(classes)


def test_plot_class_errors(cli, tmp_path):
    code, _, err = cli("plot", MNIST, "--class", "0,12", "-o", tmp_path / "p.png")
    assert code == 1 and err.startswith("error: class 12 is out of range")
    code, _, err = cli("plot", MNIST, "--class", "x", "-o", tmp_path / "p.png")
    assert code == 2
    assert not (tmp_path / "p.png").exists()


def test_a_non_image_basis_is_not_called_pixels(cli, image_ckpt):
    path, _ = image_ckpt  # an image-classifier layout with no input_shape: 20 inputs
    code, out, err = cli("eig", path, "--class", "1", "--top", "2")
    assert code == 0, err
    basis = next(line for line in out.splitlines() if line.startswith("basis"))
    assert "pixels" not in basis and "input dimensions" in basis
    code, out, err = cli("eig", MNIST, "--class", "1", "--top", "2")
    basis = next(line for line in out.splitlines() if line.startswith("basis"))
    assert "pixels" in basis


def test_truncation_curve_title_axis_and_data_agree(cli, figures, tmp_path):
    code, out, err = cli("truncate", MNIST, "--sweep", "0,5,20", "--data", DATA, "--plot",
                         tmp_path / "curve.png", "--json")
    assert code == 0, err
    doc = json.loads(out)
    (fig,) = figures
    ax = fig.axes[0]
    accuracy = [r["accuracy"] for r in doc["sweep"]]
    curve = ax.lines[0]
    assert list(curve.get_xdata()) == [0, 5, 20]
    assert curve.get_ydata() == pytest.approx(accuracy, abs=1e-4)  # the accuracy itself
    assert "accuracy" in ax.get_title().lower() and "error" not in ax.get_title().lower()
    assert "accuracy" in ax.get_ylabel().lower() and "error" not in ax.get_ylabel().lower()
    full = ax.lines[1].get_ydata()[0]
    assert full == pytest.approx(doc["full_accuracy"], abs=1e-4)

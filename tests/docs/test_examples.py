"""Every example in the docs and in each command's --help runs, and prints what the doc shows.

Docs are README.md and every docs/*.md. Inside a fenced block, a line ``$ bilin ARGS``
(optionally ``| jq [-c] FILTER``) is a command; the lines under it, up to the next ``$``
line or the closing fence, are what it prints on stdout. Each file's commands run in
order (later lines read what earlier ones wrote) in one scratch directory that links to
the shipped ``sample_checkpoints/``, so files they write (-o, --plot, --save) land there.

Where a doc shows output, the printed output must equal it line for line, trailing
whitespace aside. A line that is exactly ``…`` stands for lines left out (any number):
the lines shown before it must open the output, the lines between two ``…`` must follow
in order, and unless the block ends with ``…`` the lines after the last one must close
it. A ``| jq`` pipe is evaluated here (``jq_eval``: the simple filters the docs use) on
the JSON that bilin printed (one document, or JSON Lines), so jq need not be installed.

Tables reach the runner as they reach a pipe (no title line, 120 columns, no colour), so
a doc shows exactly what ``bilin ... | cat`` prints. The ``>>>`` examples of the docs run
as doctests.
"""

from __future__ import annotations

import difflib
import doctest
import inspect
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bilin_cli.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
ELIDED = "…"


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ------------------------------------------------------------------ reading the docs


@dataclass
class Example:
    """One ``$ bilin ...`` line of a doc and the output shown under it."""

    path: Path
    lineno: int
    line: str
    shown: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{_rel(self.path)}:{self.lineno}"


def doc_examples(path: Path) -> list[Example]:
    """The ``$`` lines of ``path``'s fenced blocks, in file order, each with its output."""
    examples: list[Example] = []
    current: Example | None = None
    in_fence = False
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.rstrip()
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            current = None
            continue
        if not in_fence:
            continue
        if line.startswith("$ "):
            current = Example(path, lineno, line[2:].strip())
            examples.append(current)
        elif current is not None:
            current.shown.append(line)
    for ex in examples:
        while ex.shown and not ex.shown[-1]:
            ex.shown.pop()
    return examples


def split_pipe(line: str) -> tuple[list[str], list[str] | None]:
    """``bilin ARGS | jq ...`` as (bilin's argv without 'bilin', jq's argv or None)."""
    lex = shlex.shlex(line, posix=True, punctuation_chars="|")
    lex.whitespace_split = True
    tokens = list(lex)
    if "|" not in tokens:
        return tokens[1:], None
    at = tokens.index("|")
    pipe = tokens[at + 1:]
    assert "|" not in pipe and pipe[:1] == ["jq"], f"only one '| jq ...' pipe is supported: {line}"
    return tokens[1:at], pipe[1:]


# ------------------------------------------------------------------ jq, the part used


class _JqParser:
    """``pipe := term ('|' term)*``; ``term := path | '{' entries '}' | '[' pipe, ... ']'``;
    ``path := '.' name? ('.' name | '[' int ']' | '[' int? ':' int? ']')*``."""

    TOKEN = re.compile(r"\s*(\.\.|[.\[\]{}|,:]|-?\d+|[A-Za-z_][A-Za-z0-9_]*)")

    def __init__(self, text: str):
        self.text = text
        self.tokens: list[str] = []
        pos = 0
        while pos < len(text.rstrip()):
            m = self.TOKEN.match(text, pos)
            if not m:
                raise ValueError(f"jq filter not supported by the docs test: {text!r}")
            self.tokens.append(m.group(1))
            pos = m.end()
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise ValueError(f"jq filter not supported by the docs test: {self.text!r}")
        self.i += 1
        return tok

    def parse(self):
        fn = self.pipe()
        if self.peek() is not None:
            raise ValueError(f"jq filter not supported by the docs test: {self.text!r}")
        return fn

    def pipe(self):
        stages = [self.term()]
        while self.peek() == "|":
            self.take("|")
            stages.append(self.term())

        def run(value):
            for stage in stages:
                value = stage(value)
            return value
        return run

    def term(self):
        tok = self.peek()
        if tok == "{":
            return self.obj()
        if tok == "[":
            return self.array()
        return self.path()

    def obj(self):
        self.take("{")
        entries = []
        while self.peek() != "}":
            key = self.take()
            value = (lambda k: lambda v: _field(v, k))(key)
            if self.peek() == ":":
                self.take(":")
                value = self.term()
            entries.append((key, value))
            if self.peek() == ",":
                self.take(",")
        self.take("}")
        return lambda v: {k: f(v) for k, f in entries}

    def array(self):
        self.take("[")
        items = []
        while self.peek() != "]":
            items.append(self.pipe())
            if self.peek() == ",":
                self.take(",")
        self.take("]")
        return lambda v: [f(v) for f in items]

    def path(self):
        self.take(".")
        steps = []
        if self.peek() not in (None, "[", "|", ",", "}", "]"):
            steps.append(("field", self.take()))
        while self.peek() in (".", "["):
            if self.take() == ".":
                steps.append(("field", self.take()))
                continue
            start = stop = None
            if self.peek() not in (":", "]"):
                start = int(self.take())
            if self.peek() == ":":
                self.take(":")
                if self.peek() != "]":
                    stop = int(self.take())
                steps.append(("slice", (start, stop)))
            else:
                steps.append(("index", start))
            self.take("]")

        def run(value):
            for kind, arg in steps:
                if value is None:
                    return None
                if kind == "field":
                    value = _field(value, arg)
                elif kind == "slice":
                    value = value[arg[0]:arg[1]]
                else:
                    value = value[arg] if -len(value) <= arg < len(value) else None
            return value
        return run


def _field(value, key):
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"jq: cannot index {type(value).__name__} with {key!r}")
    return value.get(key)


def jq_eval(args: list[str], stdout: str) -> str:
    """What ``jq ARGS`` prints for ``stdout``: one result per JSON document (JSON Lines
    too), compact with ``-c``, else indented by 2 as jq does."""
    flags = [a for a in args if a.startswith("-")]
    program = [a for a in args if not a.startswith("-")]
    assert set(flags) <= {"-c"} and len(program) == 1, f"unsupported jq arguments: {args}"
    fn = _JqParser(program[0]).parse()
    try:
        docs = [json.loads(stdout)]
    except json.JSONDecodeError:
        docs = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    if "-c" in flags:
        dump = lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False)  # noqa: E731
    else:
        dump = lambda v: json.dumps(v, indent=2, ensure_ascii=False)  # noqa: E731
    return "".join(dump(fn(doc)) + "\n" for doc in docs)


# ------------------------------------------------------------------ comparing output


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _close(a: str, b: str) -> bool:
    """Two printed numbers that differ at most by one unit of their last printed digit.

    float32 sums round differently on another CPU or BLAS build (AVX-512 against AVX2);
    that moves the last digit shown, never more. A real change moves more."""
    from decimal import Decimal, InvalidOperation

    if not any(c in a + b for c in ".eE"):  # counts, indices, ranks: exact
        return False
    try:
        da, db = Decimal(a), Decimal(b)
    except InvalidOperation:
        return False
    unit = Decimal(10) ** min(da.as_tuple().exponent, db.as_tuple().exponent)
    return abs(da - db) <= unit * Decimal("1.01")


def same_line(shown: str, printed: str) -> bool:
    """``printed`` is the line ``shown``: the same text, the same numbers up to
    :func:`_close`."""
    if shown == printed:
        return True
    if _NUMBER.sub("#", shown) != _NUMBER.sub("#", printed):
        return False
    return all(x == y or _close(x, y) for x, y in zip(_NUMBER.findall(shown),
                                                      _NUMBER.findall(printed), strict=True))


def _same(shown: list[str], printed: list[str]) -> bool:
    return len(shown) == len(printed) and all(map(same_line, shown, printed))


def output_mismatch(shown: list[str], printed: str) -> str | None:
    """Why ``printed`` is not the ``shown`` block (None when it is); see the module doc."""
    actual = [line.rstrip() for line in printed.splitlines()]
    while actual and not actual[-1]:
        actual.pop()
    segments: list[list[str]] = [[]]
    for line in shown:
        if line.strip() == ELIDED:
            segments.append([])
        else:
            segments[-1].append(line.rstrip())
    if len(segments) == 1:
        ok = _same(segments[0], actual)
    else:
        head, *middle, tail = segments
        ok = _same(head, actual[:len(head)])
        pos = len(head)
        for seg in middle:
            at = next((i for i in range(pos, len(actual) - len(seg) + 1)
                       if _same(seg, actual[i:i + len(seg)])), None)
            ok = ok and at is not None
            pos = (at or 0) + len(seg)
        if tail:
            ok = ok and len(actual) - len(tail) >= pos and _same(tail, actual[len(actual) - len(tail):])
    if ok:
        return None
    diff = difflib.unified_diff(shown, actual, "shown in the doc", "printed", lineterm="", n=2)
    return "\n".join(diff)


def run_doc_example(cli, ex: Example) -> None:
    argv, jq_args = split_pipe(ex.line)
    code, out, err = cli(*argv)
    assert code == 0, f"{ex.where}: $ {ex.line}\nexit code {code}\n{err}"
    printed = out
    if jq_args is not None:
        printed = jq_eval(jq_args, out)
    if ex.shown:
        why = output_mismatch(ex.shown, printed)
        assert why is None, (f"{ex.where}: $ {ex.line}\nprints something else than the doc "
                             f"shows; paste the real output into the doc:\n{why}")


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """A scratch directory beside the shipped samples, as the docs' examples expect."""
    (tmp_path / "sample_checkpoints").symlink_to(ROOT / "sample_checkpoints")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("NO_COLOR", "1")
    return tmp_path


# ------------------------------------------------------------------ tests of the tools


def test_jq_eval_filters_used_in_docs():
    doc = json.dumps({"a": [1, 2, 3], "rows": [{"x": 0.5, "y": 2}], "n": 3, "accuracy": 0.9})
    assert jq_eval(["-c", ".a"], doc) == "[1,2,3]\n"
    assert jq_eval(["-c", ".a[:2]"], doc) == "[1,2]\n"
    assert jq_eval(["-c", ".a[-1]"], doc) == "3\n"
    assert jq_eval(["-c", "{accuracy, n}"], doc) == '{"accuracy":0.9,"n":3}\n'
    assert jq_eval(["-c", ".rows[0] | {x}"], doc) == '{"x":0.5}\n'
    assert jq_eval(["-c", "[.n, .a[0]]"], doc + "\n" + doc) == "[3,1]\n[3,1]\n"
    assert jq_eval([".n"], doc) == "3\n"
    assert jq_eval([".a[:1]"], doc) == "[\n  1\n]\n"
    with pytest.raises(ValueError):
        jq_eval(["-c", ".a | map(. + 1)"], doc)


def test_output_comparison_rules():
    printed = "a\nb  \nc\nd\n\n"
    assert output_mismatch(["a", "b", "c", "d"], printed) is None
    assert output_mismatch(["a", "b", "c"], printed) is not None
    assert output_mismatch(["a", "b", ELIDED], printed) is None
    assert output_mismatch(["a", ELIDED, "d"], printed) is None
    assert output_mismatch([ELIDED, "c", "d"], printed) is None
    assert output_mismatch(["a", ELIDED, "c", ELIDED], printed) is None
    assert output_mismatch(["a", ELIDED, "c"], printed) is not None
    assert output_mismatch(["b", ELIDED], printed) is not None
    assert output_mismatch(["a", ELIDED, "x", ELIDED], printed) is not None
    # Numbers: one unit of the last printed digit is rounding on another CPU, more is not.
    assert output_mismatch(["k 5.09892e-05 0.1458589732646942"],
                           "k 5.09893e-05 0.1458589732646943") is None
    assert output_mismatch(["k 5.09892e-05"], "k 5.09895e-05") is not None
    assert output_mismatch(["23.62% share"], "23.63% share") is None
    assert output_mismatch(["23.62% share"], "24.62% share") is not None
    assert output_mismatch(["rank 3"], "rank 4") is not None


def test_doc_blocks_parse(tmp_path):
    md = tmp_path / "x.md"
    md.write_text("text\n$ bilin not-in-a-fence\n```\n$ bilin a --json | jq -c '.k | {x}'\n"
                  "{\"x\":1}\n\n$ bilin b\n```\n```bash\nbilin c\n```\n")
    found = doc_examples(md)
    assert [(e.line, e.shown) for e in found] == [
        ("bilin a --json | jq -c '.k | {x}'", ['{"x":1}']), ("bilin b", [])]
    assert split_pipe(found[0].line) == (["a", "--json"], ["-c", ".k | {x}"])
    assert split_pipe('bilin eig x --token-str " " --top 3') == (
        ["eig", "x", "--token-str", " ", "--top", "3"], None)


# ------------------------------------------------------------------ the docs' examples


@pytest.mark.parametrize("path", doc_files(), ids=_rel)
def test_doc_examples_run_and_print_what_is_shown(cli, scratch, path):
    """A doc's examples, in order in one directory, each printing the output shown."""
    examples = doc_examples(path)
    text = path.read_text(encoding="utf-8")
    dollar_lines = re.findall(r"^\$ (.*)$", text, re.M)
    assert len(dollar_lines) == len(examples), (
        f"{_rel(path)}: a '$ ' line outside a fenced block is not run; put it in a ``` block")
    for ex in examples:
        assert ex.line.startswith("bilin "), f"{ex.where}: only '$ bilin ...' lines are run"
        run_doc_example(cli, ex)


def test_docs_show_the_tour():
    """The tour keeps its examples and most of them show their output."""
    examples = [ex for path in doc_files() for ex in doc_examples(path)]
    assert len(examples) >= 30
    tour = doc_examples(ROOT / "docs" / "tour.md")
    assert len(tour) >= 15
    assert sum(bool(ex.shown) for ex in tour) >= 10


def _anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of ``path`` (outside fenced blocks)."""
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    return {re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
            for title in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("path", doc_files(), ids=_rel)
def test_doc_links_resolve(path):
    """Every relative link of a doc names a file that exists, and a heading there."""
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        assert dest.exists(), f"{_rel(path)}: link to a missing file: {target}"
        if anchor:
            assert anchor in _anchors(dest), f"{_rel(path)}: no heading for #{anchor}: {target}"


def _python_examples(path: Path) -> str:
    blocks = re.findall(r"^```(?:python|pycon)\n(.*?)^```", path.read_text(encoding="utf-8"),
                        re.M | re.S)
    return "\n".join(b for b in blocks if ">>>" in b)


@pytest.mark.parametrize("path", [p for p in doc_files() if _python_examples(p)], ids=_rel)
def test_doc_python_examples_run(scratch, path):
    """The ``>>>`` examples of a doc run as doctests, printing what they show."""
    test = doctest.DocTestParser().get_doctest(_python_examples(path), {}, _rel(path),
                                               str(path), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    runner.run(test, out=report.append)
    assert runner.tries > 0
    assert runner.failures == 0, "".join(report)


def test_python_api_doc_has_its_example():
    assert ">>> import bilin_cli as bilin" in _python_examples(ROOT / "docs" / "python-api.md")


# ------------------------------------------------------------------ --help examples


def help_examples() -> list[str]:
    import typer.main

    group = typer.main.get_command(app)
    found = []
    for _, command in sorted(group.commands.items()):
        doc = inspect.getdoc(command.callback) or ""
        found += [line.strip() for line in doc.splitlines() if line.strip().startswith("bilin ")]
    return found


def test_every_command_has_an_example():
    import typer.main

    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        doc = inspect.getdoc(command.callback) or ""
        assert re.search(rf"^\s*bilin {re.escape(name)} sample_checkpoints/", doc, re.M), name


@pytest.mark.parametrize("line", help_examples())
def test_help_example_runs(cli, scratch, line):
    argv, jq_args = split_pipe(line)
    code, out, err = cli(*argv)
    assert code == 0, f"{line}\n{err}"
    if jq_args is not None:
        jq_eval(jq_args, out)

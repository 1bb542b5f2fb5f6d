"""The package's layers: each folder imports only the folders below it, and no import circles.

    core/ -> model/ -> storage/ -> analyses/ -> api/ -> render/ -> cli/

Every import counts, the ones inside functions too (a lazy import is still a dependency).
``import bilin_cli`` (the package) serves the API, so ``from bilin_cli import <API name>``
counts as an import of ``api/``. The test reads the source with :mod:`ast`; it imports
nothing of bilin.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bilin_cli"
LAYERS = ["core", "model", "storage", "analyses", "api", "render", "cli"]
# The package's own files: __init__ serves the API lazily, __main__ is ``python -m bilin_cli``.
TOP = {"bilin_cli": None, "bilin_cli.__main__": "cli"}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str | None:
    if module in TOP:
        return TOP[module]
    return module.split(".")[1]


def _imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, imported bilin module, at module level) for every import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "bilin_cli":
                # ``from bilin_cli import load`` is the API; ``__version__`` is the package.
                names = ["bilin_cli.api" if a.name != "__version__" else "bilin_cli"
                         for a in node.names]
            else:
                names += [f"{node.module}.{a.name}" for a in node.names
                          if (PACKAGE.parent / node.module.replace(".", "/")
                              / f"{a.name}.py").exists()]
        else:
            continue
        at_top = id(node) in top_level
        found += [(node.lineno, n, at_top) for n in names if n.split(".")[0] == "bilin_cli"]
    return found


FILES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_is_in_a_layer():
    loose = [_module(f) for f in FILES if _module(f) not in TOP
             and _module(f).split(".")[1] not in LAYERS]
    assert not loose, f"modules outside the layer folders: {loose}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: _module(p))
def test_imports_only_go_down(path):
    here = _layer(_module(path))
    if here is None:
        return
    upward = []
    for line, target, _ in _imports(path):
        there = _layer(target) if target != "bilin_cli" else None
        if there is not None and LAYERS.index(there) > LAYERS.index(here):
            upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target} "
                          f"({there}/ is above {here}/)")
    assert not upward, "\n".join(upward)


def test_no_import_circles():
    """No circle among module-level imports (a circle makes import order matter)."""
    graph: dict[str, set[str]] = {}
    modules = {_module(f) for f in FILES}
    for f in FILES:
        deps = set()
        for _, target, at_top in _imports(f):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if at_top and target and target != _module(f):
                deps.add(target)
        graph[_module(f)] = deps
    # Depth-first search for a back edge.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            circle = visit(m)
            assert circle is None, "import circle: " + " -> ".join(circle)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The rule above can fail: a storage module importing the CLI is caught."""
    bad = PACKAGE / "storage" / "_probe_upward.py"
    try:
        bad.write_text("def f():\n    from bilin_cli.cli import app\n")
        with pytest.raises(AssertionError, match="cli/ is above storage/"):
            test_imports_only_go_down(bad)
    finally:
        bad.unlink()


def _third_party(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


@pytest.mark.parametrize("path", FILES, ids=lambda p: _module(p))
def test_only_the_cli_speaks_typer(path):
    """typer and click belong to cli/; typer's private modules belong to nobody."""
    here = _layer(_module(path))
    bad = [f"{path.name}:{line} imports {name}" for line, name in _third_party(path)
           if name.startswith("typer._") or name.startswith("click")
           or (here != "cli" and name.split(".")[0] == "typer")]
    assert not bad, "\n".join(bad)

"""The library's layout: every module imports, the import graph has no cycle, no module is long.

The import graph is read from the source with :mod:`ast` (standard library only). An edge
``a -> b`` means module ``a`` imports ``b`` (``from pkg import name`` counts as importing the
module ``pkg.name`` when that is a module, else ``pkg``). Package ``__init__`` modules that a
dotted import passes through are not edges: importing ``a.b.c`` runs ``a/__init__`` and
``a/b/__init__`` first, but they are complete before ``c`` starts, so they close no cycle.

Two graphs are checked:

- module level: imports that run when the module is imported (inside ``if``/``try`` too, but
  not those under ``if TYPE_CHECKING:``, which never run). A cycle here is an import-order
  bug waiting to happen.
- with the imports inside functions too ("lazy" imports, run when the function is called).
  These cannot fail at import time, but a cycle through them still means two modules depend
  on each other (the issue this test comes from found three such cycles held together by
  lazy imports), so it is a failure as well.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "scopeflow"
#: Longest module, in lines (the project's standard: no module over ~600 lines).
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module, module: str, *, lazy: bool) -> set[str]:
    """scopeflow modules imported by ``module`` (its parsed source ``tree``)."""
    is_pkg = MODULES[module].name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    found: set[str] = set()

    def target(name: str) -> str | None:
        while name and name not in MODULES:  # a name inside a module: the module
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.orelse:  # the else branch runs
                    visit_stmt(sub, in_function)
                continue
            visit_stmt(child, in_function)

    def visit_stmt(child: ast.AST, in_function: bool) -> None:
        inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        if isinstance(child, (ast.Import, ast.ImportFrom)) and (lazy or not in_function):
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            else:
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                         for a in child.names]
            for name in names:
                if name.split(".")[0] == "scopeflow":
                    t = target(name)
                    if t and t != module:
                        found.add(t)
        visit(child, inner)

    visit(tree, False)
    return found


def _graph(*, lazy: bool) -> dict[str, set[str]]:
    return {m: _imports(ast.parse(p.read_text(), str(p)), m, lazy=lazy) for m, p in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path a -> ... -> a) per strongly connected component with a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan; the graph is small, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(comp)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    cycles = []
    for comp in components:  # a shortest way back to the start, for the message
        members, start = set(comp), min(comp)
        paths, seen, path = [[start]], {start}, None
        while paths and path is None:
            nxt = []
            for p in paths:
                for w in sorted(graph[p[-1]] & members):
                    if w == start:
                        path = p + [start]
                        break
                    if w not in seen:
                        seen.add(w)
                        nxt.append(p + [w])
                if path:
                    break
            paths = nxt
        cycles.append(path)
    return cycles


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports(module):
    importlib.import_module(module)


def test_cycle_finder_finds_a_cycle_and_reads_relative_imports():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    tree = ast.parse("from . import measure\nfrom .qc.focus import x\n"
                     "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import scopeflow.cli\n"
                     "def f():\n    from scopeflow.smear import dpc\n")
    assert _imports(tree, "scopeflow.smear.figures", lazy=False) == {
        "scopeflow.smear.measure", "scopeflow.smear.qc.focus"}
    assert _imports(tree, "scopeflow.smear.figures", lazy=True) == {
        "scopeflow.smear.measure", "scopeflow.smear.qc.focus", "scopeflow.smear.dpc"}


def test_no_import_cycle_at_module_level():
    cycles = _cycles(_graph(lazy=False))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_import_cycle_through_lazy_imports():
    cycles = _cycles(_graph(lazy=True))
    assert not cycles, ("import cycles through imports inside functions: "
                        + "; ".join(" -> ".join(c) for c in cycles))


def test_no_module_over_600_lines():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"

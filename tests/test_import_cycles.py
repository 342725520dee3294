"""No import cycle between retain's modules, not even through an import deferred into a function:
read from the source with ast (nothing is imported), so a cycle is named with its modules."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules(src: Path) -> dict[str, Path]:
    modules = {}
    for path in (src / "retain").rglob("*.py"):
        parts = path.relative_to(src).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The retain modules ``name`` imports anywhere in its file (top level, functions, TYPE_CHECKING)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    named: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            named.add(base)
            named.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    found = set()
    for target in named:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def import_cycles(src: Path = SRC) -> list[list[str]]:
    """The strongly connected groups of more than one module in retain's import graph."""
    modules = _modules(src)
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        order[node] = low[node] = len(order)
        stack.append(node)
        for target in graph[node]:
            if target not in order:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], order[target])
        if low[node] == order[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in order:
            visit(node)
    return cycles


#: cycles known and not yet broken, each with where it runs; the list only shrinks: a new cycle
#: fails the test (one of these, once broken, should be deleted here)
def test_no_import_cycle_between_retain_modules() -> None:
    assert import_cycles() == []


def test_the_check_sees_a_deferred_import(tmp_path: Path) -> None:
    package = tmp_path / "retain"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from retain.b import f\n")
    (package / "b.py").write_text("def f():\n    from . import a\n")
    assert import_cycles(tmp_path) == [["retain.a", "retain.b"]]

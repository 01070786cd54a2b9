"""The import graph of our three packages, read with `ast` (nothing is imported): no cycles of any length, and
`attacks`/`defenses` never import from `audit` (the audit is built on them, not the other way round).

Every import statement counts, at module level and inside functions alike: a function-level import only delays
a cycle to the first call. Imports under `if TYPE_CHECKING:` are left out, since they never run.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("attacks", "audit", "defenses")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """All import statements, at any depth, except the bodies of `if TYPE_CHECKING:`."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ours that `name` imports: `from X import y` names X.y when that is a module, else X."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in _import_nodes(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:  # relative: climb level - 1 packages up from this one
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            candidates = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        targets.update(c for c in candidates if c in known and c != name)
    return targets


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None (iterative depth-first search, three colours)."""
    colour = dict.fromkeys(graph, 0)  # 0 unvisited, 1 on the current path, 2 finished
    for start in sorted(graph):
        if colour[start]:
            continue
        path, iterators = [start], [iter(sorted(graph[start]))]
        colour[start] = 1
        while path:
            child = next(iterators[-1], None)
            if child is None:
                colour[path.pop()] = 2
                iterators.pop()
            elif colour[child] == 1:
                return path[path.index(child):] + [child]
            elif colour[child] == 0:
                colour[child] = 1
                path.append(child)
                iterators.append(iter(sorted(graph[child])))
    return None


def test_the_graph_is_read():
    graph = import_graph()
    # Anchors that must be seen, or the walk is broken and the checks below would pass vacuously.
    assert {"attacks.judge", "audit.pipeline", "defenses.meansparse", "audit.probes"} <= set(graph)
    assert "attacks.threat_model" in graph["attacks.judge"]
    assert "defenses.protocol" in graph["attacks.judge"]
    assert sum(len(targets) for targets in graph.values()) > 100


def test_find_cycle_finds_cycles_of_any_length():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    cycle = find_cycle({"a": {"b"}, "b": {"c"}, "c": {"d"}, "d": {"b"}, "e": set()})
    assert cycle == ["b", "c", "d", "b"]


def test_relative_and_function_level_imports_count(tmp_path, monkeypatch):
    package = tmp_path / "attacks"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from . import b\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from attacks import a\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    graph = import_graph()
    assert graph["attacks.a"] == {"attacks.b"}
    assert graph["attacks.b"] == set()  # a TYPE_CHECKING import never runs


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("package", ["attacks", "defenses"])
def test_attacks_and_defenses_do_not_import_audit(package):
    graph = import_graph()
    offenders = sorted(f"{name} imports {target}" for name, targets in graph.items()
                       if name.split(".")[0] == package for target in targets if target.split(".")[0] == "audit")
    assert not offenders, "; ".join(offenders)

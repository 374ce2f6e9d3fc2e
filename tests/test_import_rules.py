"""The import rules of docs/architecture.md, checked over the real import graph of automl/.

Every import counts, also those inside functions and under TYPE_CHECKING: a rule that
held only at import time would still let the code depend on what it must not know.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "automl"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_by(name: str) -> set[str]:
    """The automl modules `name` imports: `from automl.x import y` counts as automl.x.y when that is a module."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, `level - 1` packages up
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t == "automl" or t.startswith("automl.")}
    return {t for t in found if t in MODULES and t != name}


GRAPH = {name: imported_by(name) for name in MODULES}


def test_the_graph_was_read():
    assert len(GRAPH) > 50 and "automl.strategies.random" in GRAPH
    assert "automl.strategies.base" in GRAPH["automl.strategies.random"]


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("automl.strategies")))
def test_strategies_import_only_the_space_and_the_records(name):
    allowed = {"automl.space", "automl.records", "automl.errors"}  # errors: a leaf module, no imports of its own
    wrong = {t for t in GRAPH[name] if t not in allowed and not t.startswith("automl.strategies")}
    assert not wrong, f"{name} imports {sorted(wrong)}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith(("automl.training", "automl.execution"))))
def test_training_and_execution_know_no_strategy_and_no_plugin_discovery(name):
    forbidden = ("automl.strategies", "automl.strategy_builder", "automl.plugins", "automl.search", "automl.agent",
                 "automl.final")
    wrong = {t for t in GRAPH[name] if t.startswith(forbidden)}
    assert not wrong, f"{name} imports {sorted(wrong)}"


def test_the_leaf_modules_import_nothing_of_automl():
    for name in ("automl.records", "automl.errors", "automl.files"):
        assert GRAPH[name] == set(), f"{name} imports {sorted(GRAPH[name])}"


def test_there_is_no_import_cycle():
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in sorted(GRAPH[name]):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


def test_only_the_cli_prints():
    printing = []
    for name, path in MODULES.items():
        if name == "automl.cli":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                printing.append(f"{name}:{node.lineno}")
    assert not printing, f"print() outside the CLI: {printing}"


def test_no_module_is_over_400_lines():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"

"""The package's layout budgets: module and class sizes, no runtime import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import workpool

PACKAGE = Path(workpool.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(path: Path) -> set[str]:
    """The workpool modules *path* imports when it runs (functions' imports included,
    ``if TYPE_CHECKING:`` blocks not)."""
    module = _name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join([*base, child.module] if child.module else base)
                else:
                    target = child.module or ""
                if target.startswith("workpool"):
                    found.add(target)
            elif isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("workpool"))
            visit(child)

    visit(ast.parse(path.read_text()))
    found.discard(module)
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _name(p))
def test_module_and_class_sizes(path: Path) -> None:
    """No module over 500 lines, no class over 450."""
    source = path.read_text()
    assert source.count("\n") <= 500, f"{path.name} has {source.count(chr(10))} lines"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            assert length <= 450, f"class {node.name} has {length} lines"


def test_no_runtime_import_cycle() -> None:
    """The private modules import each other without a cycle (TYPE_CHECKING aside;
    the package's __init__, which imports them all, is left out)."""
    graph = {
        _name(path): {m for m in _runtime_imports(path) if m != "workpool"}
        for path in MODULES
        if path.name != "__init__.py"
    }
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycle = [*stack[stack.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)

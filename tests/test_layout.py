"""The package's layout budgets: module and class sizes, no runtime import cycle,
no reach into another module's private attributes."""

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


# Private attributes of objects outside the package, reached for want of a public way.
_FOREIGN_PRIVATE = {
    # svcs has no public way to drop the cleanups of a container whose aclose() was
    # cut off at the shutdown grace; without it, svcs warns again at GC.
    ("_scope", "_on_close"),
    # CPython's documented way to read another thread's stack (the loop watchdog).
    ("_watchdog", "_current_frames"),
}
# A namedtuple's methods start with "_" only to stay out of the way of field names;
# they are its public API (urllib.parse results are namedtuples).
_NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}


def _defined_names(tree: ast.AST) -> set[str]:
    """The names a module defines: functions, classes, attributes it sets on self or
    cls, slots, module and class variables."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names.add(target.id)
                    if target.id == "__slots__":
                        names.update(
                            c.value
                            for c in ast.walk(node.value)
                            if isinstance(c, ast.Constant) and isinstance(c.value, str)
                        )
    return names


def _private_reaches(tree: ast.AST) -> list[tuple[int, str, str]]:
    """``(line, expression, attribute)`` for each ``x._name`` and ``getattr(x,
    "_name")`` where ``x`` is not ``self`` or ``cls``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            target, attr = node.value, node.attr
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            target, attr = node.args[0], node.args[1].value
        else:
            continue
        if not attr.startswith("_") or attr.startswith("__"):
            continue
        if isinstance(target, ast.Name) and target.id in ("self", "cls"):
            continue
        found.append((node.lineno, ast.unparse(node), attr))
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _name(p))
def test_private_attributes_stay_in_their_module(path: Path) -> None:
    """A module reaches into another object's ``_private`` attribute only when that
    attribute is its own (a helper class or function next to the class); no module
    reaches into another module's internals."""
    tree = ast.parse(path.read_text())
    defined = _defined_names(tree)
    foreign = [
        f"line {line}: {expression}"
        for line, expression, attr in _private_reaches(tree)
        if attr not in defined
        and attr not in _NAMEDTUPLE_API
        and (path.stem, attr) not in _FOREIGN_PRIVATE
    ]
    assert not foreign, f"{path.name} reaches into private attributes it does not own: {foreign}"

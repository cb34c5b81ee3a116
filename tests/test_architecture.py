"""The shape of the package, checked: no import cycles, doors that do not import each other, and an
SQL engine that stays inside `storage/`.

Every import statement counts, those inside functions included (an import moved into a function
hides a cycle from Python, not from this test). Imports under `if TYPE_CHECKING:` never run and
are left out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "qa_service"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if "migrations" in parts:
            continue  # Alembic loads these by file path, never by import
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except the bodies of `if TYPE_CHECKING:` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _package_of(module: str) -> str:
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def imports_of(module: str) -> set[str]:
    """The modules of this package that `module` imports anywhere in its code."""
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    found: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = _package_of(module).split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                name = f"{base}.{alias.name}"
                if name in MODULES:
                    found.add(name)  # a submodule
                elif base in MODULES:
                    found.add(base)  # a name defined in the module (or package)
    found.discard(module)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of two or more modules (Tarjan), as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_an_import_inside_a_function_counts() -> None:
    tree = ast.parse("def f():\n    import qa_service.errors\n"
                     "if TYPE_CHECKING:\n    import qa_service.records\n")
    names = {a.name for n in _runtime_nodes(tree) if isinstance(n, ast.Import) for a in n.names}
    assert names == {"qa_service.errors"}


def test_no_import_cycle_in_the_package() -> None:
    cycles = find_cycles(GRAPH)
    assert not cycles, "import cycles (counting imports inside functions):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


@pytest.mark.parametrize(("door", "other"), [("api", "web"), ("web", "api")])
def test_api_and_web_do_not_import_each_other(door: str, other: str) -> None:
    crossing = sorted(f"{m} imports {i}" for m, found in GRAPH.items()
                      if m.startswith(f"qa_service.{door}.") or m == f"qa_service.{door}"
                      for i in found if i == f"qa_service.{other}" or i.startswith(f"qa_service.{other}."))
    assert not crossing, "\n".join(crossing)


def _engine_uses(module: str) -> list[str]:
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("engine", "_engine"):
            uses.append(f"{module}:{node.lineno} .{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
              and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
              and node.args[1].value in ("engine", "_engine")):
            uses.append(f"{module}:{node.lineno} getattr(..., {node.args[1].value!r})")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            if any(n == "sqlalchemy" or n.startswith("sqlalchemy.") for n in names):
                uses.append(f"{module}:{node.lineno} imports sqlalchemy")
    return uses


def test_nothing_outside_storage_touches_the_sql_engine() -> None:
    outside = [m for m in MODULES if not (m == "qa_service.storage" or m.startswith("qa_service.storage."))]
    uses = [u for m in sorted(outside) for u in _engine_uses(m)]
    assert not uses, "\n".join(uses)


# Where the environment may be read or changed: the settings, and the entry points (the command line
# sets WEB_CONCURRENCY for the API processes it starts; the demo hands its settings to the worker
# process it starts). Alembic's env.py is not in MODULES: Alembic loads it by path when run by hand.
READS_THE_ENVIRONMENT = {"qa_service.settings", "qa_service.cli", "qa_service.demo"}
# Still to move: the stage sets Hugging Face's offline switches when imported, before any model code
# is imported, so nothing is ever fetched.
KNOWN_ENVIRONMENT_WRITERS = {"qa_service.stages.transcribe"}


def _environment_uses(module: str) -> list[str]:
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    return [f"{module}:{node.lineno}" for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "putenv")
            and isinstance(node.value, ast.Name) and node.value.id == "os"]


def test_only_settings_and_entry_points_read_the_environment() -> None:
    uses = [u for m in sorted(MODULES) if m not in READS_THE_ENVIRONMENT | KNOWN_ENVIRONMENT_WRITERS
            for u in _environment_uses(m)]
    assert not uses, "\n".join(uses)

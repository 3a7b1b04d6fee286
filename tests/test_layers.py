"""The layout is the architecture: no module imports a layer above its own, and no import cycle exists.

A request flows one way: ``cli`` → ``server`` → ``transport`` → ``enrollment`` → ``matcher`` →
``native``; ``shanakht`` (the generated API and the client helper) sits below everything that
speaks gRPC and imports nothing of ours.  ``console`` (the web console) reaches the server only
over gRPC: it may import ``shanakht`` and nothing else of ours.  Imports inside functions count like the others (a lazy
import is still a dependency); only ``if TYPE_CHECKING:`` blocks, which never run, are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

ALLOWED = {
    "cli": {"console", "server", "transport", "enrollment", "matcher", "native", "shanakht"},
    # The web console is a gRPC client of the server: it knows the API and nothing of what is behind it.
    "console": {"shanakht"},
    "server": {"transport", "enrollment", "matcher", "native", "shanakht"},
    "transport": {"enrollment", "matcher", "native", "shanakht"},
    "enrollment": {"matcher", "native"},
    "matcher": {"native"},
    "native": set(),
    "shanakht": set(),
}


def _modules() -> dict[str, Path]:
    found = {"server": REPO / "server.py"}
    for package in ALLOWED:
        folder = REPO / package
        for path in folder.rglob("*.py") if folder.is_dir() else ():
            if "_pb2" in path.name:
                continue  # generated from the proto; imports only protobuf and its siblings
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Our modules that ``name`` imports (and the packages whose ``__init__`` that runs)."""
    targets: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, one level up per extra dot
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, *([base] if base else [])])
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    resolved: set[str] = set()
    for target in targets:
        parts = target.split(".")
        for end in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b and a.b.c
            candidate = ".".join(parts[:end])
            if candidate in known and candidate != name:
                resolved.add(candidate)
    return resolved


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, set(modules)) for name, path in modules.items()}


def test_no_module_imports_a_layer_above_its_own():
    wrong = [
        f"{name} imports {target}"
        for name, targets in _graph().items()
        for target in targets
        if (layer := name.split(".")[0]) != (other := target.split(".")[0]) and other not in ALLOWED[layer]
    ]
    assert not wrong, wrong


def test_there_is_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                walk(target, [*path, target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert not cycles, cycles


def test_the_checker_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    import server\n")
    assert "server" in _imports(module, "matcher.m", {"server", "matcher"})

"""The shape of `koma.lsp`: feature modules stand side by side, and its imports form no cycle.

Each LSP feature lives in one module (two for completion: inline and its `textDocument/completion`
fallback) with a `register(server)` function. What features share lives in infrastructure modules
(protocol payloads, request parameters, progress, exposure, per-feature state, the settings
application) or on the server. A feature that imports another feature's helpers makes every
change to one a change to both, and is how the old import cycles grew; these tests read the
source (no import runs) and fail on either.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LSP = Path(__file__).resolve().parents[1] / "server" / "koma" / "lsp"

# module -> feature; modules of one feature may import each other.
FEATURES = {
    "chat": "chat",
    "code_actions": "code_actions",
    "commands": "commands",
    "completion": "completion",
    "inline_completion": "completion",
    "hover": "hover",
    "local_models": "local_models",
    "status": "status",
    "tools": "tools",
}
# What the server registers and features share; features may import these (not each other).
INFRASTRUCTURE = {
    "__init__",
    "__main__",
    "args",
    "exposure",
    "fanout",
    "params",
    "progress",
    "protocol",
    "server",
    "settings",
    "state",
    "tcp",
}


def lsp_modules() -> dict[str, Path]:
    return {path.stem: path for path in sorted(LSP.glob("*.py"))}


def lsp_imports(path: Path) -> set[str]:
    """The `koma.lsp` modules `path` imports anywhere: top level, in functions, type-only."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level in (0, 1):
            # `from . import x` / `from .x import y` inside koma.lsp count like absolute ones.
            module = "koma.lsp" + (f".{node.module}" if node.module else "")
            module = module if node.level == 1 else node.module or ""
            if module == "koma.lsp":
                names = [f"koma.lsp.{alias.name}" for alias in node.names]
            else:
                names = [module]
        else:
            continue
        for name in names:
            if name.startswith("koma.lsp."):
                found.add(name.split(".")[2])
    return found


def graph() -> dict[str, set[str]]:
    modules = lsp_modules()
    return {name: lsp_imports(path) - {name} for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_lsp_module_is_classified() -> None:
    """A new module must be declared a feature or infrastructure, so the rules below see it."""
    unknown = set(lsp_modules()) - set(FEATURES) - INFRASTRUCTURE
    assert unknown == set(), f"classify these in tests/test_architecture.py: {sorted(unknown)}"


@pytest.mark.parametrize("module", sorted(FEATURES))
def test_a_feature_module_imports_no_other_feature(module: str) -> None:
    imports = lsp_imports(lsp_modules()[module])
    others = sorted(
        name for name in imports if name in FEATURES and FEATURES[name] != FEATURES[module]
    )
    assert others == [], f"koma.lsp.{module} imports the feature modules {others}"


def test_infrastructure_imports_no_feature_but_through_the_server() -> None:
    """Shared modules must not reach up into a feature; only the server wires features in."""
    edges = graph()
    wrong = {
        name: sorted(edges[name] & set(FEATURES))
        for name in sorted(INFRASTRUCTURE & set(edges))
        if name != "server" and edges[name] & set(FEATURES)
    }
    assert wrong == {}, f"infrastructure importing features: {wrong}"


def test_the_lsp_import_graph_has_no_cycle_but_server_and_what_it_registers() -> None:
    """The server imports the modules it registers, and they name its type; nothing else loops."""
    edges = graph()
    registered = {
        name
        for name, path in lsp_modules().items()
        if any(
            isinstance(node, ast.FunctionDef) and node.name == "register"
            for node in ast.parse(path.read_text(encoding="utf-8")).body
        )
    }
    edges["server"] = edges.get("server", set()) - registered
    assert cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check above can fail: a three-module loop is reported as one component."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


CONTAINERS = {"set", "dict", "list", "OrderedDict", "defaultdict", "WeakKeyDictionary"}


def state_kept_outside_the_server(path: Path) -> list[str]:
    """Ways a module keeps state other than `ls.state`: weak dictionaries keyed by the server,
    `nonlocal` closure variables, module globals that start empty and fill up at run time."""
    found: list[str] = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Nonlocal):
            found.append(f"line {node.lineno}: nonlocal {', '.join(node.names)}")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            if "weakref" in names:
                found.append(f"line {node.lineno}: imports weakref")
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            target, value = stmt.target, stmt.value
        else:
            continue
        empty = (isinstance(value, ast.Dict | ast.List | ast.Set) and not _items(value)) or (
            isinstance(value, ast.Call) and _called(value) in CONTAINERS
        )
        if empty and isinstance(target, ast.Name):
            found.append(f"line {stmt.lineno}: module global {target.id}")
    return found


def _items(node: ast.Dict | ast.List | ast.Set) -> list[object]:
    return list(node.keys) if isinstance(node, ast.Dict) else list(node.elts)


def _called(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


@pytest.mark.parametrize("module", sorted(set(FEATURES) | INFRASTRUCTURE - {"state"}))
def test_state_is_held_one_way_on_the_server(module: str) -> None:
    path = lsp_modules().get(module)
    if path is None:
        pytest.fail(f"koma.lsp.{module} is classified but does not exist")
    assert state_kept_outside_the_server(path) == []


def test_the_state_check_sees_a_weak_dict_and_a_closure() -> None:
    """The check above can fail: today's patterns of the old tree are reported."""
    sample = LSP.parent.parent.parent / "tests" / "fixtures" / "lsp_state_sample.py"
    assert [line.split(":", 1)[1].strip() for line in state_kept_outside_the_server(sample)] == [
        "imports weakref",
        "nonlocal seen",
        "module global _RUNNERS",
        "module global _background",
    ]

"""Koma's layers point down only: providers <- engine <- lsp <- cli (docs/architecture.md).

A provider that imports the engine, or the engine that imports the language server, is how a
wire format ends up knowing about editors, and how the CLI and the editor stop sharing one
engine. The shared vocabulary (`types`, `choices`, `errors`, `settings`, `trust`, …) sits
under every layer and imports none. These tests read the source (no import runs): top-level,
function-level and type-only imports all count.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "server" / "koma"
# The package root and `python -m koma` are the entry points: they may reach any layer.
ENTRY_POINTS = {"koma", "koma.__main__"}
EDITOR_LIBRARIES = ("pygls", "lsprotocol")


def layer(module: str) -> int | None:
    """0 providers, 1 engine, 2 lsp, 3 the CLI; None for the shared vocabulary."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    if parts[1] == "providers":
        return 0
    if parts[1] == "engine":
        return 1
    if parts[1] == "lsp":
        return 2
    if parts[1].startswith("cli"):
        return 3
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                found.add(".".join([*base, *([node.module] if node.module else [])]))
            else:
                found.add(node.module or "")
    return found


def violations(modules: dict[str, set[str]]) -> list[str]:
    """`importer -> imported` for every import that points up, or to an editor library below
    the language server."""
    found = []
    for importer, imported in sorted(modules.items()):
        if importer in ENTRY_POINTS:
            continue
        own = layer(importer)
        for name in sorted(imported):
            if name.split(".")[0] in EDITOR_LIBRARIES and (own is None or own < 2):
                found.append(f"{importer} -> {name}")
            if not name.startswith("koma."):
                continue
            target = layer(name)
            if target is not None and (own is None or target > own):
                found.append(f"{importer} -> {name}")
    return found


def test_every_import_points_down() -> None:
    modules = {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}
    assert len(modules) > 100
    assert not violations(modules)


def test_the_check_sees_an_upward_import_and_pygls_in_the_engine() -> None:
    found = violations(
        {
            "koma.providers.ollama": {"koma.engine.stream", "httpx"},
            "koma.engine.chat": {"pygls.server", "koma.providers.base"},
            "koma.settings.schema": {"koma.lsp.server"},
            "koma.lsp.chat": {"koma.cli", "lsprotocol.types"},
        }
    )
    assert found == [
        "koma.engine.chat -> pygls.server",
        "koma.lsp.chat -> koma.cli",
        "koma.providers.ollama -> koma.engine.stream",
        "koma.settings.schema -> koma.lsp.server",
    ]

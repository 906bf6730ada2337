"""The server's payload shapes (`koma.lsp.protocol`) and the VS Code client's (`protocol.ts`)
name the same fields: a field the extension reads that the server's shape lacks, or a field the
server sends that the chat client's type does not know, is drift that shows up as a blank in the
editor. The wire itself is checked by the tests in tests/lsp/, which drive the real server.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL_TS = ROOT / "clients" / "vscode" / "src" / "protocol.ts"
# The shapes exist for the type checker only (no classes at run time), so they are read as source.
PROTOCOL_PY = ROOT / "server" / "koma" / "lsp" / "protocol.py"

# TypeScript interface -> the server's TypedDict, and whether the server may send more fields
# than the client declares (`koma.status` adds ones only the docs and Neovim show).
PAIRS = [
    ("ChatMetrics", "ChatMetrics", False),
    ("ToolCallInfo", "ToolCallInfo", False),
    ("ToolResultInfo", "ToolResultInfo", False),
    ("ChatResultPayload", "ChatResultPayload", False),
    ("ChatEvent", "ChatEvent", False),
    ("ChatReply", "ChatReply", False),
    ("StatusPayload", "StatusReply", True),
    ("ModelEntry", "ModelEntry", False),
    ("ModelsReply", "ModelsReply", False),
]


def ts_fields(name: str) -> set[str]:
    """The field names of `export interface <name> { … }` in protocol.ts."""
    source = PROTOCOL_TS.read_text(encoding="utf-8")
    match = re.search(rf"export interface {name} \{{\n(.*?)\n\}}", source, re.S)
    assert match is not None, f"no interface {name} in {PROTOCOL_TS}"
    body = re.sub(r"/\*\*.*?\*/", "", match.group(1), flags=re.S)
    return set(re.findall(r"^\s*(\w+)\??:", body, re.M))


def py_fields(name: str) -> set[str]:
    """The keys of the TypedDict `name` in protocol.py, with those of the shapes it extends."""
    classes = {
        node.name: node
        for node in ast.walk(ast.parse(PROTOCOL_PY.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef)
    }
    assert name in classes, f"no class {name} in {PROTOCOL_PY}"
    node = classes[name]
    fields = {
        stmt.target.id
        for stmt in node.body
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
    }
    for base in node.bases:
        if isinstance(base, ast.Name) and base.id in classes:
            fields |= py_fields(base.id)
    return fields


@pytest.mark.parametrize(("ts_name", "shape", "server_may_add"), PAIRS, ids=[p[0] for p in PAIRS])
def test_server_and_vscode_shapes_name_the_same_fields(
    ts_name: str, shape: str, server_may_add: bool
) -> None:
    client, server = ts_fields(ts_name), py_fields(shape)
    assert client - server == set(), f"{ts_name}: the client reads fields the server never sends"
    if not server_may_add:
        assert server - client == set(), f"{ts_name}: the server sends fields the client lacks"


def test_the_reader_sees_every_field_of_an_interface() -> None:
    """The check above can fail: both readers find each field of a known shape, inherited too."""
    assert ts_fields("ChatMetrics") == {"ttftMs", "tokensPerSecond", "totalMs"}
    assert py_fields("ChatMetrics") == {"ttftMs", "tokensPerSecond", "totalMs"}
    assert {"state", "model", "provider", "completionRoute"} <= py_fields("StatusReply")

"""The server's payload shapes (`koma.lsp.protocol`) and the VS Code client's (`protocol.ts`)
name the same fields: a field the extension reads that the server's shape lacks, or a field the
server sends that the chat client's type does not know, is drift that shows up as a blank in the
editor. The wire itself is checked by the tests in tests/lsp/, which drive the real server.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from koma.lsp import protocol

PROTOCOL_TS = Path(__file__).resolve().parents[1] / "clients" / "vscode" / "src" / "protocol.ts"

# TypeScript interface -> the server's TypedDict, and whether the server may send more fields
# than the client declares (`koma.status` adds ones only the docs and Neovim show).
PAIRS = [
    ("ChatMetrics", protocol.ChatMetrics, False),
    ("ToolCallInfo", protocol.ToolCallInfo, False),
    ("ToolResultInfo", protocol.ToolResultInfo, False),
    ("ChatResultPayload", protocol.ChatResultPayload, False),
    ("ChatEvent", protocol.ChatEvent, False),
    ("ChatReply", protocol.ChatReply, False),
    ("StatusPayload", protocol.StatusReply, True),
    ("ModelEntry", protocol.ModelEntry, False),
    ("ModelsReply", protocol.ModelsReply, False),
]


def ts_fields(name: str) -> set[str]:
    """The field names of `export interface <name> { … }` in protocol.ts."""
    source = PROTOCOL_TS.read_text(encoding="utf-8")
    match = re.search(rf"export interface {name} \{{\n(.*?)\n\}}", source, re.S)
    assert match is not None, f"no interface {name} in {PROTOCOL_TS}"
    body = re.sub(r"/\*\*.*?\*/", "", match.group(1), flags=re.S)
    return set(re.findall(r"^\s*(\w+)\??:", body, re.M))


def py_fields(shape: type) -> set[str]:
    return set(getattr(shape, "__required_keys__", ())) | set(
        getattr(shape, "__optional_keys__", ())
    )


@pytest.mark.parametrize(("ts_name", "shape", "server_may_add"), PAIRS, ids=[p[0] for p in PAIRS])
def test_server_and_vscode_shapes_name_the_same_fields(
    ts_name: str, shape: type, server_may_add: bool
) -> None:
    client, server = ts_fields(ts_name), py_fields(shape)
    assert client - server == set(), f"{ts_name}: the client reads fields the server never sends"
    if not server_may_add:
        assert server - client == set(), f"{ts_name}: the server sends fields the client lacks"


def test_the_reader_sees_every_field_of_an_interface() -> None:
    """The check above can fail: the parser finds each field of a known interface."""
    assert ts_fields("ChatMetrics") == {"ttftMs", "tokensPerSecond", "totalMs"}

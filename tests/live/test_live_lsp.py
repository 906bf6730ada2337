"""`koma lsp` as a real process against the real llama.cpp server: completion, actions, chat.

Cancellation is proven from the server's side: its log shows the client disconnect while the
generation was still running, and no end-of-generation timings for the cancelled request.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_support import LiveServer, koma_lsp
from lsprotocol import types

pytestmark = pytest.mark.live

# Lines a chat template, a reasoning parser or a fence would leave behind if they leaked.
LEAKS = re.compile(r"<\|[a-z_]+\|>|</?think>|```|^### |Question:|Answer:", re.MULTILINE)
# llama-cpp-python prints this block when a generation runs to its end (verbose server).
FINISHED = re.compile(r"llama_perf_context_print:\s+eval time")
DISCONNECTED = r"Disconnected from client"


def koma_settings(server: LiveServer, **chat: Any) -> dict[str, Any]:
    return {
        "provider": "openai",
        "baseUrl": server.base_url,
        "model": server.model,
        "chat": {"temperature": 0, "maxTokens": 48, **chat},
        "completion": {
            "maxTokens": 24,
            "temperature": 0,
            "debounceMs": 0,
            "openDocumentsContext": False,
        },
        "cache": {"mode": "off"},
    }


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    home, workspace = tmp_path / "home", tmp_path / "ws"
    home.mkdir()
    workspace.mkdir()
    return home, workspace


def position(line: int, character: int) -> types.Position:
    return types.Position(line=line, character=character)


async def test_inline_completion_returns_clean_text(
    live_server: LiveServer, dirs: tuple[Path, Path]
) -> None:
    home, workspace = dirs
    uri = (workspace / "calc.py").as_uri()
    text = 'def add(a, b):\n    """Return the sum of a and b."""\n    return '
    async with koma_lsp(koma_settings(live_server), home, workspace) as client:
        client.open_uri(uri, text)
        result = await asyncio.wait_for(
            client.text_document_inline_completion_async(
                types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    position=position(2, 11),
                    context=types.InlineCompletionContext(
                        trigger_kind=types.InlineCompletionTriggerKind.Invoked
                    ),
                )
            ),
            90,
        )
    assert result is not None
    items = result.items if isinstance(result, types.InlineCompletionList) else result
    assert items, "the real model's suggestion was dropped"
    insert = items[0].insert_text
    assert isinstance(insert, str) and insert.strip()
    assert not LEAKS.search(insert), insert
    assert items[0].range is None or items[0].range.start == position(2, 11)


async def test_code_action_resolves_to_an_edit(
    live_server: LiveServer, dirs: tuple[Path, Path]
) -> None:
    home, workspace = dirs
    uri = (workspace / "calc.py").as_uri()
    text = "def add(a, b):\n    return a + b\n"
    whole = types.Range(start=position(0, 0), end=position(1, 16))
    async with koma_lsp(koma_settings(live_server, maxTokens=120), home, workspace) as client:
        client.open_uri(uri, text)
        actions = await client.text_document_code_action_async(
            types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                range=whole,
                context=types.CodeActionContext(diagnostics=[]),
            )
        )
        assert actions
        docstring = next(
            a for a in actions if isinstance(a, types.CodeAction) and "docstring" in a.title
        )
        assert docstring.edit is None  # listing never calls the model
        resolved = await asyncio.wait_for(client.code_action_resolve_async(docstring), 90)
    assert resolved.edit is not None and resolved.edit.changes is not None, resolved
    edits = resolved.edit.changes[uri]
    assert edits and edits[0].new_text.strip()
    assert not LEAKS.search(edits[0].new_text), edits[0].new_text
    # The edit replaces whole lines of the target: the function the action was asked about.
    assert edits[0].range.start.line == 0


async def test_chat_turn_streams_deltas_and_returns_the_text(
    live_server: LiveServer, dirs: tuple[Path, Path]
) -> None:
    home, workspace = dirs
    async with koma_lsp(koma_settings(live_server), home, workspace) as client:
        reply = await client.command("koma.chat", {"chatId": "live-1", "message": "What is 2 + 2?"})
        deltas = client.events_of("live-1", "delta")
        done = client.events_of("live-1", "done")
    assert reply["chatId"] == "live-1"
    assert "4" in reply["text"], reply
    assert len(deltas) >= 2, deltas
    final = "".join(d["text"] for d in deltas if d.get("channel") == "final")
    assert final.strip() == reply["text"].strip()
    assert done and done[0]["metrics"]["ttftMs"] > 0


async def test_cancel_stops_generation_on_the_server(
    live_server: LiveServer, dirs: tuple[Path, Path]
) -> None:
    home, workspace = dirs
    max_tokens = 400
    settings = koma_settings(live_server, maxTokens=max_tokens)
    async with koma_lsp(settings, home, workspace) as client:
        mark = live_server.log_size()
        turn = asyncio.create_task(
            client.command(
                "koma.chat",
                {"chatId": "long", "message": "Count from 1 to 300, separated by commas."},
            )
        )
        await client.wait_for(lambda: len(client.events_of("long", "delta")) >= 3, "deltas")
        cancelled_at = time.monotonic()
        assert (await client.command("koma.chat.cancel", {"chatId": "long"}))["cancelled"]
        await asyncio.wait_for(turn, 30)
        shown = len(client.events_of("long", "delta"))

        # The server saw the disconnect, and the generation never reached its end-of-run
        # timings: it stopped there, not after max_tokens.
        log = live_server.wait_for_log(mark, DISCONNECTED)
        disconnect_seconds = time.monotonic() - cancelled_at
        before_disconnect = log[: re.search(DISCONNECTED, log).start()]  # type: ignore[union-attr]
        assert not FINISHED.search(before_disconnect), before_disconnect[-2000:]
        assert shown < max_tokens

    # The model is free at once: a short request is served, and it is logged as finished,
    # so the log really does record finished generations.
    mark = live_server.log_size()
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=60, trust_env=False) as http:
        response = await http.post(
            live_server.base_url + "/completions",
            json={"model": live_server.model, "prompt": "def add(a, b):", "max_tokens": 4},
        )
    served_seconds = time.monotonic() - started
    assert response.status_code == 200
    live_server.wait_for_log(mark, FINISHED.pattern)
    assert disconnect_seconds < 15 and served_seconds < 15, (disconnect_seconds, served_seconds)

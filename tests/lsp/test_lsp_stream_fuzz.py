"""The long-lived `koma lsp` against a broken or stalled model server (seeded mutations).

One language-server process per wire serves a chat turn and an inline completion for every
case, one after the other, as an editor would over a session. Each chat turn must end with an
answer or one clear line in its `error` (and in the chat `error` event); each inline request
must be answered in time, and any `koma/status` error it causes must be one clear line. After
all the broken streams the same process still answers a valid case: nothing leaked or hung.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from lsprotocol import types

from stream_fuzz_support import (
    ANSWER,
    EXACT,
    KINDS,
    FuzzServer,
    Plan,
    clear_error,
    content_type_of,
    expected_error,
    make_cases,
    serialize,
    valid_records,
)

SEED = 20261206
FIRST_BYTE_S = 1.5
IDLE_S = 0.5
DEADLINE_S = 12.0


@pytest.fixture
def fuzz() -> Any:
    server = FuzzServer([])
    yield server
    server.close()


async def inline(client: Any, uri: str, line: int) -> list[types.InlineCompletionItem]:
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=11),
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Invoked
        ),
    )
    result = await asyncio.wait_for(
        client.text_document_inline_completion_async(params), DEADLINE_S
    )
    if result is None:
        return []
    return list(result.items if isinstance(result, types.InlineCompletionList) else result)


@pytest.mark.parametrize("client_profile", ["visual_studio_code"])
@pytest.mark.parametrize("wire", ["ollama", "openai"])
async def test_lsp_chat_and_inline_give_an_answer_or_one_clear_line(
    lsp: Any, fuzz: FuzzServer, wire: str, profile_capabilities: types.ClientCapabilities
) -> None:
    assert profile_capabilities.text_document is not None
    profile_capabilities.text_document.inline_completion = (
        types.InlineCompletionClientCapabilities()
    )
    start = 30_000 if wire == "ollama" else 40_000
    cases = make_cases(SEED, len(KINDS), start)
    fuzz.add(cases)
    url = fuzz.url if wire == "ollama" else fuzz.url + "/v1"
    client = await lsp(
        settings={
            "provider": wire,
            "baseUrl": url,
            "model": "fuzz-oss",
            "completionModel": "fuzz-coder",
            "firstByteTimeoutSeconds": FIRST_BYTE_S,
            "idleTimeoutSeconds": IDLE_S,
            "cache": {"mode": "off"},
            "completion": {"debounceMs": 0},
        },
        capabilities=profile_capabilities,
    )
    failures: list[str] = []
    for case in cases:
        label = f"{case.tag} ({case.kind})"
        chat_id = f"chat-{case.number}"
        began = time.monotonic()
        result = await client.command("koma.chat", {"chatId": chat_id, "message": case.tag})
        took = time.monotonic() - began
        if took > DEADLINE_S:
            failures.append(f"{label}: chat took {took:.1f} s")
        if "error" in result:
            why = clear_error(result["error"]) or expected_error(case, result["error"])
            events = [e for e in client.events_of(chat_id) if e["type"] == "error"]
            if len(events) != 1 or events[0]["message"] != result["error"]:
                why = why or f"error events {events!r}"
            if why:
                failures.append(f"{label}: chat: {why}: {result['error'][:200]!r}")
        elif case.kind in EXACT and result["text"] != ANSWER:
            failures.append(f"{label}: chat answered {result['text'][:80]!r}")
        elif case.kind in ("stall", "stall_first", "drip"):
            failures.append(f"{label}: chat answered a stream that stalled")

        seen = len(client.statuses)
        uri = client.open(f"f{case.number}.py", f"# {case.tag}\ndef add(a, b):\n    return ")
        try:
            await inline(client, uri, 2)
        except TimeoutError:
            failures.append(f"{label}: inline completion gave no answer within {DEADLINE_S} s")
        except Exception as exc:  # an LSP error reply instead of a (possibly empty) answer
            failures.append(f"{label}: inline completion failed: {exc}"[:300])
        client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )
        for status in client.statuses[seen:]:
            message = status.get("message") or ""
            if status.get("state") == "error" and (why := clear_error(message)):
                failures.append(f"{label}: inline status: {why}: {message[:200]!r}")

    # The same process still serves a valid answer after every broken stream.
    valid = next(c for c in cases if c.kind == "valid")
    again = await client.command("koma.chat", {"chatId": "after", "message": valid.tag})
    assert again.get("text") == ANSWER, again
    assert not failures, f"{len(failures)} misbehaved:\n" + "\n".join(failures)
    # Every case reached the server through both features (the test is not vacuous).
    paths = {(n, p) for n, p in fuzz.served}
    chat_path, fim_path = (
        ("/api/chat", "/api/generate") if wire == "ollama" else ("/v1/chat/completions", None)
    )
    for case in cases:
        assert (case.number, chat_path) in paths, case
        served = [p for n, p in fuzz.served if n == case.number]
        assert len(served) >= 2, (case, served)
        if fim_path:
            assert (case.number, fim_path) in paths, case


@pytest.mark.parametrize("client_profile", ["neovim"])
async def test_a_slow_first_byte_shows_loading_model_in_the_status(
    lsp: Any, fuzz: FuzzServer
) -> None:
    fuzz.plan = lambda path: Plan(
        content_type=content_type_of(path),
        pieces=[b"", serialize(path, valid_records(path))],
        delay=1.6,  # the model "loads" for longer than the status waits before saying so
    )
    client = await lsp(
        settings={
            "provider": "ollama",
            "baseUrl": fuzz.url,
            "model": "fuzz-oss",
            "cache": {"mode": "off"},
        }
    )
    result = await client.command("koma.chat", {"chatId": "slow", "message": "hi"})
    assert result["text"] == ANSWER
    states = [(s["state"], s.get("message")) for s in client.statuses]
    loading = states.index(("loading", "loading model…"))
    assert ("generating", None) in states[loading + 1 :]  # back once the answer flows
    await client.wait_for(lambda: client.statuses[-1]["state"] == "idle", "idle status")

"""Inline completion end to end: the real `koma lsp` process against the loopback simulator.

Each test runs under a Neovim and a VS Code client profile. The profiles pytest-lsp ships
predate inline completion, so the inline tests add `textDocument.inlineCompletion` to them (as
Neovim 0.12 and current VS Code declare it); the fallback test uses them unchanged.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from koma_sim import Reply, Simulator
from koma_sim.env import isolated_env
from koma_sim.script import RequestRecord, qwen_coder

FIM_MODEL = "qwen2.5-coder:1.5b"
CHAT_MODEL = "gpt-oss:20b"
PROFILES = ["neovim", "visual_studio_code"]
SOURCE = "def add(a, b):\n    return \n"
CURSOR = types.Position(line=1, character=11)


@pytest.fixture
def sim_options() -> dict[str, Any]:
    """The root `sim` with a model's pace: 20 ms to the first token, 5 ms a token."""
    return {"ttft_ms": 20, "token_delay_ms": 5}


@pytest.fixture
async def lsp(tmp_path: Path) -> AsyncIterator[LanguageClient]:
    """A started, not yet initialized `koma lsp` process that reads no user or project config.

    Unlike the root `lsp` factory, each test initializes it itself (`initialize`): with the
    inline-completion capability added to the profile, or, for the fallback, without.
    """
    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "koma", "lsp"], server_env=isolated_env(tmp_path)
    )
    client = await config.start()
    yield client
    await client.shutdown_session()
    await client.stop()


async def initialize(
    client: LanguageClient,
    profile: str,
    root: Path,
    settings: dict[str, Any],
    inline: bool = True,
) -> types.InitializeResult:
    capabilities = client_capabilities(profile)
    if inline:
        assert capabilities.text_document is not None
        capabilities.text_document.inline_completion = types.InlineCompletionClientCapabilities(
            dynamic_registration=False
        )
    return await client.initialize_session(
        types.InitializeParams(
            capabilities=capabilities,
            root_uri=root.as_uri(),
            initialization_options={"koma": settings},
            trace=types.TraceValue.Off,
        )
    )


def open_doc(client: LanguageClient, root: Path, text: str = SOURCE, name: str = "a.py") -> str:
    uri = (root / name).as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="python", version=1, text=text
            )
        )
    )
    return uri


def type_text(
    client: LanguageClient, uri: str, version: int, at: types.Position, text: str
) -> None:
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(start=at, end=at), text=text
                )
            ],
        )
    )


def inline_params(
    uri: str, position: types.Position, invoked: bool = False
) -> types.InlineCompletionParams:
    kind = (
        types.InlineCompletionTriggerKind.Invoked
        if invoked
        else types.InlineCompletionTriggerKind.Automatic
    )
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=position,
        context=types.InlineCompletionContext(trigger_kind=kind),
    )


async def inline(
    client: LanguageClient, uri: str, position: types.Position, invoked: bool = False
) -> list[types.InlineCompletionItem]:
    result = await client.text_document_inline_completion_async(
        inline_params(uri, position, invoked)
    )
    if result is None:
        return []
    return list(result.items if isinstance(result, types.InlineCompletionList) else result)


def generations(sim: Simulator) -> list[RequestRecord]:
    return [r for r in sim.requests if r.endpoint in ("generate", "chat")]


async def first_generation(sim: Simulator) -> RequestRecord:
    found = await asyncio.to_thread(sim.wait_for_requests, 1, 30.0, None)
    while not generations(sim):
        found = await asyncio.to_thread(sim.wait_for_requests, len(found) + 1, 30.0, None)
    return generations(sim)[0]


def settings_for(sim: Simulator, completion_model: str, route: str = "auto") -> dict[str, Any]:
    return {
        "provider": "ollama",
        "baseUrl": sim.url,
        "model": CHAT_MODEL,
        "completionModel": completion_model,
        "completion": {"route": route},
    }


HARMONY = (
    "<|channel|>analysis<|message|>The user is adding two numbers; return their sum.<|end|>"
    "<|start|>assistant<|channel|>final<|message|><COMPLETION>a + b</COMPLETION><|return|>"
)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(
    "reply",
    [
        Reply(
            thinking="The user is adding two numbers; return their sum.",
            content="<COMPLETION>a + b</COMPLETION>",
        ),
        Reply(
            content="<think>The user is adding two numbers; return their sum.</think>"
            "<COMPLETION>a + b</COMPLETION>"
        ),
        Reply(content=HARMONY),
    ],
    ids=["thinking-field", "think-tags", "harmony"],
)
async def test_reasoning_model_suggestion_is_clean(
    lsp: LanguageClient, sim: Simulator, tmp_path: Path, profile: str, reply: Reply
) -> None:
    sim.set_default_reply(reply)
    await initialize(lsp, profile, tmp_path, settings_for(sim, CHAT_MODEL, route="chat"))
    uri = open_doc(lsp, tmp_path)
    items = await inline(lsp, uri, CURSOR)
    assert [i.insert_text for i in items] == ["a + b"]
    assert items[0].range is not None and items[0].range.start == CURSOR
    chat = generations(sim)
    assert [r.endpoint for r in chat] == ["chat"]
    assert chat[0].body["think"] == "low"


@pytest.mark.parametrize("profile", PROFILES)
async def test_fim_model_is_asked_with_prefix_and_suffix(
    lsp: LanguageClient, sim: Simulator, tmp_path: Path, profile: str
) -> None:
    sim.set_default_reply(Reply(content="a + b\n\nprint(add(1, 2))\n"))
    await initialize(lsp, profile, tmp_path, settings_for(sim, FIM_MODEL))
    uri = open_doc(lsp, tmp_path, "def add(a, b):\n    return \n\nx = 1\n")
    items = await inline(lsp, uri, CURSOR)
    assert [i.insert_text for i in items] == ["a + b"]
    (record,) = generations(sim)
    assert record.endpoint == "generate" and record.model == FIM_MODEL
    assert record.body["prompt"].endswith("def add(a, b):\n    return ")
    assert record.body["suffix"] == "\n\nx = 1\n"


@pytest.mark.parametrize("profile", PROFILES)
async def test_superseded_request_is_answered_empty_and_its_stream_closed(
    lsp: LanguageClient, sim: Simulator, tmp_path: Path, profile: str
) -> None:
    sim.set_default_reply(Reply(content="a + b", ttft_ms=30_000))
    await initialize(lsp, profile, tmp_path, settings_for(sim, FIM_MODEL))
    uri = open_doc(lsp, tmp_path)
    first = asyncio.ensure_future(inline(lsp, uri, CURSOR, invoked=True))
    record = await first_generation(sim)
    sim.set_default_reply(Reply(content=" a + b"))
    # Backspace: the running answer no longer fits, so the newer request must not wait for it.
    lsp.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(start=types.Position(line=1, character=10), end=CURSOR),
                    text="",
                )
            ],
        )
    )
    second = await inline(lsp, uri, types.Position(line=1, character=10), invoked=True)
    assert await asyncio.wait_for(first, 30) == []
    assert await asyncio.to_thread(sim.wait_for_disconnect, record, 10.0)
    assert record.tokens_sent == 0
    assert [i.insert_text for i in second] == [" a + b"]


@pytest.mark.parametrize("profile", PROFILES)
async def test_typing_on_while_the_model_answers_reuses_its_answer(
    lsp: LanguageClient, sim: Simulator, tmp_path: Path, profile: str
) -> None:
    sim.set_default_reply(Reply(content="a + b", ttft_ms=1500))
    await initialize(lsp, profile, tmp_path, settings_for(sim, FIM_MODEL))
    uri = open_doc(lsp, tmp_path)
    first = asyncio.ensure_future(inline(lsp, uri, CURSOR, invoked=True))
    record = await first_generation(sim)
    type_text(lsp, uri, 2, CURSOR, "a")
    second = await inline(lsp, uri, types.Position(line=1, character=12))
    assert await asyncio.wait_for(first, 30) == []
    assert [i.insert_text for i in second] == [" + b"]
    assert len(generations(sim)) == 1
    # The simulator marks the record after its last write, which the client may read first.
    assert await asyncio.to_thread(sim.wait_for_completion, record, 10.0)
    assert record.completed and not record.client_disconnected


@pytest.mark.parametrize("profile", PROFILES)
async def test_cancelled_request_is_answered_and_its_stream_closed(
    lsp: LanguageClient, sim: Simulator, tmp_path: Path, profile: str
) -> None:
    sim.set_default_reply(Reply(content="<COMPLETION>a + b</COMPLETION>", ttft_ms=30_000))
    await initialize(lsp, profile, tmp_path, settings_for(sim, CHAT_MODEL))
    uri = open_doc(lsp, tmp_path)
    pending = asyncio.wrap_future(
        lsp.protocol.send_request(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, CURSOR, True), msg_id="c-1"
        )
    )
    record = await first_generation(sim)
    lsp.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="c-1"))
    answer = await asyncio.wait_for(pending, 30)
    assert answer is not None and list(answer.items) == []
    assert await asyncio.to_thread(sim.wait_for_disconnect, record, 10.0)
    assert not record.completed


@pytest.mark.parametrize("profile", PROFILES)
async def test_typing_through_a_suggestion_needs_no_new_model_call(
    lsp: LanguageClient, sim: Simulator, tmp_path: Path, profile: str
) -> None:
    sim.set_default_reply(Reply(content="compute(a, b)"))
    await initialize(lsp, profile, tmp_path, settings_for(sim, FIM_MODEL))
    uri = open_doc(lsp, tmp_path)
    items = await inline(lsp, uri, CURSOR)
    assert [i.insert_text for i in items] == ["compute(a, b)"]
    calls = len(generations(sim))
    position = CURSOR
    for version, char in enumerate("comp", start=2):
        type_text(lsp, uri, version, position, char)
        position = types.Position(line=1, character=position.character + 1)
        items = await inline(lsp, uri, position)
    assert [i.insert_text for i in items] == ["ute(a, b)"]
    assert items[0].range is not None and items[0].range.start == position
    assert len(generations(sim)) == calls


@pytest.mark.parametrize("profile", PROFILES)
async def test_completion_fallback_for_clients_without_inline_completion(
    lsp: LanguageClient, sim: Simulator, tmp_path: Path, profile: str
) -> None:
    sim.set_default_reply(Reply(content="a + b"))
    result = await initialize(lsp, profile, tmp_path, settings_for(sim, FIM_MODEL), inline=False)
    assert result.capabilities.completion_provider is not None
    uri = open_doc(lsp, tmp_path)
    answer = await lsp.text_document_completion_async(
        types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri), position=CURSOR)
    )
    assert isinstance(answer, types.CompletionList) and answer.is_incomplete
    (item,) = answer.items
    assert isinstance(item.text_edit, types.TextEdit)
    assert item.text_edit.new_text == "a + b"
    assert item.text_edit.range.start == CURSOR
    assert item.insert_text_format == types.InsertTextFormat.PlainText


@pytest.mark.parametrize("profile", PROFILES)
async def test_inline_clients_are_not_offered_the_completion_fallback(
    lsp: LanguageClient, sim: Simulator, tmp_path: Path, profile: str
) -> None:
    result = await initialize(lsp, profile, tmp_path, settings_for(sim, FIM_MODEL))
    assert result.capabilities.completion_provider is None
    assert result.capabilities.inline_completion_provider is not None


@pytest.mark.parametrize("profile", PROFILES)
async def test_bad_input_and_a_dead_provider_give_empty_answers(
    lsp: LanguageClient, sim: Simulator, tmp_path: Path, profile: str
) -> None:
    dead = Simulator(models=[qwen_coder()])
    dead.start()
    url = dead.url
    dead.stop()  # nothing listens there any more
    settings = {"provider": "ollama", "baseUrl": url, "completionModel": FIM_MODEL}
    await initialize(lsp, profile, tmp_path, settings)
    uri = open_doc(lsp, tmp_path)
    assert await inline(lsp, uri, CURSOR, invoked=True) == []
    assert await inline(lsp, uri, types.Position(line=99, character=0), invoked=True) == []
    assert await inline(lsp, (tmp_path / "unknown.py").as_uri(), CURSOR, invoked=True) == []
    empty = open_doc(lsp, tmp_path, "", "empty.py")
    assert await inline(lsp, empty, types.Position(line=0, character=0), invoked=True) == []
    # The server is still serving.
    assert await inline(lsp, uri, CURSOR) == []

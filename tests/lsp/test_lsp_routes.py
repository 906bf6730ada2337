"""Each inline-completion route end to end through the real `koma lsp`, in both editor profiles.

The servers are the loopback simulator speaking Ollama (`/api/generate` with `suffix` or
`raw: true`), llama-server (`/props`, `/infill`, `/v1/completions`) and a chat-only setting.
Besides the ghost text, the user sees the chosen route and why in `koma.status` and in the
doctor rows (`koma.doctor`, which `:checkhealth koma` shows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from lsprotocol import types

from koma_sim import Reply, Simulator
from koma_sim.script import RequestRecord, gpt_oss_20b, qwen_coder

SOURCE = "import math\n\ndef area(r):\n    return \n"
CURSOR = types.Position(line=3, character=11)


@pytest.fixture
def llama_fim(start_sim: Callable[..., Simulator]) -> Simulator:
    """llama-server with a FIM model: `/infill` is the route."""
    return start_sim(models=[qwen_coder()], flavor="llamacpp")


@pytest.fixture
def llama_plain(start_sim: Callable[..., Simulator]) -> Simulator:
    """llama-server with a model that has no FIM tokens."""
    return start_sim(models=[gpt_oss_20b()], flavor="llamacpp")


def with_inline(capabilities: types.ClientCapabilities) -> types.ClientCapabilities:
    assert capabilities.text_document is not None
    capabilities.text_document.inline_completion = types.InlineCompletionClientCapabilities(
        dynamic_registration=False
    )
    return capabilities


async def ghost_text(client: Any, uri: str) -> list[str]:
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=CURSOR,
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Invoked
            ),
        )
    )
    items = [] if result is None else result.items
    return [item.insert_text for item in items]


def calls(sim: Simulator, *endpoints: str) -> list[RequestRecord]:
    return [r for r in sim.requests if r.endpoint in endpoints]


async def route_row(client: Any) -> dict[str, Any]:
    report = await client.command("koma.doctor")
    (row,) = [c for c in report["checks"] if c["name"] == "completion route"]
    assert isinstance(row, dict)
    return row


async def test_ollama_model_without_fim_is_continued_raw(
    lsp: Any, sim: Simulator, profile_capabilities: types.ClientCapabilities
) -> None:
    sim.set_default_reply(Reply(content="math.pi * r * r\n\nprint(area(2))"))
    client = await lsp(capabilities=with_inline(profile_capabilities))
    uri = client.open("a.py", SOURCE)
    assert await ghost_text(client, uri) == ["math.pi * r * r"]
    (call,) = calls(sim, "generate", "chat")
    assert call.endpoint == "generate" and call.body["raw"] is True and "suffix" not in call.body
    status = await client.command("koma.status")
    assert status["completionRoute"]["route"] == "raw"
    assert "insert" in status["completionRoute"]["why"]
    row = await route_row(client)
    assert row["data"]["route"] == "raw" and "/api/generate raw" in row["detail"]


async def test_ollama_fim_model_fills_the_middle(
    lsp: Any, sim: Simulator, profile_capabilities: types.ClientCapabilities
) -> None:
    sim.set_default_reply(Reply(content="math.pi * r * r"))
    client = await lsp(
        {"completionModel": "qwen2.5-coder:1.5b"}, capabilities=with_inline(profile_capabilities)
    )
    uri = client.open("a.py", SOURCE + "\nprint(area(2))\n")
    assert await ghost_text(client, uri) == ["math.pi * r * r"]
    (call,) = calls(sim, "generate", "chat")
    assert call.body["suffix"].startswith("\n\nprint(area(2))")
    row = await route_row(client)
    assert row["data"]["route"] == "fim" and row["status"] == "ok"


async def test_llama_server_fim_model_goes_through_infill(
    lsp: Any, llama_fim: Simulator, profile_capabilities: types.ClientCapabilities
) -> None:
    llama_fim.set_default_reply(Reply(content="math.pi * r * r"))
    client = await lsp(
        {"provider": "openai", "baseUrl": f"{llama_fim.url}/v1", "model": "qwen2.5-coder:1.5b"},
        capabilities=with_inline(profile_capabilities),
    )
    client.open("b.py", "def circumference(r):\n    return 2 * math.pi * r\n")
    uri = client.open("a.py", SOURCE)
    assert await ghost_text(client, uri) == ["math.pi * r * r"]
    (call,) = [r for r in calls(llama_fim, "infill") if r.body.get("n_predict")]
    assert call.body["input_prefix"] == "import math\n\ndef area(r):\n"
    assert call.body["prompt"] == "    return "
    assert call.body["input_extra"][0]["filename"] == "b.py"
    assert not calls(llama_fim, "completions", "chat_completions")
    status = await client.command("koma.status")
    assert status["completionRoute"]["endpoint"] == "/infill"


async def test_llama_server_model_without_fim_tokens_is_continued_raw(
    lsp: Any, llama_plain: Simulator, profile_capabilities: types.ClientCapabilities
) -> None:
    llama_plain.set_default_reply(Reply(content="math.pi * r * r\n"))
    client = await lsp(
        {"provider": "openai", "baseUrl": f"{llama_plain.url}/v1", "model": "gpt-oss:20b"},
        capabilities=with_inline(profile_capabilities),
    )
    uri = client.open("a.py", SOURCE)
    assert await ghost_text(client, uri) == ["math.pi * r * r"]
    (call,) = calls(llama_plain, "completions")
    assert call.body["prompt"].endswith("    return ") and call.body["stop"] == ["\n"]
    assert not calls(llama_plain, "chat_completions")
    row = await route_row(client)
    assert row["data"]["route"] == "raw" and "not supported" in row["detail"]


async def test_chat_route_is_capped_by_a_stop_sequence(
    lsp: Any, sim: Simulator, profile_capabilities: types.ClientCapabilities
) -> None:
    sim.set_default_reply(
        Reply(content="<COMPLETION>math.pi * r * r</COMPLETION>" + " chatter" * 200)
    )
    client = await lsp(
        {"completion": {"route": "chat"}}, capabilities=with_inline(profile_capabilities)
    )
    uri = client.open("a.py", SOURCE)
    assert await ghost_text(client, uri) == ["math.pi * r * r"]
    (call,) = calls(sim, "generate", "chat")
    assert call.endpoint == "chat" and call.body["options"]["stop"] == ["</COMPLETION>"]
    assert call.tokens_sent < 40  # nothing after the closing tag was generated
    row = await route_row(client)
    assert row["data"]["route"] == "chat" and "completion.route" in row["detail"]


async def test_recent_places_and_yanked_text_reach_infill_but_secrets_never(
    lsp: Any, llama_fim: Simulator, profile_capabilities: types.ClientCapabilities
) -> None:
    llama_fim.set_default_reply(Reply(content="math.pi * r * r"))
    client = await lsp(
        {
            "provider": "openai",
            "baseUrl": f"{llama_fim.url}/v1",
            "model": "qwen2.5-coder:1.5b",
        },
        capabilities=with_inline(profile_capabilities),
    )
    client.open(".env", "API_TOKEN=super-secret-value\n")
    client.protocol.notify(
        "koma/contextChunk", {"uri": "file:///w/units.py", "text": "TAU = 2 * math.pi\n"}
    )
    client.protocol.notify("koma/contextChunk", {"text": "   "})  # nothing: ignored
    uri = client.open("a.py", SOURCE)
    assert await ghost_text(client, uri) == ["math.pi * r * r"]
    (call,) = [r for r in calls(llama_fim, "infill") if r.body.get("n_predict")]
    extra = call.body["input_extra"]
    assert {"filename": "units.py", "text": "TAU = 2 * math.pi\n"} in extra
    assert "super-secret-value" not in str(call.body)
    # The document being completed is not sent back to the model as "another file".
    assert all(chunk["filename"] != "a.py" for chunk in extra)

"""Management commands end to end: models, model choice, status, cache, lifecycle, doctor."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from lsprotocol import types

from koma_sim import Reply, Simulator, gpt_oss_20b

FIM_MODEL = "qwen2.5-coder:1.5b"


def generations(sim: Simulator) -> list[Any]:
    return [r for r in sim.requests if r.endpoint in ("chat", "generate")]


@pytest.fixture
def openai_sim(start_sim: Callable[..., Simulator]) -> Simulator:
    """A llama.cpp-style OpenAI-compatible server, which cannot load or unload models."""
    return start_sim(models=[gpt_oss_20b()], flavor="llamacpp")


async def test_startup_and_status_never_touch_the_provider(lsp: Any, sim: Simulator) -> None:
    started = time.perf_counter()
    client = await lsp()
    elapsed_ms = (time.perf_counter() - started) * 1000
    print(f"spawn to initialize reply: {elapsed_ms:.0f} ms")
    status = await client.command("koma.status")
    assert status["state"] == "idle"
    assert status["provider"] == "ollama"
    assert status["baseUrl"] == sim.url
    assert sim.requests == []


async def test_models_lists_what_the_server_has(lsp: Any, sim: Simulator) -> None:
    client = await lsp()
    result = await client.command("koma.models")
    by_name = {m["name"]: m for m in result["models"]}
    assert set(by_name) == {"gpt-oss:20b", FIM_MODEL}
    assert by_name["gpt-oss:20b"]["quantization"] == "MXFP4"
    assert by_name["gpt-oss:20b"]["sizeBytes"] > 10**9
    assert result["current"] == {"model": "gpt-oss:20b", "completionModel": None}


async def test_models_with_the_provider_down_reports_an_error(lsp: Any, dead_url: str) -> None:
    client = await lsp(settings={"baseUrl": dead_url})
    result = await client.command("koma.models")
    assert result["models"] == []
    assert dead_url.removeprefix("http://") in result["error"]


async def test_select_model_switches_the_chat_model(lsp: Any, sim: Simulator) -> None:
    client = await lsp()
    assert await client.command("koma.selectModel", {"model": FIM_MODEL}) == {
        "model": FIM_MODEL,
        "completionModel": None,
    }
    await client.command("koma.chat", {"message": "hi"})
    assert generations(sim)[-1].body["model"] == FIM_MODEL
    picked = await client.command("koma.selectModel", {"model": FIM_MODEL, "kind": "completion"})
    assert picked == {"model": FIM_MODEL, "completionModel": FIM_MODEL}
    bad = await client.command("koma.selectModel", {"model": ""})
    assert bad["error"] and bad["model"] == FIM_MODEL


async def test_clear_cache_forgets_cached_answers(lsp: Any, sim: Simulator) -> None:
    client = await lsp(settings={"chat": {"temperature": 0}})  # deterministic: cacheable
    first = await client.command("koma.chat", {"message": "same question"})
    again = await client.command("koma.chat", {"message": "same question"})
    assert again["text"] == first["text"]
    assert len(generations(sim)) == 1  # the second answer came from the cache
    cleared = await client.command("koma.clearCache")
    assert cleared["cleared"] >= 1
    await client.command("koma.chat", {"message": "same question"})
    assert len(generations(sim)) == 2


async def test_clear_cache_also_forgets_inline_suggestions(
    lsp: Any, sim: Simulator, profile_capabilities: types.ClientCapabilities
) -> None:
    assert profile_capabilities.text_document is not None
    profile_capabilities.text_document.inline_completion = (
        types.InlineCompletionClientCapabilities()
    )
    sim.set_default_reply(Reply(content="a + b"))
    client = await lsp(
        settings={"completionModel": FIM_MODEL, "completion": {"debounceMs": 0}},
        capabilities=profile_capabilities,
    )
    uri = client.open("a.py", "def add(a, b):\n    return \n")
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=1, character=11),
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Invoked
        ),
    )

    async def suggest() -> str:
        result = await asyncio.wait_for(client.text_document_inline_completion_async(params), 30)
        items = result.items if isinstance(result, types.InlineCompletionList) else result
        return str(items[0].insert_text)

    assert await suggest() == "a + b"
    assert await suggest() == "a + b"
    assert len(generations(sim)) == 1  # the repeat came from the suggestion cache
    assert (await client.command("koma.clearCache"))["cleared"] >= 1
    assert await suggest() == "a + b"
    assert len(generations(sim)) == 2


async def test_preload_and_unload_with_progress(lsp: Any, sim: Simulator) -> None:
    client = await lsp()
    result = await client.command("koma.preload", {"model": "gpt-oss:20b"})
    assert result["ok"] is True, result
    assert "gpt-oss:20b" in sim.loaded_models()
    [reports] = client.progress_reports.values()
    kinds = [r.kind for r in reports]
    assert kinds[0] == "begin" and kinds[-1] == "end"
    states = [s["state"] for s in client.statuses]
    assert "loading" in states and states[-1] == "idle"
    result = await client.command("koma.unload", {})
    assert result["ok"] is True, result
    assert "gpt-oss:20b" not in sim.loaded_models()


async def test_preload_where_the_server_manages_models_says_so(
    lsp: Any, openai_sim: Simulator
) -> None:
    client = await lsp(settings={"provider": "openai", "baseUrl": openai_sim.openai_url})
    result = await client.command("koma.preload", {"model": "gpt-oss:20b"})
    assert result["ok"] is False
    assert "cannot load" in result["message"]


async def test_preload_on_open_loads_the_model_once(lsp: Any, sim: Simulator) -> None:
    client = await lsp(settings={"preloadOnOpen": True})
    client.open("a.py", "x = 1\n")
    client.open("b.py", "y = 2\n")
    await asyncio.to_thread(sim.wait_for_requests, 1, 30.0, "generate")
    await client.wait_for(
        lambda: client.statuses and client.statuses[-1]["state"] == "idle", "idle"
    )
    assert "gpt-oss:20b" in sim.loaded_models()
    assert len([r for r in sim.requests if r.endpoint == "generate"]) == 1


async def test_doctor_reports_checks(lsp: Any, sim: Simulator) -> None:
    client = await lsp()
    report = await client.command("koma.doctor")
    assert report["provider"] == "ollama"
    names = [c["name"] for c in report["checks"]]
    assert "provider" in names
    assert all(c["status"] in ("ok", "warn", "error") for c in report["checks"])


async def test_doctor_with_the_provider_down_still_answers(lsp: Any, dead_url: str) -> None:
    client = await lsp(settings={"baseUrl": dead_url})
    report = await client.command("koma.doctor")
    [provider] = [c for c in report["checks"] if c["name"] == "provider"]
    assert provider["status"] == "error"
    assert report["ok"] is False

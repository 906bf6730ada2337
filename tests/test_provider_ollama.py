"""OllamaProvider against the loopback simulator (and a canned server for exact wire shapes)."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import aclosing
from typing import Any

import httpx
import pytest

from koma.errors import (
    CapabilityMissing,
    ContextOverflow,
    ModelNotFound,
    ProviderError,
    ProviderTimeout,
    ProviderUnreachable,
    StreamError,
)
from koma.providers.base import ChatRequest, CompletionRequest, WireChunk
from koma.providers.ollama import OllamaProvider
from koma.types import GenerationSettings, Message, ToolCall
from koma_sim import Reply, SimModel, Simulator
from provider_support import Canned, closed_port, collect

VALID_OPTIONS = {
    "num_keep", "seed", "num_predict", "top_k", "top_p", "min_p", "typical_p", "repeat_last_n",
    "temperature", "repeat_penalty", "presence_penalty", "frequency_penalty", "stop", "num_ctx",
    "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread",
}  # fmt: skip

THINKER = SimModel(
    name="qwen3:4b", capabilities=["completion", "tools", "thinking"], family="qwen3"
)
PLAIN = SimModel(name="llama3.2:1b", capabilities=["completion", "tools"], family="llama")


@pytest.fixture
def sim_options() -> dict[str, Any]:
    from koma_sim.script import default_models

    return {"models": [*default_models(), THINKER, PLAIN]}


def chat(model: str, text: str = "hi", **settings: Any) -> ChatRequest:
    return ChatRequest(model, [Message.user(text)], GenerationSettings(**settings))


def last_body(sim: Simulator, endpoint: str) -> dict[str, Any]:
    found = [r for r in sim.requests if r.endpoint == endpoint]
    assert found, f"no {endpoint} request reached the server"
    body = found[-1].body
    assert isinstance(body, dict)
    return body


# -- streaming and channels -------------------------------------------------------------------


async def test_chat_streams_thinking_and_content_separately(
    sim: Simulator, provider: OllamaProvider
) -> None:
    sim.add_reply(Reply(thinking="User greets. Answer briefly.", content="Hello there!"))
    chunks = await collect(provider.chat(chat("gpt-oss:20b", reasoning_effort="high")))
    assert "".join(c.reasoning for c in chunks) == "User greets. Answer briefly."
    assert "".join(c.content for c in chunks) == "Hello there!"
    assert chunks[-1].done and chunks[-1].finish_reason == "stop"
    assert sum(c.done for c in chunks) == 1


async def test_raw_harmony_content_passes_through_untouched(
    sim: Simulator, provider: OllamaProvider
) -> None:
    harmony = (
        "<|channel|>analysis<|message|>think<|end|><|start|>assistant<|channel|>final<|message|>Hi"
    )
    sim.add_reply(Reply(content=harmony))
    chunks = await collect(provider.chat(chat("gpt-oss:20b")))
    assert "".join(c.content for c in chunks) == harmony
    assert all(c.reasoning == "" for c in chunks)


@pytest.mark.parametrize(
    ("model", "effort", "expected"),
    [
        ("gpt-oss:20b", "high", "high"),
        ("gpt-oss:20b", "low", "low"),
        ("gpt-oss:20b", None, None),
        ("qwen3:4b", "medium", True),
        ("qwen3:4b", None, None),
        ("llama3.2:1b", "high", None),
    ],
)
async def test_think_follows_effort_and_model_capabilities(
    sim: Simulator, provider: OllamaProvider, model: str, effort: str | None, expected: Any
) -> None:
    await collect(provider.chat(chat(model, reasoning_effort=effort)))
    body = last_body(sim, "chat")
    assert body.get("think") == expected
    assert ("think" in body) == (expected is not None)


async def test_options_are_valid_ollama_keys_and_num_ctx_is_always_sent(
    sim: Simulator, provider: OllamaProvider
) -> None:
    settings = dict(
        temperature=0.3, top_p=0.9, top_k=40, repeat_penalty=1.1, seed=7, stop=("\n\n",),
        max_tokens=64, num_gpu=99, num_thread=4, main_gpu=0, use_mmap=False,
    )  # fmt: skip
    await collect(provider.chat(chat("gpt-oss:20b", **settings)))
    options = last_body(sim, "chat")["options"]
    assert set(options) <= VALID_OPTIONS
    assert "use_mlock" not in options
    assert options == {
        "temperature": 0.3, "top_p": 0.9, "top_k": 40, "repeat_penalty": 1.1, "seed": 7,
        "stop": ["\n\n"], "num_predict": 64, "num_gpu": 99, "num_thread": 4, "main_gpu": 0,
        "use_mmap": False, "num_ctx": 8192,
    }  # fmt: skip


async def test_num_ctx_comes_from_request_then_provider_then_model(sim: Simulator) -> None:
    small = SimModel(name="tiny:1b", context_length=2048)
    sim.add_model(small)
    p = OllamaProvider(sim.url)
    try:
        await collect(p.chat(chat("tiny:1b")))
        assert last_body(sim, "chat")["options"]["num_ctx"] == 2048  # model allows less
        await collect(p.chat(chat("gpt-oss:20b")))
        assert last_body(sim, "chat")["options"]["num_ctx"] == 8192  # capped default
        await collect(p.chat(chat("gpt-oss:20b", num_ctx=32768)))
        assert last_body(sim, "chat")["options"]["num_ctx"] == 32768
    finally:
        await p.aclose()
    configured = OllamaProvider(sim.url, num_ctx=16384, keep_alive="30m", num_gpu=20)
    try:
        await collect(configured.chat(chat("gpt-oss:20b")))
        body = last_body(sim, "chat")
        assert body["options"]["num_ctx"] == 16384
        assert body["options"]["num_gpu"] == 20
        assert body["keep_alive"] == "30m"
        await collect(configured.chat(chat("gpt-oss:20b", keep_alive=0)))
        assert last_body(sim, "chat")["keep_alive"] == 0
    finally:
        await configured.aclose()


async def test_final_chunk_exposes_prompt_tokens_against_num_ctx(
    sim: Simulator, provider: OllamaProvider
) -> None:
    sim.add_reply(Reply(content="ok", prompt_eval_count=4096))
    chunks = await collect(provider.chat(chat("gpt-oss:20b", num_ctx=4096)))
    final = chunks[-1]
    assert final.raw is not None
    assert final.raw["num_ctx"] == 4096
    assert final.raw["prompt_eval_count"] == 4096
    assert final.usage is not None and final.usage.prompt_tokens == 4096


# -- tools ------------------------------------------------------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


async def test_tools_are_sent_and_tool_calls_parsed_as_objects(
    sim: Simulator, provider: OllamaProvider
) -> None:
    sim.add_reply(
        Reply(
            thinking="Need weather.",
            tool_calls=[{"name": "get_weather", "arguments": {"city": "Tokyo"}}],
        )
    )
    request = ChatRequest("gpt-oss:20b", [Message.user("weather in Tokyo?")], tools=[WEATHER_TOOL])
    chunks = await collect(provider.chat(request))
    calls = [c for chunk in chunks for c in chunk.tool_calls]
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Tokyo"})]
    assert last_body(sim, "chat")["tools"] == [WEATHER_TOOL]


async def test_history_encodes_thinking_tool_calls_and_tool_results(
    sim: Simulator, provider: OllamaProvider
) -> None:
    call = ToolCall("get_weather", {"city": "Tokyo"}, id="c1")
    assistant = Message.assistant("", [call])
    assistant.thinking = "Need weather."
    history = [
        Message.system("be brief"),
        Message.user("weather?"),
        assistant,
        Message.tool('{"temp": 21}', "get_weather", "c1"),
    ]
    await collect(provider.chat(ChatRequest("gpt-oss:20b", history, tools=[WEATHER_TOOL])))
    sent = last_body(sim, "chat")["messages"]
    assert sent[0] == {"role": "system", "content": "be brief"}
    assert sent[2]["thinking"] == "Need weather."
    assert sent[2]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}
    ]
    assert sent[3] == {"role": "tool", "content": '{"temp": 21}', "tool_name": "get_weather"}


# -- completion and models --------------------------------------------------------------------


async def test_fim_completion_sends_prompt_suffix_system_raw(
    sim: Simulator, provider: OllamaProvider
) -> None:
    sim.add_reply(Reply(content="return a + b", endpoint="generate"))
    request = CompletionRequest(
        "qwen2.5-coder:1.5b", "def add(a, b):\n    ", suffix="\n\nprint(add(1, 2))",
        system="complete code", raw=True, settings=GenerationSettings(max_tokens=32),
    )  # fmt: skip
    chunks = await collect(provider.complete(request))
    assert "".join(c.content for c in chunks) == "return a + b"
    body = last_body(sim, "generate")
    assert body["prompt"] == "def add(a, b):\n    "
    assert body["suffix"] == "\n\nprint(add(1, 2))"
    assert body["system"] == "complete code" and body["raw"] is True
    assert body["options"]["num_predict"] == 32 and "num_ctx" in body["options"]
    assert await provider.supports_fim("qwen2.5-coder:1.5b")
    assert not await provider.supports_fim("gpt-oss:20b")


async def test_fim_on_gpt_oss_is_capability_missing(provider: OllamaProvider) -> None:
    request = CompletionRequest("gpt-oss:20b", "def f(", suffix=")")
    with pytest.raises(CapabilityMissing, match="insert"):
        await collect(provider.complete(request))


async def test_show_reads_capabilities_architecture_context_and_is_cached(
    sim: Simulator, provider: OllamaProvider
) -> None:
    details = await provider.show("gpt-oss:20b")
    assert details.architecture == "gptoss"
    assert details.context_length == 131_072
    assert {"tools", "thinking"} <= set(details.capabilities)
    assert details.quantization == "MXFP4"
    assert details.template
    await provider.show("gpt-oss:20b")
    assert len([r for r in sim.requests if r.path == "/api/show"]) == 1


async def test_models_merge_installed_with_loaded_state(
    sim: Simulator, provider: OllamaProvider
) -> None:
    assert await provider.version() == sim.version
    message = await provider.load("gpt-oss:20b", keep_alive="5m")
    assert "gpt-oss:20b" in message
    load_body = last_body(sim, "generate")
    assert load_body["keep_alive"] == "5m" and "prompt" not in load_body
    models = {m.name: m for m in await provider.list_models()}
    assert models["gpt-oss:20b"].loaded is True
    assert models["gpt-oss:20b"].size_vram_bytes
    assert models["gpt-oss:20b"].expires_at
    assert models["qwen2.5-coder:1.5b"].loaded is False
    assert models["gpt-oss:20b"].quantization == "MXFP4"
    assert [m.name for m in await provider.loaded_models()] == ["gpt-oss:20b"]
    await provider.unload("gpt-oss:20b")
    assert last_body(sim, "generate")["keep_alive"] == 0
    assert await provider.loaded_models() == []


# -- metrics ----------------------------------------------------------------------------------


async def test_metrics_come_from_the_server_durations(
    sim: Simulator, provider: OllamaProvider
) -> None:
    sim.add_reply(Reply(content="one two three four five six", token_delay_ms=5))
    chunks = await collect(provider.chat(chat("gpt-oss:20b")))
    metrics = chunks[-1].metrics
    assert metrics is not None and metrics.source == "server"
    assert metrics.tokens_per_second and metrics.tokens_per_second > 0
    assert metrics.total_ms and metrics.total_ms > 0
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens


def ndjson(*objs: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


async def test_nanosecond_durations_become_milliseconds_and_tokens_per_second() -> None:
    final = {
        "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
        "total_duration": 1_500_000_000, "load_duration": 200_000_000,
        "prompt_eval_count": 100, "prompt_eval_duration": 50_000_000,
        "eval_count": 80, "eval_duration": 1_000_000_000,
    }  # fmt: skip
    body = ndjson({"message": {"role": "assistant", "content": "Hi"}, "done": False}, final)
    server = Canned(200, body, "application/x-ndjson")
    p = OllamaProvider(server.url, num_ctx=4096)
    try:
        chunks = await collect(p.chat(chat("m")))
    finally:
        await p.aclose()
        server.close()
    m = chunks[-1].metrics
    assert m is not None
    assert (m.load_ms, m.prompt_ms, m.ttft_ms, m.total_ms) == (200.0, 50.0, 250.0, 1500.0)
    assert m.tokens_per_second == pytest.approx(80.0)
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (100, 80)


# -- errors -----------------------------------------------------------------------------------


async def test_unreachable_server_says_how_to_start_ollama() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    p = OllamaProvider(url, backoff=0.01)
    try:
        with pytest.raises(ProviderUnreachable) as info:
            await collect(p.chat(chat("gpt-oss:20b")))
    finally:
        await p.aclose()
    assert url in info.value.message and "ollama serve" in (info.value.hint or "")
    assert not await OllamaProvider(url).ping()


async def test_missing_model_says_how_to_pull_it(provider: OllamaProvider) -> None:
    with pytest.raises(ModelNotFound) as info:
        await collect(provider.chat(chat("gpt-oss:120b")))
    assert info.value.hint == "`ollama pull gpt-oss:120b`"
    assert info.value.exit_code == 4


@pytest.mark.parametrize(
    ("reply", "error", "check"),
    [
        (Reply(error="registry.ollama.ai/library/llama3.2:1b does not support tools", status=400),
         CapabilityMissing, "does not support tools"),
        (Reply(error="the request exceeds the available context size, try increasing it",
               status=400), ContextOverflow, "context"),
        (Reply(error="error parsing tool call: raw='{\"city\":'", status=500),
         ProviderError, "error parsing tool call"),
    ],
)  # fmt: skip
async def test_http_errors_are_typed(
    sim: Simulator, provider: OllamaProvider, reply: Reply, error: type, check: str
) -> None:
    sim.add_reply(reply)
    with pytest.raises(error, match=check) as info:
        await collect(provider.chat(chat("gpt-oss:20b")))
    if error is ProviderError:
        assert info.value.retryable and info.value.status == 500
    assert len([r for r in sim.requests if r.endpoint == "chat"]) == 1  # never retried


async def test_mid_stream_error_line_with_http_200_is_a_stream_error(
    sim: Simulator, provider: OllamaProvider
) -> None:
    sim.add_reply(
        Reply(content="a b c d e f g h", error="model runner crashed", error_after_tokens=2)
    )
    received: list[WireChunk] = []
    with pytest.raises(StreamError, match="model runner crashed"):
        async for chunk in provider.chat(chat("gpt-oss:20b")):
            received.append(chunk)
    assert "".join(c.content for c in received)  # text before the error was delivered
    assert len([r for r in sim.requests if r.endpoint == "chat"]) == 1  # not retried


async def test_read_timeout_is_provider_timeout(sim: Simulator) -> None:
    sim.add_reply(Reply(content="late", ttft_ms=3000))
    p = OllamaProvider(sim.url, timeout=httpx.Timeout(0.3, connect=2.0))
    try:
        with pytest.raises(ProviderTimeout):
            await collect(p.chat(chat("gpt-oss:20b")))
    finally:
        await p.aclose()


async def test_loading_503_is_retried_before_the_first_byte(
    sim: Simulator, provider: OllamaProvider
) -> None:
    sim.add_reply(Reply(error="server busy, model is loading", status=503, times=2))
    sim.add_reply(Reply(content="ready now"))
    chunks = await collect(provider.chat(chat("gpt-oss:20b")))
    assert "".join(c.content for c in chunks) == "ready now"
    assert len([r for r in sim.requests if r.endpoint == "chat"]) == 3


async def test_refused_connections_are_retried_with_backoff() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    once, thrice = OllamaProvider(url, retries=1), OllamaProvider(url, retries=3, backoff=0.15)
    try:
        start = time.perf_counter()
        with pytest.raises(ProviderUnreachable):
            await once.version()
        single = time.perf_counter() - start
        start = time.perf_counter()
        with pytest.raises(ProviderUnreachable):
            await thrice.version()
        triple = time.perf_counter() - start
    finally:
        await once.aclose()
        await thrice.aclose()
    assert triple >= 0.15 + 0.3 > single


# -- cancellation -----------------------------------------------------------------------------


async def test_closing_the_stream_drops_the_connection_at_once(
    sim: Simulator, provider: OllamaProvider
) -> None:
    sim.add_reply(Reply(content="word " * 400, token_delay_ms=20))
    async with aclosing(provider.chat(chat("gpt-oss:20b"))) as stream:
        async for chunk in stream:
            if chunk.content:
                break
        record = [r for r in sim.requests if r.endpoint == "chat"][-1]
        closed_at = time.perf_counter()
    assert await asyncio.to_thread(sim.wait_for_disconnect, record, 5.0)
    assert record.disconnected_at is not None
    assert record.disconnected_at - closed_at < 0.05
    assert not record.completed


async def test_cancelling_the_task_drops_the_connection(
    sim: Simulator, provider: OllamaProvider
) -> None:
    sim.add_reply(Reply(content="word " * 400, token_delay_ms=20))
    started = asyncio.Event()

    async def consume() -> None:
        async for chunk in provider.chat(chat("gpt-oss:20b")):
            if chunk.content:
                started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    cancelled_at = time.perf_counter()
    record = [r for r in sim.requests if r.endpoint == "chat"][-1]
    assert await asyncio.to_thread(sim.wait_for_disconnect, record, 5.0)
    assert record.disconnected_at is not None and record.disconnected_at - cancelled_at < 0.05

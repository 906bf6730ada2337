"""OpenAICompatProvider against the loopback simulator's OpenAI-compatible flavours."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

import pytest

from koma.errors import (
    ContextOverflow,
    ModelNotFound,
    ProviderError,
    ProviderUnreachable,
    StreamError,
)
from koma.providers.base import ChatRequest, CompletionRequest, WireChunk
from koma.providers.openai_compat import OpenAICompatProvider, normalize_v1_url
from koma.types import GenerationSettings, Message, ToolCall
from koma_sim import Reply, Simulator
from provider_support import Canned, closed_port, collect, sse

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture(params=["llamacpp", "vllm", "lmstudio", "ollama"])
def sim_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Every test here runs against each OpenAI-compatible flavour."""
    return {"flavor": request.param}


@pytest.fixture
def llama_sim(start_sim: Callable[..., Simulator]) -> Simulator:
    return start_sim(flavor="llamacpp")


def chat(model: str = "gpt-oss:20b", text: str = "hi", **settings: Any) -> ChatRequest:
    return ChatRequest(model, [Message.user(text)], GenerationSettings(**settings))


def last(sim: Simulator, endpoint: str) -> Any:
    found = [r for r in sim.requests if r.endpoint == endpoint]
    assert found, f"no {endpoint} request reached the server"
    return found[-1]


# -- streaming, reasoning, tools --------------------------------------------------------------


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
async def test_both_reasoning_fields_become_wire_reasoning(sim: Simulator, field: str) -> None:
    sim.add_reply(Reply(thinking="Greeting; reply.", content="Hello!", reasoning_field=field))
    p = OpenAICompatProvider(sim.openai_url)
    try:
        chunks = await collect(p.chat(chat()))
    finally:
        await p.aclose()
    assert "".join(c.reasoning for c in chunks) == "Greeting; reply."
    assert "".join(c.content for c in chunks) == "Hello!"
    assert chunks[-1].done and chunks[-1].finish_reason == "stop"


async def test_streamed_tool_call_fragments_are_assembled(sim: Simulator) -> None:
    args = {"city": "Tokyo", "units": "metric", "days": 3}
    sim.add_reply(
        Reply(
            tool_calls=[
                {"name": "get_weather", "arguments": args},
                {"name": "get_time", "arguments": {"tz": "Asia/Tokyo"}},
            ],
            tool_call_fragments=4,
        )
    )
    p = OpenAICompatProvider(sim.openai_url)
    try:
        chunks = await collect(
            p.chat(ChatRequest("gpt-oss:20b", [Message.user("x")], tools=[WEATHER_TOOL]))
        )
    finally:
        await p.aclose()
    calls = [c for chunk in chunks for c in chunk.tool_calls]
    assert [(c.name, c.arguments) for c in calls] == [
        ("get_weather", args),
        ("get_time", {"tz": "Asia/Tokyo"}),
    ]
    assert all(c.id for c in calls)
    assert chunks[-1].finish_reason == "tool_calls"
    assert last(sim, "chat_completions").body["tools"] == [WEATHER_TOOL]


async def test_request_body_carries_effort_samplers_and_usage_flag(llama_sim: Simulator) -> None:
    p = OpenAICompatProvider(llama_sim.openai_url, preset="llamacpp")
    settings = dict(
        reasoning_effort="high", max_tokens=50, temperature=0.2, top_p=0.8, seed=3, stop=("END",)
    )
    try:
        await collect(p.chat(chat(**settings)))
    finally:
        await p.aclose()
    body = last(llama_sim, "chat_completions").body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["reasoning_effort"] == "high"
    assert body["chat_template_kwargs"] == {"reasoning_effort": "high"}
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (
        50,
        0.2,
        0.8,
        3,
    )
    assert body["stop"] == ["END"]


async def test_generic_server_gets_no_llama_cpp_keys(sim: Simulator) -> None:
    p = OpenAICompatProvider(sim.openai_url)
    try:
        await collect(p.chat(chat(reasoning_effort="low")))
    finally:
        await p.aclose()
    body = last(sim, "chat_completions").body
    assert body["reasoning_effort"] == "low" and "chat_template_kwargs" not in body
    assert "max_tokens" not in body and "temperature" not in body


def test_openai_cloud_uses_max_completion_tokens_and_no_local_samplers() -> None:
    p = OpenAICompatProvider("https://api.openai.com/v1", api_key="k")
    assert p.preset == "openai"
    out = p.sampling(GenerationSettings(max_tokens=10, top_k=5, repeat_penalty=1.2))
    assert out == {"max_completion_tokens": 10}


async def test_history_encodes_tool_calls_as_json_text_and_results_by_id(sim: Simulator) -> None:
    call = ToolCall("get_weather", {"city": "Tokyo"}, id="call_9")
    history = [
        Message.user("weather?"),
        Message.assistant("", [call]),
        Message.tool('{"temp": 21}', "get_weather", "call_9"),
    ]
    p = OpenAICompatProvider(sim.openai_url)
    try:
        await collect(p.chat(ChatRequest("gpt-oss:20b", history, tools=[WEATHER_TOOL])))
    finally:
        await p.aclose()
    sent = last(sim, "chat_completions").body["messages"]
    assert sent[1]["tool_calls"] == [
        {"id": "call_9", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Tokyo"}'}}
    ]  # fmt: skip
    assert sent[2]["role"] == "tool" and sent[2]["tool_call_id"] == "call_9"
    assert sent[2]["content"] == '{"temp": 21}'


async def test_api_key_is_sent_as_bearer_only_when_passed(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settings decide which URL may get KOMA_API_KEY; the provider never reads it itself."""
    p = OpenAICompatProvider(sim.openai_url, api_key="sk-arg")
    try:
        await collect(p.chat(chat()))
    finally:
        await p.aclose()
    headers = {k.lower(): v for k, v in last(sim, "chat_completions").headers.items()}
    assert headers["authorization"] == "Bearer sk-arg"
    monkeypatch.setenv("KOMA_API_KEY", "sk-env")
    p = OpenAICompatProvider(sim.openai_url)
    try:
        await collect(p.chat(chat()))
    finally:
        await p.aclose()
    headers = {k.lower(): v for k, v in last(sim, "chat_completions").headers.items()}
    assert "authorization" not in headers


async def test_completion_sends_prompt_and_suffix(llama_sim: Simulator) -> None:
    llama_sim.add_reply(Reply(content="a + b", endpoint="completions"))
    p = OpenAICompatProvider(llama_sim.openai_url, preset="llamacpp")
    request = CompletionRequest(
        "qwen2.5-coder:1.5b",
        "def add(a, b):\n    return ",
        suffix="\n",
        settings=GenerationSettings(max_tokens=8),
    )
    try:
        chunks = await collect(p.complete(request))
        assert await p.supports_fim("qwen2.5-coder:1.5b")
    finally:
        await p.aclose()
    assert "".join(c.content for c in chunks) == "a + b"
    body = last(llama_sim, "completions").body
    assert body["prompt"] == "def add(a, b):\n    return " and body["suffix"] == "\n"
    assert body["max_tokens"] == 8


async def test_models_come_from_v1_models(sim: Simulator) -> None:
    p = OpenAICompatProvider(sim.openai_url)
    try:
        names = {m.name for m in await p.list_models()}
        assert await p.ping()
    finally:
        await p.aclose()
    assert {"gpt-oss:20b", "qwen2.5-coder:1.5b"} <= names


# -- metrics ----------------------------------------------------------------------------------


async def test_llama_cpp_timings_become_server_metrics(llama_sim: Simulator) -> None:
    llama_sim.add_reply(Reply(content="one two three four", token_delay_ms=5))
    p = OpenAICompatProvider(llama_sim.openai_url, preset="llamacpp")
    try:
        chunks = await collect(p.chat(chat()))
    finally:
        await p.aclose()
    final = chunks[-1]
    assert final.metrics is not None and final.metrics.source == "server"
    assert final.metrics.tokens_per_second and final.metrics.tokens_per_second > 0
    assert final.usage is not None and final.usage.completion_tokens


async def run_canned(
    body: bytes, status: int = 200, ctype: str = "text/event-stream"
) -> list[WireChunk]:
    server = Canned(status, body, ctype, suffix="/v1")
    p = OpenAICompatProvider(server.url, preset="llamacpp", retries=1)
    try:
        return await collect(p.chat(chat()))
    finally:
        await p.aclose()
        server.close()


async def test_timings_cache_n_and_usage_details_are_read() -> None:
    chunks = await run_canned(
        sse(
            {"choices": [{"index": 0, "delta": {"content": "Hi"}}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
             "timings": {"prompt_n": 10, "prompt_ms": 40.0, "predicted_n": 20,
                         "predicted_ms": 400.0, "predicted_per_second": 50.0, "cache_n": 90}},
            {"choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 20}},
            "[DONE]",
        )
    )  # fmt: skip
    final = chunks[-1]
    assert final.metrics is not None
    assert (final.metrics.ttft_ms, final.metrics.tokens_per_second, final.metrics.total_ms) == (
        40.0, 50.0, 440.0,
    )  # fmt: skip
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (100, 20)
    assert final.usage.cached_tokens == 90


async def test_invalid_tool_arguments_stay_raw_text() -> None:
    chunks = await run_canned(
        sse(
            {"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "id": "c1", "type": "function",
                 "function": {"name": "f", "arguments": ""}}]}}]},
            {"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "function": {"arguments": "{\"a\": 1,"}}]}}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
            "[DONE]",
        )
    )  # fmt: skip
    calls = chunks[-1].tool_calls
    assert [(c.id, c.name, c.arguments) for c in calls] == [("c1", "f", '{"a": 1,')]


async def test_sse_error_event_with_http_200_is_a_stream_error() -> None:
    body = sse({"choices": [{"index": 0, "delta": {"content": "par"}}]}) + (
        b'event: error\ndata: {"error": {"message": "slot crashed", "code": 500}}\n\n'
    )
    with pytest.raises(StreamError, match="slot crashed"):
        await run_canned(body)


async def test_stream_cut_without_finish_is_a_stream_error() -> None:
    with pytest.raises(StreamError):
        await run_canned(sse({"choices": [{"index": 0, "delta": {"content": "par"}}]}))


async def test_json_error_body_with_http_200_is_never_text() -> None:
    with pytest.raises(ModelNotFound):
        await run_canned(b'{"error": "model \\"x\\" not found"}', ctype="application/json")


# -- errors -----------------------------------------------------------------------------------


async def test_unreachable_server_names_the_url() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    p = OpenAICompatProvider(url, backoff=0.01)
    try:
        with pytest.raises(ProviderUnreachable) as info:
            await collect(p.chat(chat()))
        assert not await p.ping()
    finally:
        await p.aclose()
    assert info.value.hint == f"is the server running at {url}?"


async def test_unknown_model_is_model_not_found(llama_sim: Simulator) -> None:
    llama_sim.add_reply(Reply(error="model 'nope' not found", status=404))
    p = OpenAICompatProvider(llama_sim.openai_url)
    try:
        with pytest.raises(ModelNotFound):
            await collect(p.chat(chat("nope")))
    finally:
        await p.aclose()


async def test_context_overflow_is_typed(llama_sim: Simulator) -> None:
    message = "the request exceeds the available context size, try increasing it"
    llama_sim.add_reply(Reply(error=message, status=400))
    p = OpenAICompatProvider(llama_sim.openai_url)
    try:
        with pytest.raises(ContextOverflow, match="exceeds the available context size"):
            await collect(p.chat(chat()))
    finally:
        await p.aclose()


async def test_unauthorized_says_to_set_the_api_key(llama_sim: Simulator) -> None:
    llama_sim.add_reply(Reply(error="Invalid API Key", status=401))
    p = OpenAICompatProvider(llama_sim.openai_url)
    try:
        with pytest.raises(ProviderError) as info:
            await collect(p.chat(chat()))
    finally:
        await p.aclose()
    assert "KOMA_API_KEY" in (info.value.hint or "") and info.value.status == 401


async def test_mid_stream_error_is_not_retried(llama_sim: Simulator) -> None:
    llama_sim.add_reply(Reply(content="a b c d e f", error="decode failed", error_after_tokens=2))
    p = OpenAICompatProvider(llama_sim.openai_url, backoff=0.01)
    try:
        with pytest.raises(StreamError, match="decode failed"):
            await collect(p.chat(chat()))
    finally:
        await p.aclose()
    assert len([r for r in llama_sim.requests if r.endpoint == "chat_completions"]) == 1


async def test_closing_the_stream_drops_the_connection_at_once(sim: Simulator) -> None:
    sim.add_reply(Reply(content="word " * 400, token_delay_ms=20))
    p = OpenAICompatProvider(sim.openai_url)
    try:
        async with aclosing(p.chat(chat())) as stream:
            async for chunk in stream:
                if chunk.content:
                    break
            closed_at = time.perf_counter()
        record = last(sim, "chat_completions")
        assert await asyncio.to_thread(sim.wait_for_disconnect, record, 5.0)
    finally:
        await p.aclose()
    assert record.disconnected_at is not None and record.disconnected_at - closed_at < 0.05
    assert not record.completed


# -- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://localhost:1234", "http://localhost:1234/v1"),
        ("http://localhost:1234/", "http://localhost:1234/v1"),
        ("http://localhost:1234/v1/", "http://localhost:1234/v1"),
        ("https://proxy.example/openai/v1", "https://proxy.example/openai/v1"),
        ("http://localhost:8080/custom", "http://localhost:8080/custom"),
    ],
)
def test_bare_server_urls_get_v1_and_explicit_paths_are_kept(given: str, expected: str) -> None:
    assert normalize_v1_url(given) == expected

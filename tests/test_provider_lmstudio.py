"""LMStudioProvider: native model list, load/unload, stats, and LM Studio's HTTP-200 errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from koma.errors import CapabilityMissing, KomaError, ProviderUnreachable
from koma.providers.base import ChatRequest
from koma.providers.lmstudio import LMStudioProvider
from koma.types import Message
from koma_sim import Reply, Simulator
from provider_support import Canned, closed_port, collect, sse

QUIRK = b'{"error": "Unexpected endpoint or method. (POST /api/v1/models/load)"}'


@pytest.fixture
def sim_options() -> dict[str, Any]:
    return {"flavor": "lmstudio"}


@pytest.fixture
def provider_options() -> dict[str, Any]:
    return {"context_length": 8192}


def chat(model: str = "gpt-oss:20b") -> ChatRequest:
    return ChatRequest(model, [Message.user("hi")])


async def test_native_list_has_state_context_and_quantization(
    sim: Simulator, provider: LMStudioProvider
) -> None:
    models = {m.name: m for m in await provider.list_models()}
    assert {"gpt-oss:20b", "qwen2.5-coder:1.5b"} <= set(models)
    gpt = models["gpt-oss:20b"]
    assert gpt.loaded is False
    assert gpt.context_length == 131_072
    assert gpt.quantization == "MXFP4"
    assert any(r.path == "/api/v0/models" for r in sim.requests)


async def test_load_and_unload_through_the_native_api(
    sim: Simulator, provider: LMStudioProvider
) -> None:
    message = await provider.load("gpt-oss:20b")
    assert "gpt-oss:20b" in message
    load = next(r for r in sim.requests if r.path == "/api/v1/models/load")
    assert load.body == {"model": "gpt-oss:20b", "context_length": 8192}
    assert [m.name for m in await provider.loaded_models()] == ["gpt-oss:20b"]
    await provider.unload("gpt-oss:20b")
    unload = next(r for r in sim.requests if r.path == "/api/v1/models/unload")
    assert unload.body == {"instance_id": "gpt-oss:20b"}
    assert await provider.loaded_models() == []


async def test_reasoning_field_and_content_stream(
    sim: Simulator, provider: LMStudioProvider
) -> None:
    sim.add_reply(Reply(thinking="Think.", content="Hi!", reasoning_field="reasoning"))
    chunks = await collect(provider.chat(chat()))
    assert "".join(c.reasoning for c in chunks) == "Think."
    assert "".join(c.content for c in chunks) == "Hi!"


async def test_load_on_a_server_without_the_api_is_capability_missing() -> None:
    server = Canned(200, QUIRK, suffix="/v1")
    p = LMStudioProvider(server.url, retries=1)
    try:
        with pytest.raises(CapabilityMissing) as info:
            await p.load("gpt-oss:20b")
    finally:
        await p.aclose()
        server.close()
    assert "/api/v1/models/load" in info.value.message
    assert "lms load" in (info.value.hint or "")


async def test_http_200_error_body_on_chat_is_an_error_not_text() -> None:
    server = Canned(200, b'{"error": "No models loaded. Please load a model first."}', suffix="/v1")
    p = LMStudioProvider(server.url, retries=1)
    try:
        with pytest.raises(KomaError, match="No models loaded"):
            await collect(p.chat(chat()))
    finally:
        await p.aclose()
        server.close()


async def test_model_list_falls_back_to_v1_when_native_is_missing() -> None:
    body = json.dumps({"object": "list", "data": [{"id": "gpt-oss-20b", "object": "model"}]})
    server = Canned(200, body.encode(), suffix="/v1")
    p = LMStudioProvider(server.url, retries=1)
    try:
        # The same body answers both paths; without a native "state" the loaded state is unknown.
        models = await p.list_models()
    finally:
        await p.aclose()
        server.close()
    assert [(m.name, m.loaded) for m in models] == [("gpt-oss-20b", None)]


async def test_quirk_on_both_model_lists_is_an_error() -> None:
    server = Canned(
        200,
        b'{"error": "Unexpected endpoint or method. (GET /api/v0/models)"}',
        suffix="/v1",
    )
    p = LMStudioProvider(server.url, retries=1)
    try:
        with pytest.raises(KomaError, match="Unexpected endpoint"):
            await p.list_models()  # both endpoints answer with the quirk: still an error
    finally:
        await p.aclose()
        server.close()
    assert server.paths == ["/api/v0/models", "/v1/models"]


async def test_stats_become_server_metrics() -> None:
    events = [
        {"choices": [{"index": 0, "delta": {"content": "Hi"}}]},
        {
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "stats": {
                "tokens_per_second": 42.5,
                "time_to_first_token": 0.12,
                "generation_time": 0.5,
            },
        },
        "[DONE]",
    ]
    server = Canned(200, sse(*events), "text/event-stream", suffix="/v1")
    p = LMStudioProvider(server.url, retries=1)
    try:
        chunks = await collect(p.chat(chat()))
    finally:
        await p.aclose()
        server.close()
    m = chunks[-1].metrics
    assert m is not None and m.source == "server"
    assert m.tokens_per_second == 42.5
    assert m.ttft_ms == pytest.approx(120.0) and m.total_ms == pytest.approx(620.0)


async def test_unreachable_lm_studio_says_how_to_start_it() -> None:
    port = closed_port()
    p = LMStudioProvider(f"http://127.0.0.1:{port}", backoff=0.01)
    try:
        with pytest.raises(ProviderUnreachable) as info:
            await p.list_models()
    finally:
        await p.aclose()
    assert "lms server start" in (info.value.hint or "")
    assert p.base_url == f"http://127.0.0.1:{port}/v1"

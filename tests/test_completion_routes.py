"""Inline-completion routes per model: FIM, raw continuation, capped chat — over real HTTP.

Each server kind is the loopback simulator speaking its documented wire: Ollama `/api/generate`
(with `suffix`, or `raw: true`), llama-server `/props` + `/infill`, an OpenAI-compatible
`/v1/completions`. What is asserted is what reaches the server and what the user would see.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from koma.engine.completion.model_call import Streams, default_streams, stream_text
from koma.engine.completion.pipeline import CompletionInput, CompletionPipeline, ModelTarget
from koma.engine.completion.postprocess import CursorContext
from koma.engine.completion.prompt import Neighbour, build_prompt
from koma.engine.completion.routes import RouteChoice, choose_route
from koma.engine.doctor import run_doctor
from koma.providers.base import Provider
from koma.providers.openai_compat import OpenAICompatProvider
from koma.settings import CompletionSettings, KomaSettings
from koma_sim import Reply, Simulator
from koma_sim.script import RequestRecord, gpt_oss_20b, qwen_coder

URI = "file:///w/a.py"


@pytest.fixture
def llama_fim_sim(start_sim: Callable[..., Simulator]) -> Simulator:
    return start_sim(models=[qwen_coder()], flavor="llamacpp")


@pytest.fixture
def llama_plain_sim(start_sim: Callable[..., Simulator]) -> Simulator:
    return start_sim(models=[gpt_oss_20b()], flavor="llamacpp")


@pytest.fixture
def vllm_sim(start_sim: Callable[..., Simulator]) -> Simulator:
    return start_sim(models=[gpt_oss_20b()], flavor="vllm")


def pipeline_for(provider: Provider, model: str, **settings: object) -> CompletionPipeline:
    async def target() -> ModelTarget:
        return ModelTarget(provider, model)

    current = CompletionSettings(**settings)  # type: ignore[arg-type]
    return CompletionPipeline(target, lambda: current)


def model_calls(sim: Simulator) -> list[RequestRecord]:
    wanted = ("generate", "chat", "infill", "completions", "chat_completions")
    return [r for r in sim.requests if r.endpoint in wanted and r.body]


async def ask(pipeline: CompletionPipeline, prefix: str, suffix: str = "\n") -> str | None:
    result = await pipeline.complete(CompletionInput(URI, prefix, suffix, invoked=True))
    return result.text


# -- Ollama ------------------------------------------------------------------------------------


async def test_ollama_fim_model_gets_the_suffix(sim: Simulator, provider: Provider) -> None:
    sim.set_default_reply(Reply(content="a + b"))
    pipeline = pipeline_for(provider, "qwen2.5-coder:1.5b")
    assert await ask(pipeline, "def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n") == "a + b"
    (call,) = model_calls(sim)
    assert call.endpoint == "generate" and call.body["suffix"].startswith("\n\nprint")
    assert not call.body.get("raw")
    assert pipeline.last_route is not None and pipeline.last_route[1].route == "fim"


async def test_ollama_model_without_fim_continues_the_prefix_raw(
    sim: Simulator, provider: Provider
) -> None:
    # gpt-oss has no `insert`: a raw prompt, no chat, no suffix, stopped at the line end.
    sim.set_default_reply(Reply(thinking="never shown", content="a + b\nprint('x')"))
    pipeline = pipeline_for(provider, "gpt-oss:20b")
    assert await ask(pipeline, "def add(a, b):\n    return ") == "a + b"
    (call,) = model_calls(sim)
    assert call.endpoint == "generate" and call.body["raw"] is True
    assert "suffix" not in call.body and call.body["prompt"].endswith("    return ")
    assert call.body["options"]["stop"] == ["\n"]
    assert call.body["options"]["num_predict"] <= 64


async def test_the_route_override_asks_for_the_hole_filler_with_a_stop(
    sim: Simulator, provider: Provider
) -> None:
    sim.set_default_reply(
        Reply(thinking="Sum.", content="<COMPLETION>a + b</COMPLETION> and then some chatter")
    )
    pipeline = pipeline_for(provider, "gpt-oss:20b", route="chat")
    assert await ask(pipeline, "def add(a, b):\n    return ") == "a + b"
    (call,) = model_calls(sim)
    assert call.endpoint == "chat" and call.body["think"] == "low"
    assert call.body["options"]["stop"] == ["</COMPLETION>"]
    # The server stopped at the stop sequence: the chatter after it was never generated.
    assert call.tokens_sent < 12


# -- llama-server ------------------------------------------------------------------------------


async def test_llama_server_fim_model_goes_to_infill_with_its_extras(
    llama_fim_sim: Simulator,
) -> None:
    llama_fim_sim.set_default_reply(Reply(content="    return math.pi * r * r\n"))
    provider = OpenAICompatProvider(f"{llama_fim_sim.url}/v1", backoff=0.01)
    try:
        pipeline = pipeline_for(provider, "qwen2.5-coder:1.5b")
        other = Neighbour("file:///w/geometry.py", "import math\n\ndef circle_area(r):\n    pass\n")
        prefix = "import math\n\ndef circle_area(r):\n"
        result = await pipeline.complete(
            CompletionInput(URI, prefix, "\n", invoked=True, neighbours=(other,))
        )
        assert result.text == "    return math.pi * r * r" and result.route == "fim"
    finally:
        await provider.aclose()
    infills = [r for r in llama_fim_sim.requests if r.endpoint == "infill"]
    probe, call = infills
    assert probe.body["n_predict"] == 0  # detection: a zero-token infill
    body = call.body
    assert body["input_prefix"] == prefix and body["prompt"] == ""
    assert body["input_suffix"] == "\n" and body["cache_prompt"] is True
    assert body["input_extra"] == [{"filename": "geometry.py", "text": other.text.strip() + "\n"}]
    assert body["n_indent"] == 0 and body["t_max_predict_ms"] > 0
    assert not [r for r in llama_fim_sim.requests if r.endpoint == "completions"]


async def test_infill_sends_the_cursor_line_apart_from_the_lines_above(
    llama_fim_sim: Simulator,
) -> None:
    llama_fim_sim.set_default_reply(Reply(content="b"))
    provider = OpenAICompatProvider(f"{llama_fim_sim.url}/v1", backoff=0.01)
    try:
        pipeline = pipeline_for(provider, "qwen2.5-coder:1.5b")
        await ask(pipeline, "def add(a, b):\n    return a + ")
        await ask(pipeline, "def add(a, b):\n    return a - ")
    finally:
        await provider.aclose()
    calls = [r for r in llama_fim_sim.requests if r.endpoint == "infill" and r.body["n_predict"]]
    assert [c.body["input_prefix"] for c in calls] == ["def add(a, b):\n"] * 2
    assert [c.body["prompt"] for c in calls] == ["    return a + ", "    return a - "]


async def test_llama_server_model_without_fim_tokens_is_completed_raw(
    llama_plain_sim: Simulator,
) -> None:
    llama_plain_sim.set_default_reply(Reply(content="total + 1\n    return total"))
    provider = OpenAICompatProvider(f"{llama_plain_sim.url}/v1", backoff=0.01)
    try:
        choice = await choose_route(provider, "gpt-oss:20b")
        assert choice.route == "raw" and "/infill refused" in choice.why
        assert "not supported" in choice.why
        pipeline = pipeline_for(provider, "gpt-oss:20b")
        assert await ask(pipeline, "total = total + 1\ntotal = ") == "total + 1"
    finally:
        await provider.aclose()
    (call,) = [r for r in llama_plain_sim.requests if r.endpoint == "completions"]
    assert call.body["prompt"].endswith("total = ") and "suffix" not in call.body
    assert call.body["stop"] == ["\n"]


async def test_an_openai_compatible_server_without_props_is_completed_raw(
    vllm_sim: Simulator,
) -> None:
    vllm_sim.set_default_reply(Reply(content="range(10):"))
    provider = OpenAICompatProvider(f"{vllm_sim.url}/v1", backoff=0.01)
    try:
        pipeline = pipeline_for(provider, "gpt-oss:20b")
        assert await ask(pipeline, "for i in ") == "range(10):"
    finally:
        await provider.aclose()
    assert [r.endpoint for r in model_calls(vllm_sim)] == ["completions"]


async def test_the_openai_cloud_preset_is_chat_only() -> None:
    provider = OpenAICompatProvider("http://127.0.0.1:9/v1", preset="openai", api_key="k")
    try:
        choice = await choose_route(provider, "gpt-4.1")
    finally:
        await provider.aclose()
    assert choice.route == "chat" and "chat only" in choice.why


# -- caps --------------------------------------------------------------------------------------


async def test_a_model_that_never_stops_is_closed_at_the_time_cap(
    sim: Simulator, provider: Provider
) -> None:
    # A hole-filler answer that never closes its tag, one token every 50 ms for a minute.
    sim.set_default_reply(Reply(content="<COMPLETION>" + "x = 1 " * 1200, token_delay_ms=50))
    parts = build_prompt("y = ", "\n", prefix_tokens=256, suffix_tokens=64)
    ctx = CursorContext.from_text("y = ", "\n")
    streams: Streams = default_streams()
    started = time.perf_counter()
    text = await stream_text(
        ModelTarget(provider, "gpt-oss:20b"),
        RouteChoice("chat", "test", "chat"),
        parts,
        ctx,
        CompletionSettings(max_tokens=4096),
        streams,
        time_cap_s=0.6,
    )
    assert time.perf_counter() - started < 3.0
    assert text.startswith("<COMPLETION>x = 1")
    await asyncio.sleep(0.2)
    (call,) = model_calls(sim)
    assert call.client_disconnected  # the server was told to stop


async def test_doctor_names_the_route_and_why(
    llama_plain_sim: Simulator, llama_fim_sim: Simulator
) -> None:
    for sim, route in ((llama_plain_sim, "raw"), (llama_fim_sim, "fim")):
        settings = KomaSettings(provider="openai", base_url=f"{sim.url}/v1")
        provider = OpenAICompatProvider(f"{sim.url}/v1", backoff=0.01)
        try:
            report = await run_doctor(settings, provider)
        finally:
            await provider.aclose()
        (row,) = [c for c in report.checks if c.name == "completion route"]
        assert row.data["route"] == route, row.detail
        assert ("/infill" in row.detail) and row.status == "ok"


# -- first line first --------------------------------------------------------------------------


async def test_first_line_is_answered_before_the_block_ends_and_the_rest_is_cached(
    sim: Simulator, provider: Provider
) -> None:
    # A slow model: ~40 tokens at 60 ms each would take 2.4 s to finish the block.
    block = "total = 0\n    for x in xs:\n        total += x\n    return total\n\nprint(1)"
    sim.set_default_reply(Reply(content=block, token_delay_ms=60))
    pipeline = pipeline_for(provider, "qwen2.5-coder:1.5b")
    prefix, suffix = "def total(xs):\n    ", "\n"
    started = time.perf_counter()
    first = await pipeline.complete(CompletionInput(URI, prefix, suffix, invoked=True))
    answered_s = time.perf_counter() - started
    assert first.text == "total = 0" and first.source == "model"
    (call,) = model_calls(sim)
    assert not call.completed  # the block was still being generated when the editor got its line
    # Tab: the first line is in the document; the next line comes from the cache, no new call.
    accepted = prefix + "total = 0"
    for _ in range(100):
        if pipeline.stats.blocks_after_first_line:
            break
        await asyncio.sleep(0.05)
    after_tab = await pipeline.complete(CompletionInput(URI, accepted, suffix))
    assert after_tab.source == "cache"
    assert after_tab.text == "\n    for x in xs:\n        total += x\n    return total"
    assert len(model_calls(sim)) == 1
    assert answered_s < 2.0


async def test_a_block_still_streaming_is_closed_when_the_user_moves_elsewhere(
    sim: Simulator, provider: Provider
) -> None:
    sim.set_default_reply(Reply(content="a = 1\n" + "    b = 2\n" * 60, token_delay_ms=80))
    pipeline = pipeline_for(provider, "qwen2.5-coder:1.5b")
    first = await pipeline.complete(CompletionInput(URI, "def f():\n    ", "\n", invoked=True))
    assert first.text == "a = 1"
    (call,) = model_calls(sim)
    # The user types somewhere else in the document: the block's stream is shut.
    sim.set_default_reply(Reply(content="0"))
    await pipeline.complete(CompletionInput(URI, "x = ", "\n\ndef f():\n    \n", invoked=True))
    assert await asyncio.to_thread(sim.wait_for_disconnect, call, 5.0)


async def test_infill_reports_the_prompt_cache_reuse(llama_fim_sim: Simulator) -> None:
    from koma.engine.stream import collect, stream_completion_events
    from koma.providers.base import CompletionRequest, InfillOptions
    from koma.types import GenerationSettings

    llama_fim_sim.set_default_reply(Reply(content="x"))
    provider = OpenAICompatProvider(f"{llama_fim_sim.url}/v1", backoff=0.01)
    usages = []
    try:
        for typed in ("a", "ab"):
            request = CompletionRequest(
                "qwen2.5-coder:1.5b",
                prompt="import os\n" * 40 + typed,
                suffix="\n",
                settings=GenerationSettings(max_tokens=4),
                infill=InfillOptions(extra=(("b.py", "y = 2\n"),)),
            )
            usages.append((await collect(stream_completion_events(provider, request))).usage)
    finally:
        await provider.aclose()
    first, second = usages
    assert first.cached_tokens == 0 and second.prompt_tokens
    assert second.cached_tokens is not None and second.cached_tokens / second.prompt_tokens > 0.8


# -- speculative next suggestion ---------------------------------------------------------------


async def test_the_suggestion_after_an_acceptance_is_fetched_ahead(
    sim: Simulator, provider: Provider
) -> None:
    sim.add_reply(Reply(content="    total = 0", times=1))
    sim.set_default_reply(Reply(content="for x in xs:"))
    pipeline = pipeline_for(provider, "qwen2.5-coder:1.5b", speculative=True, multiline="never")
    prefix, suffix = "def total(xs):\n", "\n    return 0\n"
    first = await pipeline.complete(CompletionInput(URI, prefix, suffix, invoked=True))
    assert first.text == "    total = 0"
    for _ in range(100):  # the speculative call runs in the background
        if len(model_calls(sim)) == 2 and model_calls(sim)[1].completed:
            break
        await asyncio.sleep(0.05)
    speculative = model_calls(sim)[1]
    assert speculative.body["prompt"].endswith("    total = 0")
    # Tab, then the editor asks at the end of the accepted text: no new model call.
    after = await pipeline.complete(CompletionInput(URI, prefix + "    total = 0", suffix))
    assert after.source == "cache" and len(model_calls(sim)) == 2
    assert pipeline.stats.speculative == 1


async def test_a_speculative_call_is_closed_when_the_user_types_something_else(
    sim: Simulator, provider: Provider
) -> None:
    sim.add_reply(Reply(content="a + b", times=1))
    sim.set_default_reply(Reply(content=" # slow" * 200, token_delay_ms=50))
    pipeline = pipeline_for(provider, "qwen2.5-coder:1.5b", speculative=True)
    first = await pipeline.complete(CompletionInput(URI, "x = ", "\n", invoked=True))
    assert first.text == "a + b"
    record = await asyncio.to_thread(sim.wait_for_requests, 3, 10.0, None)
    speculative = [r for r in record if r.endpoint == "generate" and r.body][-1]
    assert speculative.body["prompt"].endswith("x = a + b")
    # The user typed something other than the suggestion: the speculative stream is shut.
    sim.set_default_reply(Reply(content="1"))
    await pipeline.complete(CompletionInput(URI, "x = 4", "\n", invoked=True))
    assert await asyncio.to_thread(sim.wait_for_disconnect, speculative, 5.0)

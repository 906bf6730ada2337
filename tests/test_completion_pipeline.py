"""The completion pipeline in-process, against the loopback simulator (no pygls involved)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from koma.engine.completion.pipeline import (
    CompletionInput,
    CompletionPipeline,
    ModelTarget,
    Streams,
)
from koma.engine.completion.prompt import Neighbour
from koma.engine.stream import stream_completion_events, stream_events
from koma.providers.ollama import OllamaProvider
from koma.settings import CompletionSettings
from koma.types import StreamEvent
from koma_sim import Reply, Simulator
from koma_sim.script import RequestRecord, qwen_coder

FIM = "qwen2.5-coder:1.5b"
URI = "file:///w/a.py"


def pipeline_for(
    provider: OllamaProvider, model: str = FIM, **settings: object
) -> CompletionPipeline:
    async def target() -> ModelTarget:
        return ModelTarget(provider, model)

    current = CompletionSettings(**settings)  # type: ignore[arg-type]
    return CompletionPipeline(target, lambda: current)


def generations(sim: Simulator) -> list[RequestRecord]:
    return [r for r in sim.requests if r.endpoint in ("generate", "chat")]


async def test_cache_hit_does_not_wait_for_the_debounce(
    sim: Simulator, provider: OllamaProvider
) -> None:
    sim.set_default_reply(Reply(content="compute(a, b)"))
    pipeline = pipeline_for(provider, debounce_ms=1500)
    first = await pipeline.complete(CompletionInput(URI, "x = ", "\n", invoked=True))
    assert first.text == "compute(a, b)" and first.source == "model"
    started = time.perf_counter()
    typed = await pipeline.complete(CompletionInput(URI, "x = com", "\n"))
    assert typed.text == "pute(a, b)" and typed.source == "cache"
    assert time.perf_counter() - started < 0.5
    assert len(generations(sim)) == 1


async def test_newer_request_supersedes_and_closes_the_older_stream(
    sim: Simulator, provider: OllamaProvider
) -> None:
    sim.set_default_reply(Reply(content="slow answer", ttft_ms=30_000))
    pipeline = pipeline_for(provider)
    first = asyncio.create_task(
        pipeline.complete(CompletionInput(URI, "value = ", "\n", invoked=True))
    )
    (record,) = await asyncio.to_thread(sim.wait_for_requests, 1, 30.0, "generate")
    sim.set_default_reply(Reply(content="other"))
    # The cursor moved back: the running answer cannot serve the new position.
    second = await pipeline.complete(CompletionInput(URI, "value =", "\n", invoked=True))
    assert (await first).reason == "superseded"
    assert (await first).text is None
    assert await asyncio.to_thread(sim.wait_for_disconnect, record, 10.0)
    assert second.text == "other"


async def test_stream_is_closed_even_when_a_new_call_follows_within_the_close(
    sim: Simulator, provider: OllamaProvider
) -> None:
    """A second cancellation arriving while the first still closes must not leak the stream."""
    sim.set_default_reply(Reply(content="x" * 400, token_delay_ms=5))
    streaming = asyncio.Event()

    def completion(p: Any, request: Any) -> AsyncGenerator[StreamEvent, None]:
        async def events() -> AsyncGenerator[StreamEvent, None]:
            async with aclosing(stream_completion_events(p, request)) as inner:
                async for event in inner:
                    streaming.set()
                    yield event

        return events()

    pipeline = pipeline_for(provider, debounce_ms=0)
    pipeline._streams = Streams(chat=stream_events, completion=completion)
    first = asyncio.create_task(pipeline.complete(CompletionInput(URI, "v = ", "\n", invoked=True)))
    await streaming.wait()
    (record,) = generations(sim)
    second = asyncio.create_task(pipeline.complete(CompletionInput(URI, "w = ", "\n")))
    assert (await first).reason == "superseded"
    assert await asyncio.to_thread(sim.wait_for_disconnect, record, 10.0)
    second.cancel()
    assert (await second).text is None
    # The second call, let go by its cancelled request, is closed after the grace period.
    later = await asyncio.to_thread(sim.wait_for_requests, 2, 30.0, "generate")
    assert await asyncio.to_thread(sim.wait_for_disconnect, later[1], 10.0)


async def test_cancelled_request_returns_an_empty_answer_and_closes_the_stream(
    sim: Simulator, provider: OllamaProvider
) -> None:
    sim.set_default_reply(Reply(content="slow answer", ttft_ms=30_000))
    pipeline = pipeline_for(provider)
    task = asyncio.create_task(pipeline.complete(CompletionInput(URI, "v = ", "\n", invoked=True)))
    (record,) = await asyncio.to_thread(sim.wait_for_requests, 1, 30.0, "generate")
    task.cancel()
    result = await task  # answered, not raised
    assert result.text is None and result.reason == "cancelled"
    assert await asyncio.to_thread(sim.wait_for_disconnect, record, 10.0)


async def test_typing_on_adopts_the_running_call(sim: Simulator, provider: OllamaProvider) -> None:
    sim.set_default_reply(Reply(content="total + 1", ttft_ms=400))
    pipeline = pipeline_for(provider)
    first = asyncio.create_task(pipeline.complete(CompletionInput(URI, "x = ", "\n", invoked=True)))
    await asyncio.to_thread(sim.wait_for_requests, 1, 30.0, "generate")
    second = await pipeline.complete(CompletionInput(URI, "x = tot", "\n"))
    assert (await first).reason == "superseded"
    assert second.text == "al + 1" and second.adopted
    assert len(generations(sim)) == 1


async def test_a_provider_that_is_down_gives_an_empty_answer(provider: OllamaProvider) -> None:
    dead = Simulator(models=[qwen_coder()])
    dead.start()
    url = dead.url
    dead.stop()
    down = OllamaProvider(url, retries=0)
    try:
        result = await pipeline_for(down).complete(CompletionInput(URI, "x = ", "\n", invoked=True))
    finally:
        await down.aclose()
    assert result.text is None and result.reason == "error" and result.error


async def test_open_documents_contribute_snippets_to_the_fim_prompt(
    sim: Simulator, provider: OllamaProvider
) -> None:
    sim.set_default_reply(Reply(content="circle_area(r)"))
    other = Neighbour(
        "file:///w/geometry.py", "def circle_area(radius):\n    return 3.14159 * radius ** 2\n"
    )
    pipeline = pipeline_for(provider)
    prefix = "from geometry import circle_area\n\nr = 2.0\narea = "
    result = await pipeline.complete(
        CompletionInput(URI, prefix, "\n", invoked=True, neighbours=(other,))
    )
    assert result.text == "circle_area(r)"
    (record,) = generations(sim)
    prompt = record.body["prompt"]
    assert "# def circle_area(radius):" in prompt
    assert prompt.endswith(prefix)


async def test_gpt_oss_on_the_chat_route_gets_a_low_effort_hole_filler_and_no_reasoning(
    sim: Simulator, provider: OllamaProvider
) -> None:
    sim.set_default_reply(
        Reply(thinking="Sum of the two.", content="<COMPLETION>a + b</COMPLETION>")
    )
    pipeline = pipeline_for(provider, "gpt-oss:20b", route="chat")
    result = await pipeline.complete(
        CompletionInput(URI, "def add(a, b):\n    return ", "\n", invoked=True)
    )
    assert result.text == "a + b" and result.route == "chat"
    (record,) = generations(sim)
    assert record.endpoint == "chat" and record.body["think"] == "low"


async def test_disabled_completion_never_calls_the_model(
    sim: Simulator, provider: OllamaProvider
) -> None:
    pipeline = pipeline_for(provider, enabled=False)
    result = await pipeline.complete(CompletionInput(URI, "x = ", "\n", invoked=True))
    assert result.text is None and result.reason == "disabled"
    assert generations(sim) == []


async def test_a_cancelled_call_is_taken_over_by_the_next_keystroke(
    sim: Simulator, provider: OllamaProvider
) -> None:
    """Editors cancel the previous request right before sending the next one."""
    sim.set_default_reply(Reply(content="total + 1", ttft_ms=400))
    pipeline = pipeline_for(provider)
    first = asyncio.create_task(pipeline.complete(CompletionInput(URI, "x = ", "\n", invoked=True)))
    (record,) = await asyncio.to_thread(sim.wait_for_requests, 1, 30.0, "generate")
    first.cancel()
    assert (await first).reason == "cancelled"
    second = await pipeline.complete(CompletionInput(URI, "x = t", "\n"))
    assert second.text == "otal + 1" and second.adopted and second.took_over
    # The simulator marks the record after its last write, which the client may read first.
    assert await asyncio.to_thread(sim.wait_for_completion, record, 10.0)
    assert record.completed and len(generations(sim)) == 1


async def test_a_cancelled_call_nobody_takes_over_is_closed(
    sim: Simulator, provider: OllamaProvider
) -> None:
    sim.set_default_reply(Reply(content="never shown", ttft_ms=30_000))
    pipeline = pipeline_for(provider)
    first = asyncio.create_task(pipeline.complete(CompletionInput(URI, "x = ", "\n", invoked=True)))
    (record,) = await asyncio.to_thread(sim.wait_for_requests, 1, 30.0, "generate")
    first.cancel()
    assert (await first).text is None
    assert await asyncio.to_thread(sim.wait_for_disconnect, record, 10.0)

"""stream_events: event order, buffering, tool calls, metrics, and closing the wire early."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest

from koma import (
    ChannelEnd,
    ChannelStart,
    Done,
    GenerationSettings,
    Message,
    StreamError,
    TextDelta,
    ToolCall,
    ToolCallEvent,
)
from koma.engine.stream import collect, stream_completion_events, stream_events
from koma.providers.base import ChatRequest, CompletionRequest, Provider, WireChunk
from koma.types import Metrics, ModelInfo, Usage


class ScriptedProvider(Provider):
    """Replays a fixed list of chunks; records whether its generator was closed."""

    name = "scripted"
    base_url = "http://127.0.0.1:1"

    def __init__(
        self,
        chunks: list[WireChunk],
        *,
        gate: asyncio.Event | None = None,
        fail_after: int | None = None,
    ) -> None:
        self.chunks = chunks
        self.gate = gate  # when set, wait for it after the first chunk (an endless answer)
        self.fail_after = fail_after
        self.sent = 0
        self.closed = asyncio.Event()

    async def _run(self) -> AsyncIterator[WireChunk]:
        try:
            for i, chunk in enumerate(self.chunks):
                if self.fail_after is not None and i == self.fail_after:
                    raise StreamError("server said: out of memory")
                if self.gate is not None and i == 1:
                    await self.gate.wait()
                self.sent += 1
                yield chunk
        finally:
            self.closed.set()

    def chat(self, request: ChatRequest) -> AsyncIterator[WireChunk]:
        return self._run()

    def complete(self, request: CompletionRequest) -> AsyncIterator[WireChunk]:
        return self._run()

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo("gpt-oss:20b")]


def request(**settings: object) -> ChatRequest:
    return ChatRequest("gpt-oss:20b", [Message.user("hi")], GenerationSettings(**settings))


def content(*texts: str) -> list[WireChunk]:
    return [WireChunk(content=t) for t in texts]


async def events_of(provider: Provider, req: ChatRequest) -> list[object]:
    async with aclosing(stream_events(provider, req)) as stream:
        return [event async for event in stream]


def shape(events: list[object]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for e in events:
        if isinstance(e, ChannelStart):
            out.append(("start", e.channel))
        elif isinstance(e, TextDelta):
            out.append(("delta", e.channel, e.text))
        elif isinstance(e, ChannelEnd):
            out.append(("end", e.channel))
        elif isinstance(e, ToolCallEvent):
            out.append(("tool", e.call.name))
        elif isinstance(e, Done):
            out.append(("done",))
    return out


async def test_reasoning_field_then_content_in_order():
    chunks = [
        WireChunk(reasoning="The user "),
        WireChunk(reasoning="greets."),
        *content("Hel", "lo!"),
        WireChunk(done=True, finish_reason="stop", usage=Usage(12, 4)),
    ]
    events = await events_of(ScriptedProvider(chunks), request())
    assert shape(events) == [
        ("start", "thinking"),
        ("delta", "thinking", "The user "),
        ("delta", "thinking", "greets."),
        ("end", "thinking"),
        ("start", "final"),
        ("delta", "final", "Hel"),
        ("delta", "final", "lo!"),
        ("end", "final"),
        ("done",),
    ]
    result = events[-1].result
    assert result.text == "Hello!"
    assert result.channels == {"thinking": "The user greets.", "final": "Hello!"}
    assert result.reasoning == "The user greets."
    assert (result.model, result.provider, result.finish_reason) == (
        "gpt-oss:20b",
        "scripted",
        "stop",
    )
    assert result.usage.completion_tokens == 4


async def test_raw_harmony_text_split_into_channels():
    wire = (
        "<|channel|>analysis<|message|>Think<|end|>"
        "<|start|>assistant<|channel|>final<|message|>Answer<|return|>"
    )
    chunks = content(*(wire[i : i + 3] for i in range(0, len(wire), 3)))
    result = await collect(stream_events(ScriptedProvider(chunks), request()))
    assert result.text == "Answer"
    assert result.channels == {"analysis": "Think", "final": "Answer"}


async def test_buffer_size_coalesces_tokens_and_flushes_at_channel_change():
    chunks = [WireChunk(reasoning=c) for c in "abcde"] + content(*"12345678")
    events = await events_of(ScriptedProvider(chunks), request(streaming_buffer_size=3))
    deltas = [(e.channel, e.text) for e in events if isinstance(e, TextDelta)]
    assert deltas == [
        ("thinking", "abc"),
        ("thinking", "de"),  # flushed because the channel changed
        ("final", "123"),
        ("final", "456"),
        ("final", "78"),  # flushed at the end
    ]


async def test_wire_and_leaked_tool_calls_become_events_after_preceding_text():
    leaked = (
        "<|start|>assistant<|channel|>commentary to=functions.read_file <|constrain|>json"
        '<|message|>{"path": "a.py"}<|call|>'
    )
    chunks = [
        *content("Let me look", leaked),
        WireChunk(tool_calls=[ToolCall("search", {"q": "x"}, id="c1")], done=True),
    ]
    events = await events_of(ScriptedProvider(chunks), request(streaming_buffer_size=50))
    assert shape(events) == [
        ("start", "final"),
        ("delta", "final", "Let me look"),
        ("tool", "read_file"),
        ("tool", "search"),
        ("end", "final"),
        ("done",),
    ]
    result = events[-1].result
    assert [(c.name, c.arguments) for c in result.tool_calls] == [
        ("read_file", {"path": "a.py"}),
        ("search", {"q": "x"}),
    ]
    assert result.finish_reason == "tool_calls"
    assert result.warnings  # the user is told a call was recovered from text


async def test_server_metrics_win_and_client_fills_the_gaps():
    server = Metrics(tokens_per_second=42.0, load_ms=5.0, source="server")
    chunks = [*content("a", "b"), WireChunk(done=True, metrics=server)]
    result = await collect(stream_events(ScriptedProvider(chunks), request()))
    assert result.metrics.tokens_per_second == 42.0
    assert result.metrics.load_ms == 5.0
    assert result.metrics.source == "server"
    assert result.metrics.ttft_ms is not None and result.metrics.ttft_ms >= 0
    assert result.metrics.total_ms is not None


class SlowProvider(ScriptedProvider):
    """Waits `delay` seconds before each chunk, like a model generating."""

    def __init__(self, chunks: list[WireChunk], delay: float) -> None:
        super().__init__(chunks)
        self.delay = delay

    async def _run(self) -> AsyncIterator[WireChunk]:
        for chunk in self.chunks:
            await asyncio.sleep(self.delay)
            yield chunk


async def test_client_side_metrics_when_the_server_sends_none():
    delay = 0.02
    result = await collect(stream_events(SlowProvider(content(*"abcde"), delay), request()))
    m = result.metrics
    assert m.source == "client"
    assert m.ttft_ms is not None and m.ttft_ms >= delay * 1000 * 0.9
    assert m.total_ms is not None and m.total_ms >= m.ttft_ms
    # 4 tokens after the first one, each at least `delay` apart.
    assert m.tokens_per_second is not None and m.tokens_per_second <= 1 / (delay * 0.9)


async def test_leaving_early_closes_the_provider_before_the_next_statement():
    gate = asyncio.Event()  # never set: the answer would go on forever
    provider = ScriptedProvider(content("first", "second"), gate=gate)
    async with aclosing(stream_events(provider, request())) as stream:
        async for event in stream:
            if isinstance(event, TextDelta):
                break
    assert provider.closed.is_set()
    assert provider.sent == 1


async def test_cancelling_the_consumer_closes_the_provider():
    gate = asyncio.Event()
    provider = ScriptedProvider(content("first", "second"), gate=gate)
    started = asyncio.Event()

    async def consume() -> None:
        async for event in stream_events(provider, request()):
            if isinstance(event, TextDelta):
                started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert provider.closed.is_set()


async def test_plain_break_closes_the_provider_once_the_stream_is_dropped():
    provider = ScriptedProvider(content("first", "second"), gate=asyncio.Event())
    async for _ in stream_events(provider, request()):
        break
    gc.collect()
    await asyncio.wait_for(provider.closed.wait(), 10)


async def test_mid_stream_error_propagates_and_closes():
    provider = ScriptedProvider(content("a", "b", "c"), fail_after=2)
    with pytest.raises(StreamError):
        await collect(stream_events(provider, request()))
    assert provider.closed.is_set()


async def test_reasoning_only_answer_cut_by_token_limit_warns():
    chunks = [WireChunk(reasoning="long thought"), WireChunk(done=True, finish_reason="length")]
    result = await collect(stream_events(ScriptedProvider(chunks), request()))
    assert result.text == ""
    assert "thinking" in result.channels
    assert any("max_tokens" in w for w in result.warnings)


async def test_fim_completion_keeps_identifiers_that_look_like_channel_words():
    req = CompletionRequest("qwen2.5-coder", "x = ", suffix="\n", raw=True)
    chunks = content("final", "Result + analysis")
    async with aclosing(stream_completion_events(ScriptedProvider(chunks), req)) as stream:
        result = await collect(stream)
    assert result.text == "finalResult + analysis"


async def test_collect_without_done_is_an_error():
    async def no_done() -> AsyncIterator[object]:
        yield TextDelta("final", "x")

    with pytest.raises(StreamError):
        await collect(no_done())  # type: ignore[arg-type]

"""From wire chunks to stream events: channels, coalesced deltas, tool calls, one result.

`stream_events()` drives a provider's async generator and yields, in order,
`ChannelStart` → `TextDelta`… → `ChannelEnd` for each run of a channel, `ToolCallEvent` for
each call (from the wire, or recovered from Harmony text the server failed to parse), and a
final `Done` whose `GenerationResult.text` holds the final channel only.

Cancellation: the provider generator runs inside `contextlib.aclosing`, so closing this
generator (leaving `async with aclosing(stream_events(...))`, or cancelling the task that
iterates it) closes the provider generator — and with it the HTTP response — before control
returns. A bare `async for … break` closes it when the generator is dropped, on the event
loop's next turn; use `aclosing` when it must happen before the next statement.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from koma.engine.cache import CACHE_HIT
from koma.engine.channels import ChannelParser, Piece, clean_wire_tool_name, writes_harmony
from koma.engine.lifecycle.truncation import request_tokens, result_truncation_warning
from koma.engine.metrics import StreamClock, merge_metrics
from koma.errors import StreamError
from koma.providers.base import ChatRequest, CompletionRequest, Provider, WireChunk
from koma.types import (
    REASONING_CHANNELS,
    Channel,
    ChannelEnd,
    ChannelStart,
    Done,
    GenerationResult,
    GenerationSettings,
    Metrics,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallEvent,
    Usage,
)

# Models a server was seen handing raw Harmony over in `content`, per provider instance (the
# language server keeps one per settings). Their later answers are read with `harmony_start`:
# text at the start is held until a marker says which channel it is in, because such a server
# may also start an answer inside a channel its prompt opened.
_RAW_HARMONY: weakref.WeakKeyDictionary[Provider, set[str]] = weakref.WeakKeyDictionary()


def raw_harmony_seen(provider: Provider, model: str) -> bool:
    """Whether this server has handed this model's raw Harmony over in `content` before."""
    return model in _RAW_HARMONY.get(provider, ())


def note_raw_harmony(provider: Provider, model: str) -> None:
    """Remember a server that sends raw Harmony for `model` (its later answers are held)."""
    _RAW_HARMONY.setdefault(provider, set()).add(model)


def stream_events(provider: Provider, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
    """Stream a chat answer as events; see the module docstring for order and cancellation."""
    held = writes_harmony(request.model) and raw_harmony_seen(provider, request.model)
    return _stream(
        provider,
        request.model,
        request.settings,
        lambda: provider.chat(request),
        ChannelParser(harmony_start=held),
        sent_tokens=request_tokens(request),
    )


def stream_completion_events(
    provider: Provider, request: CompletionRequest
) -> AsyncGenerator[StreamEvent, None]:
    """Stream a raw / FIM completion as events.

    Raw and fill-in-the-middle prompts are code, where a leading `finalResult` is an
    identifier, so degraded-Harmony recognition is off for them.
    """
    code = request.raw or request.suffix is not None
    return _stream(
        provider,
        request.model,
        request.settings,
        lambda: provider.complete(request),
        ChannelParser(degraded_harmony=not code),
        sent_tokens=request_tokens(request),
    )


async def collect(events: AsyncIterator[StreamEvent]) -> GenerationResult:
    """Drain a stream and return its result; closes the stream on any exit."""
    async with contextlib.AsyncExitStack() as stack:
        _close_on_exit(stack, events)
        async for event in events:
            if isinstance(event, Done):
                return event.result
    raise StreamError("the answer stream ended without a result", "try the request again")


class _Deltas:
    """Turns channel pieces into start/delta/end events, `buffer_size` pieces per delta."""

    __slots__ = ("buffer_size", "channel", "pending", "texts")

    def __init__(self, buffer_size: int) -> None:
        self.buffer_size = buffer_size
        self.channel: Channel | None = None
        self.pending: list[str] = []
        self.texts: dict[Channel, list[str]] = {}

    def add(self, pieces: list[Piece]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for channel, text in pieces:
            self.texts.setdefault(channel, []).append(text)
            if channel != self.channel:
                self.flush(events)
                if self.channel is not None:
                    events.append(ChannelEnd(self.channel))
                events.append(ChannelStart(channel))
                self.channel = channel
            self.pending.append(text)
            if len(self.pending) >= self.buffer_size:
                self.flush(events)
        return events

    def flush(self, events: list[StreamEvent]) -> None:
        if self.pending and self.channel is not None:
            text = self.pending[0] if len(self.pending) == 1 else "".join(self.pending)
            events.append(TextDelta(self.channel, text))
            self.pending = []

    def close(self) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        self.flush(events)
        if self.channel is not None:
            events.append(ChannelEnd(self.channel))
            self.channel = None
        return events

    def channels(self) -> dict[str, str]:
        return {channel: "".join(parts) for channel, parts in self.texts.items()}


async def _stream(
    provider: Provider,
    model: str,
    settings: GenerationSettings,
    open_wire: Callable[[], AsyncIterator[WireChunk]],
    parser: ChannelParser,
    *,
    sent_tokens: int | None = None,
) -> AsyncGenerator[StreamEvent, None]:
    clock = StreamClock()
    deltas = _Deltas(settings.streaming_buffer_size)
    tool_calls: list[ToolCall] = []
    usage: Usage | None = None
    server_metrics: Metrics | None = None
    finish_reason: str | None = None
    replayed = False
    leaked = 0
    final_raw: dict[str, Any] | None = None
    wire = open_wire()
    async with contextlib.AsyncExitStack() as stack:
        _close_on_exit(stack, wire)
        async for chunk in wire:
            if chunk.content or chunk.reasoning:
                clock.token()
                pieces = parser.feed_reasoning(chunk.reasoning) if chunk.reasoning else []
                if chunk.content:
                    pieces += parser.feed(chunk.content)
                if pieces:
                    for event in deltas.add(pieces):
                        yield event
            calls = chunk.tool_calls
            for call in calls:  # Ollama's gpt-oss parser leaks header text into names
                call.name = clean_wire_tool_name(call.name)
            if len(parser.leaked_tool_calls) > leaked:
                calls = [*calls, *parser.leaked_tool_calls[leaked:]]
                leaked = len(parser.leaked_tool_calls)
            if calls:
                for event in _tool_events(deltas, calls):
                    yield event
                tool_calls += calls
            if chunk.usage is not None:
                usage = chunk.usage
            if chunk.metrics is not None:
                server_metrics = chunk.metrics
            if chunk.finish_reason:
                finish_reason = chunk.finish_reason
            if chunk.raw and chunk.raw.get(CACHE_HIT):
                replayed = True
            if chunk.done and chunk.raw:
                final_raw = chunk.raw
    clock.stop()
    tail = parser.finish()
    if parser.saw_harmony and writes_harmony(model):
        note_raw_harmony(provider, model)
    for event in deltas.add(tail):
        yield event
    if len(parser.leaked_tool_calls) > leaked:
        calls = parser.leaked_tool_calls[leaked:]
        for event in _tool_events(deltas, calls):
            yield event
        tool_calls += calls
    for event in deltas.close():
        yield event
    result = _result(
        deltas.channels(),
        tool_calls,
        usage or Usage(),
        # A replay from the cache says nothing about the server's speed.
        merge_metrics(
            None if replayed else server_metrics,
            clock.measured(usage.completion_tokens if usage else None, rate=not replayed),
        ),
        model,
        provider.name,
        finish_reason,
        leaked=bool(parser.leaked_tool_calls),
    )
    # Ollama cuts an oversized prompt silently; its own counts show it (engine.lifecycle).
    warning = None if replayed else result_truncation_warning(final_raw, sent_tokens)
    if warning:
        result.warnings.append(warning)
    yield Done(result)


def _close_on_exit(stack: contextlib.AsyncExitStack, iterator: object) -> None:
    """`aclosing` for any iterator that can be closed (async generators and look-alikes)."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        stack.push_async_callback(aclose)


def _tool_events(deltas: _Deltas, calls: list[ToolCall]) -> list[StreamEvent]:
    events: list[StreamEvent] = []
    deltas.flush(events)  # text that came before the call is delivered before it
    events += [ToolCallEvent(call) for call in calls]
    return events


def _result(
    channels: dict[str, str],
    tool_calls: list[ToolCall],
    usage: Usage,
    metrics: Metrics,
    model: str,
    provider: str,
    finish_reason: str | None,
    *,
    leaked: bool,
) -> GenerationResult:
    warnings: list[str] = []
    text = channels.get("final", "")
    if leaked:
        warnings.append("recovered tool calls the server left in the answer text (Harmony)")
    reasoned = any(channels.get(c) for c in REASONING_CHANNELS)
    if finish_reason == "length" and not text.strip() and reasoned:
        warnings.append(
            "the token limit was reached while the model was still reasoning; "
            "raise max_tokens or lower the reasoning effort"
        )
    return GenerationResult(
        text=text,
        channels=channels,
        tool_calls=tool_calls,
        usage=usage,
        metrics=metrics,
        model=model,
        provider=provider,
        finish_reason=finish_reason or ("tool_calls" if tool_calls else "stop"),
        warnings=warnings,
    )

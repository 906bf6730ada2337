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

Chat streams end early, closing the provider's stream so the server stops generating, in two
cases, each with a warning in the result: the model repeats itself (`engine.repetition`,
`finish_reason` `"repetition"`), or — only when the request sets no `max_tokens` — the answer
passes `DEFAULT_ANSWER_TOKENS` or the reasoning passes its allowance for the effort
(`finish_reason` `"length"`): a model that never stops would otherwise run until its context
is full. An answer with no text and no tool call gets a warning too, naming the likely cause.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from koma.engine.cache import CACHE_HIT
from koma.engine.channels import ChannelParser, Piece
from koma.engine.harmony import clean_wire_tool_name, writes_harmony
from koma.engine.lifecycle.truncation import request_tokens, result_truncation_warning
from koma.engine.metrics import StreamClock, merge_metrics, plausible_rate
from koma.engine.repetition import RepetitionGuard
from koma.errors import StreamError
from koma.providers.base import ChatRequest, CompletionRequest, Provider, WireChunk
from koma.types import (
    REASONING_CHANNELS,
    Channel,
    ChannelEnd,
    ChannelStart,
    Done,
    Effort,
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

# Chat's default output limits when the request sets no `max_tokens` (chat.maxTokens unset):
# tokens of answer, and of reasoning by effort. Counted by the engine, so they hold for every
# server, and never sent as max_tokens (a server rejects one larger than its context).
DEFAULT_ANSWER_TOKENS = 2048
DEFAULT_REASONING_TOKENS: dict[Effort | None, int] = {
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    None: 8192,
}
# Where the likely cause of an empty answer is fixed, per provider.
_NO_TEMPLATE_FIXES = {
    "openai": "start llama.cpp's llama-server with --jinja (or --chat-template NAME), "
    "llama-cpp-python's server with --chat_format NAME (e.g. chatml, gemma), "
    "or serve a model whose GGUF has a chat template",
    "embedded": "set KOMA_MODEL to a GGUF that has a chat template (tokenizer.chat_template)",
    "vllm": "start vLLM with --chat-template FILE, or serve a model that ships one",
    "ollama": "the model needs a TEMPLATE in its Modelfile: recreate it FROM a model that has one",
    "lmstudio": "set a prompt template for the model in LM Studio's model settings",
}


def raw_harmony_seen(provider: Provider, model: str) -> bool:
    """Whether this server has handed this model's raw Harmony over in `content` before."""
    return model in _RAW_HARMONY.get(provider, ())


def note_raw_harmony(provider: Provider, model: str) -> None:
    """Remember a server that sends raw Harmony for `model` (its later answers are held)."""
    _RAW_HARMONY.setdefault(provider, set()).add(model)


def stream_events(provider: Provider, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
    """Stream a chat answer as events; see the module docstring for order, cancellation and
    the early stops (repetition, default output limits) every chat stream gets."""
    held = writes_harmony(request.model) and raw_harmony_seen(provider, request.model)
    return _stream(
        provider,
        request.model,
        request.settings,
        lambda: provider.chat(request),
        ChannelParser(harmony_start=held),
        sent_tokens=request_tokens(request),
        chat=True,
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
    chat: bool = False,
) -> AsyncGenerator[StreamEvent, None]:
    clock = StreamClock()
    guard = RepetitionGuard() if chat else None
    limits = _Limits.default_for(settings) if chat else None
    stopped: str | None = None  # why the engine ended the stream early, for the warning
    looped = False
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
                if limits is not None and pieces:
                    stopped = limits.count(pieces)
                if guard is not None and pieces:
                    pieces, looping = guard.feed(pieces)
                    if looping:
                        stopped, looped = guard.warning(), True
                if pieces:
                    for event in deltas.add(pieces):
                        yield event
                if stopped:
                    finish_reason = "repetition" if looped else "length"
                    break  # leaving the `async with` closes the wire: the server stops
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
    if guard is not None:
        # Unless the answer looped, what the guard held back was no loop after all.
        tail = [] if looped else [*guard.flush(), *guard.feed(tail)[0], *guard.flush()]
    for event in deltas.add(tail):
        yield event
    if len(parser.leaked_tool_calls) > leaked:
        calls = parser.leaked_tool_calls[leaked:]
        for event in _tool_events(deltas, calls):
            yield event
        tool_calls += calls
    for event in deltas.close():
        yield event
    generated = usage.completion_tokens if usage and usage.completion_tokens is not None else None
    if generated is None:
        generated = clock.tokens
    result = _result(
        deltas.channels(),
        tool_calls,
        usage or Usage(),
        # A replay from the cache says nothing about the server's speed.
        plausible_rate(
            merge_metrics(
                None if replayed else server_metrics,
                clock.measured(usage.completion_tokens if usage else None, rate=not replayed),
            ),
            generated,
        ),
        model,
        provider.name,
        finish_reason,
        leaked=bool(parser.leaked_tool_calls),
        generated=generated,
        warn_empty=chat,
    )
    if stopped:
        result.warnings.append(stopped)
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
    generated: int = 0,
    warn_empty: bool = False,
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
    elif warn_empty and not text.strip() and not tool_calls:
        warnings.append(empty_answer_warning(provider, finish_reason, generated, reasoned=reasoned))
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


def empty_answer_warning(
    provider: str, finish_reason: str | None, generated: int, *, reasoned: bool
) -> str:
    """Why an answer is empty, with the fix: the likely cause is a missing chat template."""
    facts = f"finish reason: {finish_reason or 'none'}, {generated} tokens generated"
    if reasoned:
        return (
            f"the model gave no answer, only reasoning ({facts}); "
            "ask again, or raise the reasoning effort"
        )
    if finish_reason == "length" and generated:
        return f"the model gave no answer ({facts}); raise max_tokens (--max-tokens)"
    fix = _NO_TEMPLATE_FIXES.get(provider) or _NO_TEMPLATE_FIXES["openai"]
    return (
        f"the model gave no answer ({facts}); the likely cause is a server running the model "
        f"without a chat template: {fix}"
    )


class _Limits:
    """Chat's default output limits (no `max_tokens` given): answer and reasoning tokens."""

    __slots__ = ("answer", "answer_limit", "effort", "reasoning", "reasoning_limit")

    def __init__(self, answer_limit: int, reasoning_limit: int, effort: Effort | None) -> None:
        self.answer_limit = answer_limit
        self.reasoning_limit = reasoning_limit
        self.effort = effort
        self.answer = 0
        self.reasoning = 0

    @classmethod
    def default_for(cls, settings: GenerationSettings) -> _Limits | None:
        if settings.max_tokens is not None:
            return None  # the caller's limit is sent to the server, which enforces it
        effort = settings.reasoning_effort
        return cls(DEFAULT_ANSWER_TOKENS, DEFAULT_REASONING_TOKENS[effort], effort)

    def count(self, pieces: list[Piece]) -> str | None:
        """Count one wire chunk (about one token); the warning once a limit is passed."""
        if any(channel == "final" for channel, _ in pieces):
            self.answer += 1
        else:
            self.reasoning += 1
        if self.answer >= self.answer_limit:
            return (
                f"stopped after {self.answer:,} answer tokens, the default limit for chat; "
                "set chat.maxTokens (koma chat --max-tokens) for longer answers"
            )
        if self.reasoning >= self.reasoning_limit:
            return (
                f"stopped after {self.reasoning:,} reasoning tokens, the default limit at "
                f"{self.effort or 'default'} effort; set chat.maxTokens "
                "(koma chat --max-tokens) or lower the reasoning effort"
            )
        return None

"""One model call for a completion, and the in-flight record that lets a later keystroke use it.

`stream_text()` sends the request (FIM, raw continuation or hole-filler chat, see `routes.py`),
reads only the final channel and stops reading — closing the HTTP stream, so the server stops
generating — as soon as the text holds everything post-processing would keep, or at the route's
time cap.

`Generation` is a running call. It is owned by the request that started it; when that request
is superseded by a keystroke that merely *extends* its prefix (the user typed on), the newer
request adopts the running call instead of cancelling it and starting over — the answer is
then served minus the characters typed since, exactly like a typing-through cache hit. This
matters most for reasoning models, whose answers take seconds: restarting on every keystroke
would mean never showing anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from koma.engine.completion.cache import FORWARD_CHARS, key_suffix
from koma.engine.completion.postprocess import CursorContext, Route, stream_should_stop
from koma.engine.completion.prompt import PromptParts
from koma.engine.completion.routes import RouteChoice
from koma.providers.base import ChatRequest, CompletionRequest, InfillOptions, Provider
from koma.settings import CompletionSettings
from koma.types import Done, Effort, GenerationSettings, Metrics, StreamEvent, TextDelta

logger = logging.getLogger("koma.completion")
# Reasoning tokens count against the generation limit of a chat model; leave room for them.
REASONING_ALLOWANCE = 384
# Every route ends by time too: a suggestion later than this is not worth waiting for, and a
# model that never stops must not keep the server busy (reasoning chat models get longer).
TIME_CAP_S: dict[Route, float] = {"fim": 8.0, "raw": 8.0, "chat": 20.0}
# llama-server /infill: stop predicting this long after the first newline (llama.vim's value).
INFILL_PREDICT_MS = 500
# A raw one-line continuation needs few tokens; block mode stops at a run of blank lines.
RAW_LINE_TOKENS = 64
RAW_BLOCK_STOPS = ("\n\n\n",)
CHAT_STOPS = ("</COMPLETION>",)
# How much of the prefix must match for a newer request to adopt a running generation.
ADOPT_MATCH_CHARS = 2048


@dataclass(frozen=True)
class ModelTarget:
    """Where a completion goes: the provider, the model and the effort for chat models."""

    provider: Provider
    model: str
    effort: Effort = "low"
    keep_alive: str | int | None = None
    num_ctx: int | None = None


class GenerationRun(Protocol):
    metrics: Metrics | None
    error: str | None


# Opens a status scope around one model call (the LSP status bar); optional.
Tracker = Callable[[str], AbstractAsyncContextManager[GenerationRun]]
EventStream = Callable[[Provider, Any], AsyncGenerator[StreamEvent, None]]
TargetFn = Callable[[], Awaitable[ModelTarget]]


@dataclass
class Streams:
    """The engine's event streams (ChatRequest / CompletionRequest → channel events)."""

    chat: EventStream
    completion: EventStream


def default_streams() -> Streams:
    from koma.engine.stream import stream_completion_events, stream_events

    return Streams(chat=stream_events, completion=stream_completion_events)


@dataclass
class _Run:
    metrics: Metrics | None = None
    error: str | None = None


@asynccontextmanager
async def _quiet_scope() -> AsyncIterator[GenerationRun]:
    yield _Run()


def completion_request(
    target: ModelTarget,
    choice: RouteChoice,
    parts: PromptParts,
    ctx: CursorContext,
    settings: CompletionSettings,
) -> ChatRequest | CompletionRequest:
    """The request for one route; every route is capped so none runs to a server's limit.

    fim: prefix + suffix (llama-server gets `/infill` with the other files as `input_extra`,
    `n_indent` and `t_max_predict_ms`); raw: the header and prefix as a raw prompt, stopped at
    the end of the line (one-line mode) or at a blank-line run (block mode); chat: the
    hole-filler, stopped at `</COMPLETION>`.
    """
    common: dict[str, Any] = {
        "temperature": settings.temperature,
        "keep_alive": target.keep_alive,
        "num_ctx": target.num_ctx,
    }
    single = ctx.mode == "single"
    line_stop = ("\n",) if single and ctx.line_prefix.strip() else ()
    if choice.route == "fim":
        infill = None
        prompt = parts.fim_prompt()
        if choice.infill:
            prompt = parts.prefix
            infill = InfillOptions(
                extra=tuple(parts.extra_chunks()),
                n_indent=ctx.indent if not single else None,
                t_max_predict_ms=INFILL_PREDICT_MS,
            )
        return CompletionRequest(
            target.model,
            prompt=prompt,
            suffix=parts.suffix,
            settings=GenerationSettings(max_tokens=settings.max_tokens, stop=line_stop, **common),
            infill=infill,
        )
    if choice.route == "raw":
        stop = line_stop if single else RAW_BLOCK_STOPS
        tokens = min(settings.max_tokens, RAW_LINE_TOKENS) if single else settings.max_tokens
        return CompletionRequest(
            target.model,
            prompt=parts.fim_prompt(),
            raw=True,
            settings=GenerationSettings(max_tokens=tokens, stop=stop, **common),
        )
    return ChatRequest(
        target.model,
        parts.chat_messages(),
        settings=GenerationSettings(
            reasoning_effort=target.effort,
            max_tokens=settings.max_tokens + REASONING_ALLOWANCE,
            stop=CHAT_STOPS,
            **common,
        ),
    )


async def stream_text(
    target: ModelTarget,
    choice: RouteChoice,
    parts: PromptParts,
    ctx: CursorContext,
    settings: CompletionSettings,
    streams: Streams,
    tracker: Tracker | None = None,
    on_enough: Callable[[str], None] | None = None,
    time_cap_s: float | None = None,
    on_first_line: Callable[[str], None] | None = None,
) -> str:
    """The final-channel text of one model call, cut short once it holds enough.

    `on_enough(text)` is called the moment the text is final, *before* the HTTP stream is
    closed, so the caller can answer the editor while the connection shuts down. After
    `time_cap_s` (default per route) the call is closed and what arrived so far is the answer.

    First line first: where a block may follow (multi-line mode, FIM and raw routes),
    `on_first_line(text)` gets the text up to the end of its first line as soon as that line is
    complete, while the rest of the block keeps streaming into the final answer.
    """
    route = choice.route
    request = completion_request(target, choice, parts, ctx, settings)
    if isinstance(request, CompletionRequest):
        events = streams.completion(target.provider, request)
    else:
        events = streams.chat(target.provider, request)
    cap = time_cap_s if time_cap_s is not None else TIME_CAP_S[route]
    first_line = on_first_line if ctx.mode == "multi" and route != "chat" else None
    pieces: list[str] = []
    scope = tracker(target.model) if tracker else _quiet_scope()
    async with scope as run:
        try:
            async with asyncio.timeout(cap):
                async for event in events:
                    if isinstance(event, TextDelta):
                        if event.channel != "final":
                            continue  # reasoning is never shown
                        pieces.append(event.text)
                        text = "".join(pieces)
                        if stream_should_stop(text, ctx, route):
                            if on_enough is not None:
                                on_enough(text)
                            break
                        if first_line is not None and (line := first_line_of(text)) is not None:
                            first_line(line)
                            first_line = None
                    elif isinstance(event, Done):
                        run.metrics = event.result.metrics
                        if on_enough is not None:
                            on_enough(event.result.text)
                        return event.result.text
        except TimeoutError:
            logger.info("inline completion: %s route hit its %.1f s cap", route, cap)
        except Exception as exc:
            run.error = str(exc)
            raise
        finally:
            # Closing the stream closes the HTTP response: the server stops generating. Shielded
            # so that a second cancellation cannot interrupt the close half-way and leave the
            # connection open.
            await asyncio.shield(events.aclose())
    return "".join(pieces)


def first_line_of(text: str) -> str | None:
    """`text` up to the end of its first non-blank line, once that line is complete."""
    body = text.lstrip("\n")
    end = body.find("\n")
    if end < 0 or not body[:end].strip():
        return None
    return text[: len(text) - len(body) + end]


@dataclass
class Outcome:
    """What a finished generation produced (already post-processed), or why it failed."""

    text: str | None
    route: Route | None = None
    upstream_ms: float = 0.0
    error: str | None = None


@dataclass(eq=False)
class Generation:
    """A running model call for one document, and who is waiting for it."""

    uri: str
    prefix: str
    end: int  # absolute offset of the cursor it was started for
    suffix_key: str
    answer: asyncio.Future[Outcome]  # set as soon as the text is known
    task: asyncio.Task[None]  # the call itself, which may still be closing its stream
    holder: asyncio.Task[Any] | None = None
    release: asyncio.TimerHandle | None = field(default=None, repr=False)
    closed: bool = False

    @property
    def running(self) -> bool:
        return not self.answer.done()

    def typed_since(self, prefix: str, prefix_offset: int, suffix: str) -> str | None:
        """The text typed since this generation started, if `prefix` merely extends its own."""
        typed_chars = prefix_offset + len(prefix) - self.end
        if typed_chars < 0 or typed_chars > FORWARD_CHARS:
            return None
        if key_suffix(suffix) != self.suffix_key:
            return None
        head = prefix[: len(prefix) - typed_chars]
        if head[-ADOPT_MATCH_CHARS:] != self.prefix[-ADOPT_MATCH_CHARS:]:
            return None
        return prefix[len(prefix) - typed_chars :]

    def adopt(self, holder: asyncio.Task[Any] | None) -> None:
        """`holder` now owns the generation; a pending release is called off."""
        self.holder = holder
        if self.release is not None:
            self.release.cancel()
            self.release = None

    def let_go(self, holder: asyncio.Task[Any] | None, grace_s: float) -> None:
        """The owner went away: close the call unless someone adopts it within `grace_s`.

        Editors cancel the previous request right before sending the next one, so a short
        grace lets that next request adopt the running call instead of restarting it.
        """
        if self.holder is not holder or not self.running:
            return
        self.holder = None
        if grace_s <= 0:
            self.close()
            return
        loop = asyncio.get_running_loop()
        self.release = loop.call_later(grace_s, self._expire)

    def _expire(self) -> None:
        self.release = None
        if self.holder is None:
            self.close()

    def close(self) -> None:
        """Stop the call now (closing its HTTP stream); only the first call does anything."""
        if self.release is not None:
            self.release.cancel()
            self.release = None
        self.holder = None
        if not self.closed:
            self.closed = True
            self.task.cancel()

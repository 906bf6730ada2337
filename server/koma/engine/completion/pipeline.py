"""The inline-completion pipeline: cache → debounce → route → stream → post-process.

Order matters for latency. The cache (including typing-through entries) is checked first, so
a hit never pays the debounce. Only a miss waits for the typing pause, and only then are the
provider, model and prompt resolved.

Supersession: each document has at most one live request. A newer request for the same
document cancels the task serving the older one; that task is usually iterating the model's
HTTP stream, so the cancellation closes the upstream connection at once and the server stops
generating. `$/cancelRequest` reaches the same code through pygls cancelling the handler task.
Either way `complete()` catches the cancellation and *returns* an empty result: the LSP layer
always has something to answer with.

Routing: a model with the `insert` capability (FIM) gets `prompt` + `suffix`; any other model
(gpt-oss has no FIM tokens) gets a hole-filler chat at low reasoning effort whose reasoning is
discarded — only the final channel is read, and `postprocess` strips anything that leaked.

Nothing here imports pygls: the LSP module feeds plain strings in and gets plain text out, so
this is unit-testable and benchmarkable on its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from koma.engine.completion.cache import CompletionCache
from koma.engine.completion.debounce import AdaptiveDebounce
from koma.engine.completion.postprocess import (
    CursorContext,
    Route,
    clean,
    fit_to_line,
    stream_should_stop,
)
from koma.engine.completion.prompt import Neighbour, PromptParts, build_prompt
from koma.providers.base import ChatRequest, CompletionRequest, Provider
from koma.settings import CompletionSettings
from koma.types import Done, Effort, GenerationSettings, Metrics, StreamEvent, TextDelta

logger = logging.getLogger("koma.completion")

Source = Literal["cache", "model", "none"]
# Reasoning tokens count against the generation limit of a chat model; leave room for them.
REASONING_ALLOWANCE = 384


@dataclass(frozen=True)
class CompletionInput:
    """One request, as plain data: the text around the cursor and what else is open."""

    uri: str
    prefix: str
    suffix: str
    prefix_offset: int = 0  # absolute offset of prefix[0] in the document (prompt stability)
    language_id: str = "python"
    path: str = ""
    invoked: bool = False  # explicitly asked for (no debounce)
    neighbours: tuple[Neighbour, ...] = ()


@dataclass(frozen=True)
class ModelTarget:
    """Where a completion goes: the provider, the model and the effort for chat models."""

    provider: Provider
    model: str
    effort: Effort = "low"
    keep_alive: str | int | None = None
    num_ctx: int | None = None


@dataclass
class CompletionResult:
    """What the LSP layer turns into an answer; `text` None means an empty list."""

    text: str | None
    replace_chars: int = 0
    source: Source = "none"
    reason: str = "ok"
    debounce_ms: float = 0.0
    upstream_ms: float = 0.0
    route: Route | None = None
    error: str | None = None


class GenerationRun(Protocol):
    metrics: Metrics | None
    error: str | None


# Opens a status scope around one model call (the LSP status bar); optional.
Tracker = Callable[[str], AbstractAsyncContextManager[GenerationRun]]
EventStream = Callable[[Provider, Any], AsyncGenerator[StreamEvent, None]]


@dataclass
class Streams:
    """The engine's event streams (ChatRequest / CompletionRequest → channel events)."""

    chat: EventStream
    completion: EventStream


def default_streams() -> Streams:
    from koma.engine.stream import stream_completion_events, stream_events

    return Streams(chat=stream_events, completion=stream_completion_events)


@dataclass
class _Stats:
    requests: int = 0
    cache_hits: int = 0
    upstream: int = 0
    superseded: int = 0
    cancelled: int = 0
    errors: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class CompletionPipeline:
    """Serves inline-completion requests; one instance per language server."""

    def __init__(
        self,
        target: Callable[[], Awaitable[ModelTarget]],
        settings: Callable[[], CompletionSettings],
        *,
        tracker: Tracker | None = None,
        streams: Streams | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._target = target
        self._settings = settings
        self._tracker = tracker
        self._streams = streams
        self._clock = clock
        current = settings()
        self.cache = CompletionCache(current.cache_size)
        self.debounce = AdaptiveDebounce(current.debounce_ms)
        self._live: dict[str, asyncio.Task[Any]] = {}
        self._superseded: set[asyncio.Task[Any]] = set()
        self._fim: dict[tuple[str, str, str], bool] = {}
        self.stats = _Stats()

    # -- events from the editor ----------------------------------------------------------------

    def note_edit(self, uri: str) -> None:
        """A document changed: feeds the typing-rhythm estimate."""
        self.debounce.keystroke(uri)

    def forget(self, uri: str) -> None:
        """A document closed: drop its rhythm and cancel its request."""
        self.debounce.forget(uri)
        task = self._live.pop(uri, None)
        if task is not None and not task.done():
            self._superseded.add(task)
            task.cancel()

    def reconfigure(self) -> None:
        """Settings changed: a new model or window makes cached suggestions stale."""
        current = self._settings()
        self.cache.clear()
        self.cache.max_entries = current.cache_size
        self.debounce.fixed_ms = current.debounce_ms
        self._fim.clear()

    def clear_cache(self) -> int:
        return self.cache.clear()

    # -- the request path ----------------------------------------------------------------------

    async def complete(self, request: CompletionInput) -> CompletionResult:
        """Answer one request; never raises, never hangs once its task is cancelled."""
        task = asyncio.current_task()
        stats = self.stats
        stats.requests += 1
        previous = self._live.get(request.uri)
        if previous is not None and previous is not task and not previous.done():
            self._superseded.add(previous)
            previous.cancel()
        if task is not None:
            self._live[request.uri] = task
        try:
            result = await self._complete(request)
        except asyncio.CancelledError:
            superseded = task in self._superseded
            reason = "superseded" if superseded else "cancelled"
            if superseded:
                stats.superseded += 1
            else:
                stats.cancelled += 1
            result = CompletionResult(None, reason=reason)
        except Exception as exc:  # a provider that is down or dies mid-stream
            stats.errors += 1
            logger.warning("inline completion failed: %s", exc)
            result = CompletionResult(None, reason="error", error=str(exc))
        finally:
            if task is not None:
                self._superseded.discard(task)
                if self._live.get(request.uri) is task:
                    del self._live[request.uri]
        stats.by_reason[result.reason] = stats.by_reason.get(result.reason, 0) + 1
        return result

    async def _complete(self, request: CompletionInput) -> CompletionResult:
        settings = self._settings()
        if not settings.enabled:
            return CompletionResult(None, reason="disabled")
        hit = self.cache.get(request.uri, request.prefix, request.suffix)
        line_suffix = _line_suffix(request.suffix)
        if hit is not None:
            self.stats.cache_hits += 1
            if hit.text is None:
                return CompletionResult(None, source="cache", reason="empty")
            text, replace = fit_to_line(hit.text, line_suffix)
            return CompletionResult(text or None, replace, source="cache")

        ctx = CursorContext.from_text(
            request.prefix, request.suffix, settings.multiline, request.language_id
        )
        if ctx.mode is None:
            return CompletionResult(None, reason="skipped")
        debounce_ms = 0.0
        if not request.invoked:
            debounce_ms = self.debounce.delay_ms(ctx.line_prefix, ctx.line_suffix)
            await asyncio.sleep(debounce_ms / 1000.0)

        target = await self._target()
        route: Route = "fim" if await self._supports_fim(target) else "chat"
        parts = build_prompt(
            request.prefix,
            request.suffix,
            prefix_tokens=settings.prefix_tokens,
            suffix_tokens=settings.suffix_tokens,
            neighbours=request.neighbours if settings.open_documents_context else (),
            language_id=request.language_id,
            path=request.path,
            prefix_offset=request.prefix_offset,
        )
        started = self._clock()
        self.stats.upstream += 1
        raw = await self._generate(target, route, parts, ctx, settings)
        upstream_ms = (self._clock() - started) * 1000.0
        cleaned = clean(raw, ctx, route)
        self.cache.put(request.uri, request.prefix, request.suffix, cleaned)
        result = CompletionResult(
            None,
            source="model",
            reason="ok" if cleaned else "empty",
            debounce_ms=debounce_ms,
            upstream_ms=upstream_ms,
            route=route,
        )
        if cleaned:
            fitted, result.replace_chars = fit_to_line(cleaned, line_suffix)
            result.text = fitted or None
        return result

    async def _supports_fim(self, target: ModelTarget) -> bool:
        provider = target.provider
        key = (provider.name, provider.base_url, target.model)
        known = self._fim.get(key)
        if known is None:
            try:
                known = bool(await provider.supports_fim(target.model))
            except Exception as exc:
                logger.info("could not tell whether %s supports FIM: %s", target.model, exc)
                return False  # not remembered: the next request asks again
            self._fim[key] = known
        return known

    async def _generate(
        self,
        target: ModelTarget,
        route: Route,
        parts: PromptParts,
        ctx: CursorContext,
        settings: CompletionSettings,
    ) -> str:
        """Stream the final channel until it holds what post-processing will keep."""
        streams = self._streams or default_streams()
        self._streams = streams
        common: dict[str, Any] = {
            "temperature": settings.temperature,
            "keep_alive": target.keep_alive,
            "num_ctx": target.num_ctx,
        }
        request: ChatRequest | CompletionRequest
        if route == "fim":
            stop = ("\n",) if ctx.mode == "single" and ctx.line_prefix.strip() else ()
            request = CompletionRequest(
                target.model,
                prompt=parts.fim_prompt(),
                suffix=parts.suffix,
                settings=GenerationSettings(max_tokens=settings.max_tokens, stop=stop, **common),
            )
            events = streams.completion(target.provider, request)
        else:
            request = ChatRequest(
                target.model,
                parts.chat_messages(),
                settings=GenerationSettings(
                    reasoning_effort=target.effort,
                    max_tokens=settings.max_tokens + REASONING_ALLOWANCE,
                    **common,
                ),
            )
            events = streams.chat(target.provider, request)
        pieces: list[str] = []
        scope = self._tracker(target.model) if self._tracker else _quiet_scope()
        async with scope as run:
            try:
                async with aclosing(events) as stream:
                    async for event in stream:
                        if isinstance(event, TextDelta):
                            if event.channel != "final":
                                continue
                            pieces.append(event.text)
                            if stream_should_stop("".join(pieces), ctx, route):
                                break
                        elif isinstance(event, Done):
                            run.metrics = event.result.metrics
                            return event.result.text
            except Exception as exc:
                run.error = str(exc)
                raise
        return "".join(pieces)


@dataclass
class _Run:
    metrics: Metrics | None = None
    error: str | None = None


@asynccontextmanager
async def _quiet_scope() -> AsyncIterator[GenerationRun]:
    yield _Run()


def _line_suffix(suffix: str) -> str:
    end = suffix.find("\n")
    return suffix if end < 0 else suffix[:end]

"""The inline-completion pipeline: cache → adopt → debounce → generate → post-process.

Order matters for latency. The cache (including typing-through entries) is checked first, so
a hit never pays the debounce. Next, a model call still running for this document is adopted
when the user merely typed on from where it started (see `model_call.py`). Only then does a
request wait for the typing pause — not at all where this user's rhythm predicts one
(`debounce.py`) — and only after that are provider, model and prompt resolved.

Supersession: each document has at most one live request. A newer request cancels the task
serving the older one, which then answers with an empty result. The model call the older
request was waiting for is closed at once — its HTTP stream shut, so the server stops
generating — unless the newer request adopts it. `$/cancelRequest` reaches the same code
through pygls cancelling the handler task; since editors cancel the previous request right
before sending the next, a cancelled request's call gets a few milliseconds of grace in which
that next request may adopt it, after which it is closed.

First line first: where a block may follow (an empty line, after a block opener), the request
is answered as soon as the suggestion's first line is complete; the model call goes on and the
whole block replaces that line in the typing-through cache, so after Tab the next line comes
from memory. A request elsewhere in the document closes such a call.

Every request is answered: `complete()` catches its own cancellation and any provider failure
and *returns* an empty result.

Routing (`routes.py`, detected once per model): a model with FIM tokens gets prefix + suffix
(llama-server's `/infill`, Ollama's `suffix`); a model without them gets the prefix as a raw
prompt, stopped at the end of the line or block; only a server without a completion endpoint
gets the hole-filler chat, at low reasoning effort, capped in tokens, by `</COMPLETION>` and by
time — its reasoning is discarded, only the final channel is read, and `postprocess` strips
anything that leaked.

Nothing here imports pygls: the LSP module feeds plain strings in and gets plain text out, so
this is unit-testable and benchmarkable on its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from koma.engine.completion.cache import CompletionCache, key_suffix
from koma.engine.completion.debounce import AdaptiveDebounce
from koma.engine.completion.model_call import (
    Generation,
    ModelTarget,
    Outcome,
    Streams,
    TargetFn,
    Tracker,
    default_streams,
    stream_text,
)
from koma.engine.completion.postprocess import CursorContext, Route, clean, fit_to_line
from koma.engine.completion.prompt import build_prompt
from koma.engine.completion.request import CompletionInput, CompletionResult
from koma.engine.completion.ring import ContextRing
from koma.engine.completion.routes import RouteChoice, RouteSetting, choose_route
from koma.engine.completion.warmup import PromptCacheWarmer, warm_prompt_cache
from koma.engine.tokens import ring_budget_chars
from koma.settings import CompletionSettings

__all__ = ["CompletionInput", "CompletionPipeline", "CompletionResult", "ModelTarget", "Streams"]

logger = logging.getLogger("koma.completion")

# `completion.speculative`: how long after an answer the next suggestion is fetched (the
# answered call closes its stream first).
SPECULATE_AFTER_S = 0.05
# How long a cancelled request's model call waits for the next keystroke's request to adopt it.
ADOPT_GRACE_S = 0.005


@dataclass
class Stats:
    requests: int = 0
    cache_hits: int = 0
    upstream: int = 0
    adopted: int = 0
    # Blocks that finished streaming into the cache after their first line was answered.
    blocks_after_first_line: int = 0
    warm_ups: int = 0  # zero-token /infill requests sent while the user was idle
    speculative: int = 0  # calls started for the suggestion after an acceptance
    by_reason: dict[str, int] = field(default_factory=dict)


class CompletionPipeline:
    """Serves inline-completion requests; one instance per language server."""

    def __init__(
        self,
        target: TargetFn,
        settings: Callable[[], CompletionSettings],
        *,
        tracker: Tracker | None = None,
        streams: Streams | None = None,
        clock: Callable[[], float] = time.perf_counter,
        adopt_grace_s: float = ADOPT_GRACE_S,
    ) -> None:
        self._target = target
        self._settings = settings
        self._tracker = tracker
        self._streams = streams
        self._clock = clock
        self.adopt_grace_s = adopt_grace_s
        current = settings()
        self.cache = CompletionCache(current.cache_size)
        self.debounce = AdaptiveDebounce(current.debounce_ms)
        self._live: dict[str, asyncio.Task[Any]] = {}
        self._superseded: set[asyncio.Task[Any]] = set()
        self._adopters: set[asyncio.Task[Any] | None] = set()
        self._starters: set[asyncio.Task[Any] | None] = set()
        self._generations: dict[str, Generation] = {}
        self._routes: dict[tuple[str, str, str, str], RouteChoice] = {}
        # The model and route of the latest model call, for the status details.
        self.last_route: tuple[str, RouteChoice] | None = None
        self.stats = Stats()
        # Cross-file chunks from where the user worked recently (`ring.py`).
        self.ring = ContextRing()
        # Warms the server's prompt cache with the ring's chunks while the user is idle.
        self.warmer = PromptCacheWarmer(self.ring)

    # -- events from the editor ----------------------------------------------------------------

    def note_edit(self, uri: str) -> None:
        """A document changed: feeds the typing-rhythm estimate."""
        self.debounce.keystroke(uri)

    def forget(self, uri: str) -> None:
        """A document closed: drop its rhythm, cancel its request and its model call."""
        self.debounce.forget(uri)
        task = self._live.pop(uri, None)
        if task is not None and not task.done():
            self._superseded.add(task)
            task.cancel()
        generation = self._generations.pop(uri, None)
        if generation is not None:
            generation.close()

    def reconfigure(self) -> None:
        """Settings changed: a new model or window makes cached suggestions stale."""
        current = self._settings()
        self.cache.clear()
        self.cache.max_entries = current.cache_size
        self.debounce.fixed_ms = current.debounce_ms
        self._routes.clear()
        self.last_route = None
        for generation in self._generations.values():
            generation.close()
        self._generations.clear()

    def clear_cache(self) -> int:
        return self.cache.clear()

    # -- the request path ----------------------------------------------------------------------

    async def complete(self, request: CompletionInput) -> CompletionResult:
        """Answer one request; never raises, never hangs once its task is cancelled."""
        task = asyncio.current_task()
        self.stats.requests += 1
        self.warmer.cancel()  # the user is not idle: the real request goes first
        previous = self._live.get(request.uri)
        if previous is not None and previous is not task and not previous.done():
            self._superseded.add(previous)
            previous.cancel()
        if task is not None:
            self._live[request.uri] = task
        try:
            result = await self._complete(request, task)
        except asyncio.CancelledError:
            superseded = task in self._superseded
            result = CompletionResult(None, reason="superseded" if superseded else "cancelled")
        except Exception as exc:  # e.g. a provider that is down or dies mid-stream
            logger.warning("inline completion failed: %s", exc)
            result = CompletionResult(None, reason="error", error=str(exc))
        finally:
            took_over = task in self._adopters
            started_call = task in self._starters
            self._starters.discard(task)
            generation = self._generations.get(request.uri)
            if generation is not None:
                # Closes the model call now (superseded) or after a short grace (cancelled).
                grace = 0.0 if task in self._superseded else self.adopt_grace_s
                generation.let_go(task, grace)
            self._adopters.discard(task)
            if task is not None:
                self._superseded.discard(task)
                if self._live.get(request.uri) is task:
                    del self._live[request.uri]
        result.took_over = took_over
        result.started_call = started_call
        self.stats.by_reason[result.reason] = self.stats.by_reason.get(result.reason, 0) + 1
        if result.text is not None and result.source == "model" and self._settings().speculative:
            # Once the answered call has closed its stream (a few milliseconds).
            asyncio.get_running_loop().call_later(
                SPECULATE_AFTER_S, self._speculate, request, result
            )
        return result

    def _speculate(self, request: CompletionInput, result: CompletionResult) -> None:
        """`completion.speculative`: fetch the suggestion that follows this one's acceptance.

        The call is an ordinary in-flight generation for the text with the suggestion
        accepted, so the request that comes after Tab adopts it (or finds its answer cached);
        any other request for the document closes it (`typed_since` no longer matches). At most
        one runs at a time, never on the chat route, never over a call still running.
        """
        settings = self._settings()
        if not settings.speculative or result.replace_chars or result.route == "chat":
            return
        if request.uri in self._live:
            return  # the user typed on: a newer request is being served
        if any(not g.task.done() for g in self._generations.values()):
            return  # a call still runs (a block after its first line, another document)
        prefix = request.prefix + (result.text or "")
        if self.cache.peek(request.uri, prefix, request.suffix):
            return
        ctx = CursorContext.from_text(
            prefix, request.suffix, settings.multiline, request.language_id
        )
        if ctx.mode is None:
            return
        following = CompletionInput(
            request.uri,
            prefix,
            request.suffix,
            request.prefix_offset,
            request.language_id,
            request.path,
            neighbours=request.neighbours,
        )
        answer: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._generations[request.uri] = Generation(
            request.uri,
            prefix,
            request.prefix_offset + len(prefix),
            key_suffix(request.suffix),
            answer,
            asyncio.create_task(self._generate(following, ctx, settings, answer)),
        )
        self.stats.speculative += 1

    async def _complete(
        self, request: CompletionInput, task: asyncio.Task[Any] | None
    ) -> CompletionResult:
        settings = self._settings()
        if not settings.enabled:
            return CompletionResult(None, reason="disabled")
        line_suffix = _line_suffix(request.suffix)
        # Every request, answered from the cache or not, teaches the predictor where the
        # keystroke before it left the cursor.
        self.debounce.note_context(request.uri, request.prefix[request.prefix.rfind("\n") + 1 :])
        self._drop_stale_block(request)
        hit = self.cache.get(request.uri, request.prefix, request.suffix)
        if hit is not None:
            self.stats.cache_hits += 1
            if hit.text is None:
                return CompletionResult(None, source="cache", reason="empty")
            text, replace = fit_to_line(hit.text, line_suffix)
            return CompletionResult(text or None, replace, source="cache")

        waited_ms = 0.0
        running = self._generations.get(request.uri)
        if running is not None and running.running:
            typed = running.typed_since(request.prefix, request.prefix_offset, request.suffix)
            if typed is None:
                running.close()  # the user went elsewhere: stop the model now
                del self._generations[request.uri]
            else:
                running.adopt(task)
                self._adopters.add(task)
                self.stats.adopted += 1
                waiting = self._clock()
                outcome = await asyncio.shield(running.answer)
                waited_ms = (self._clock() - waiting) * 1000.0
                result = _result(outcome, typed, line_suffix, 0.0)
                result.adopted = True
                if result.text is not None or outcome.error is not None:
                    return result
                # The answer did not match what was typed meanwhile: ask again below.

        ctx = CursorContext.from_text(
            request.prefix, request.suffix, settings.multiline, request.language_id
        )
        if ctx.mode is None:
            return CompletionResult(None, reason="skipped")
        debounce_ms = 0.0
        if not request.invoked:
            debounce_ms = self.debounce.delay_ms(ctx.line_prefix, ctx.line_suffix)
            await asyncio.sleep(debounce_ms / 1000.0)
        answer: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        generation = Generation(
            request.uri,
            request.prefix,
            request.prefix_offset + len(request.prefix),
            key_suffix(request.suffix),
            answer,
            asyncio.create_task(self._generate(request, ctx, settings, answer)),
            holder=task,
        )
        previous = self._generations.get(request.uri)
        if previous is not None:
            previous.close()
        self._generations[request.uri] = generation
        self._starters.add(task)
        self.stats.upstream += 1
        outcome = await asyncio.shield(answer)
        if outcome.error is None:
            self.debounce.note_latency(outcome.upstream_ms)  # what an early request costs
        result = _result(outcome, "", line_suffix, debounce_ms)
        result.waited_ms = waited_ms
        return result

    async def _generate(
        self,
        request: CompletionInput,
        ctx: CursorContext,
        settings: CompletionSettings,
        answer: asyncio.Future[Outcome],
    ) -> None:
        """One model call; its post-processed answer is cached even if nobody waits anymore."""
        started = self._clock()
        sent: list[str] = []  # the first line, when it was answered before the block ended

        def publish_first_line(raw: str) -> None:
            """Answer with the first line now; the block keeps streaming into `publish`."""
            if answer.done():
                return
            cleaned = clean(raw, ctx, route)
            if not cleaned:
                return
            sent.append(cleaned)
            self.cache.put(request.uri, request.prefix, request.suffix, cleaned)
            answer.set_result(Outcome(cleaned, route, (self._clock() - started) * 1000.0))

        def publish(raw: str) -> None:
            cleaned = clean(raw, ctx, route)
            if answer.done():
                # The first line went out already: the whole block replaces it in the cache,
                # so after Tab the next line is served from memory with no new model call.
                if sent and cleaned and cleaned.startswith(sent[0]) and cleaned != sent[0]:
                    self.cache.put(request.uri, request.prefix, request.suffix, cleaned)
                    self.stats.blocks_after_first_line += 1
                return
            self.cache.put(request.uri, request.prefix, request.suffix, cleaned)
            answer.set_result(Outcome(cleaned, route, (self._clock() - started) * 1000.0))

        try:
            target = await self._target()
            choice = await self.route_for(target, settings.route)
            route: Route = choice.route
            extra: list[tuple[str, str]] = []
            if settings.open_documents_context:
                around = request.prefix[-2000:] + request.suffix[:500]
                budget = ring_budget_chars(settings.prefix_tokens)
                extra = [(c.name, c.text) for c in self.ring.chunks_for(around, budget)]
            parts = build_prompt(
                request.prefix,
                request.suffix,
                extra=extra,
                prefix_tokens=settings.prefix_tokens,
                suffix_tokens=settings.suffix_tokens,
                neighbours=request.neighbours if settings.open_documents_context else (),
                language_id=request.language_id,
                path=request.path,
                prefix_offset=request.prefix_offset,
            )
            started = self._clock()
            streams = self._streams or default_streams()
            self._streams = streams
            raw = await stream_text(
                target,
                choice,
                parts,
                ctx,
                settings,
                streams,
                self._tracker,
                publish,
                on_first_line=publish_first_line,
            )
            publish(raw)
        except Exception as exc:  # provider down, dies mid-stream, model missing…
            logger.warning("inline completion failed: %s", exc)
            if not answer.done():
                answer.set_result(Outcome(None, error=str(exc)))
        finally:
            if not answer.done():
                answer.cancel()  # cancelled before it knew anything: waiters see a cancel

    # -- background warm-up of the server's prompt cache -------------------------------------

    def ring_changed(self) -> None:
        """The context ring gained a chunk: once the user is idle, warm the server's cache
        (`warmup.py`); only where the latest completion went to llama-server's `/infill`."""
        if self.last_route is None or not self.last_route[1].infill:
            return
        self.warmer.schedule(self._warm_up)

    async def _warm_up(self) -> None:
        settings = self._settings()
        target = await self._target()
        choice = await self.route_for(target, settings.route)
        if not choice.infill or not settings.open_documents_context:
            return
        streams = self._streams or default_streams()
        await warm_prompt_cache(
            streams, target, self.ring, ring_budget_chars(settings.prefix_tokens)
        )
        self.stats.warm_ups += 1

    def _drop_stale_block(self, request: CompletionInput) -> None:
        """Stop a block still streaming after its first line once the user went elsewhere."""
        block = self._generations.get(request.uri)
        if block is None or block.running or block.task.done():
            return
        if block.typed_since(request.prefix, request.prefix_offset, request.suffix) is None:
            block.close()
            del self._generations[request.uri]

    async def route_for(self, target: ModelTarget, setting: RouteSetting) -> RouteChoice:
        """The route for this provider and model (detected once, then remembered)."""
        provider = target.provider
        key = (provider.name, provider.base_url, target.model, setting)
        known = self._routes.get(key)
        if known is None:
            known = await choose_route(provider, target.model, setting)
            if known.detected:
                self._routes[key] = known  # a failed detection is asked again next time
        self.last_route = (target.model, known)
        return known


def _result(outcome: Outcome, typed: str, line_suffix: str, debounce_ms: float) -> CompletionResult:
    """The answer for a request that typed `typed` since the generation started."""
    if outcome.error is not None:
        return CompletionResult(None, source="model", reason="error", error=outcome.error)
    result = CompletionResult(
        None,
        source="model",
        reason="empty",
        debounce_ms=debounce_ms,
        upstream_ms=outcome.upstream_ms,
        route=outcome.route,
    )
    text = outcome.text
    if text and text.startswith(typed) and len(text) > len(typed):
        fitted, result.replace_chars = fit_to_line(text[len(typed) :], line_suffix)
        if fitted:
            result.text, result.reason = fitted, "ok"
    return result


def _line_suffix(suffix: str) -> str:
    end = suffix.find("\n")
    return suffix if end < 0 else suffix[:end]

"""Warming llama-server's prompt cache with the context ring while the user is idle.

Cross-file chunks (`ring.py`) go in front of every `/infill` prompt as `input_extra`. When the
ring gains a chunk, the next suggestion would pay for evaluating it; llama.vim avoids that by
sending a zero-token request with the new chunks once the user pauses, so the server has them
in its KV cache before the next keystroke asks. This is that background job, kept apart from the
request path (`pipeline.py`) because it is driven by the ring and an idle timer, not by a
completion request — a request only cancels it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import aclosing

from koma.engine.completion.model_call import ModelTarget, Streams
from koma.engine.completion.ring import ContextRing
from koma.providers.base import CompletionRequest, InfillOptions

logger = logging.getLogger("koma.completion")

# How long the user must be idle after the context ring changed before the cache is warmed.
WARM_UP_IDLE_S = 1.0


class PromptCacheWarmer:
    """At most one warm-up: scheduled after an idle pause, cancelled by any request."""

    def __init__(self, ring: ContextRing, idle_s: float = WARM_UP_IDLE_S) -> None:
        self.ring = ring
        self.idle_s = idle_s
        self._version = 0  # the ring version last sent
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def schedule(self, warm: Callable[[], Awaitable[None]]) -> None:
        """Run `warm` once the user has been idle `idle_s`, unless the ring is already sent."""
        if self.ring.version == self._version:
            return
        self.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.idle_s, self._start, warm)

    def cancel(self) -> None:
        """The user is typing: the real request goes first."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None

    def _start(self, warm: Callable[[], Awaitable[None]]) -> None:
        self._timer = None
        self._version = self.ring.version
        self._task = asyncio.get_running_loop().create_task(self._run(warm))

    @staticmethod
    async def _run(warm: Callable[[], Awaitable[None]]) -> None:
        try:
            await warm()
        except Exception as exc:  # a warm-up is an optimisation: never an error for the user
            logger.info("prompt-cache warm-up failed: %s", exc)


async def warm_prompt_cache(
    streams: Streams, target: ModelTarget, ring: ContextRing, budget_chars: int
) -> None:
    """Send the ring's chunks as a zero-token `/infill`, in the order a prompt would carry them."""
    chunks = [(c.name, c.text + "\n") for c in ring.chunks_for("", budget_chars)]
    request = CompletionRequest(
        target.model, prompt="", suffix="", infill=InfillOptions(extra=tuple(chunks), n_predict=0)
    )
    events = streams.completion(target.provider, request)
    async with aclosing(events):
        async for _ in events:
            pass

"""Timings of one generation: the server's own numbers when it sends them, ours otherwise.

Ollama, LM Studio and llama.cpp report durations measured next to the model, which exclude
network and parsing; the provider turns them into a `Metrics` with `source="server"`. Servers
that report nothing still get a time to first token, tokens per second and a total measured
here, on a monotonic clock, from the moment the request starts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace

from koma.types import Metrics


class StreamClock:
    """Client-side stopwatch for one stream: start, first token, last token, end."""

    __slots__ = ("_now", "end", "first_token", "last_token", "start", "tokens")

    def __init__(self, now: Callable[[], float] = time.perf_counter) -> None:
        self._now = now
        self.start = now()
        self.first_token: float | None = None
        self.last_token: float | None = None
        self.end: float | None = None
        self.tokens = 0

    def token(self) -> None:
        """A wire chunk carrying text (of any channel) arrived."""
        now = self._now()
        if self.first_token is None:
            self.first_token = now
        self.last_token = now
        self.tokens += 1

    def stop(self) -> None:
        self.end = self._now()

    def measured(self, completion_tokens: int | None = None, *, rate: bool = True) -> Metrics:
        """What the client saw; `completion_tokens` (server usage) beats counted chunks."""
        end = self.end if self.end is not None else self._now()
        ttft = _ms(self.first_token - self.start) if self.first_token is not None else None
        tps = None
        count = completion_tokens if completion_tokens else self.tokens
        if rate and self.first_token is not None and self.last_token is not None and count > 1:
            # The first token's time belongs to ttft; the rest were generated after it.
            span = self.last_token - self.first_token
            if span > 0:
                tps = (count - 1) / span
        return Metrics(ttft_ms=ttft, tokens_per_second=tps, total_ms=_ms(end - self.start))


def merge_metrics(server: Metrics | None, client: Metrics) -> Metrics:
    """Server-reported fields win; the client fills what the server left out."""
    if server is None:
        return client
    return replace(
        server,
        ttft_ms=_first(server.ttft_ms, client.ttft_ms),
        tokens_per_second=_first(server.tokens_per_second, client.tokens_per_second),
        total_ms=_first(server.total_ms, client.total_ms),
        source="server",
    )


# Faster than any local model generates: a rate above this is a timing artefact (a server that
# timed one token over a microsecond), not a measurement.
MAX_PLAUSIBLE_RATE = 100_000.0


def plausible_rate(metrics: Metrics, generated: int) -> Metrics:
    """`metrics` without a tokens-per-second figure that cannot be a real rate.

    A rate needs at least two generated tokens (the first one's time is the time to first
    token); servers still report one for zero or one token, e.g. 1,000,000,000 tok/s.
    """
    rate = metrics.tokens_per_second
    if rate is None:
        return metrics
    if generated < 2 or not math.isfinite(rate) or rate <= 0 or rate > MAX_PLAUSIBLE_RATE:
        return replace(metrics, tokens_per_second=None)
    return metrics


def _first(a: float | None, b: float | None) -> float | None:
    return a if a is not None else b


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)

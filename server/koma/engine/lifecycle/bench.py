"""`koma bench MODEL`: time to first token, tokens per second and memory over a few prompts.

As docs/local-models.md ("Measure") describes it: run some generation, then report how long the
first token took, how fast tokens came, and how much memory the model holds. Timings are the
server's own when it reports them (Ollama durations, llama.cpp timings), else measured here;
memory is what the server says the loaded model occupies (Ollama's `/api/ps` size, weights plus
KV cache) — None where the server does not say.

The first prompt usually pays for loading the model; its load time is reported apart so the
medians describe a warm model.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from koma.engine.lifecycle.context import find_model
from koma.engine.stream import collect, stream_events
from koma.providers.base import ChatRequest, Provider
from koma.types import GenerationResult, GenerationSettings, Message

logger = logging.getLogger(__name__)

DEFAULT_PROMPTS: tuple[str, ...] = (
    "Write a Python function that returns the n-th Fibonacci number.",
    "Explain in two sentences what a mutex is.",
    "List three uses of a hash map.",
)
DEFAULT_SETTINGS = GenerationSettings(max_tokens=128, reasoning_effort="low", temperature=0)


@dataclass
class LocalModelMetrics:
    """One measured generation: time to first token, tokens/s, memory."""

    time_to_first_token_ms: float | None
    tokens_per_second: float | None
    total_ms: float | None
    completion_tokens: int | None
    load_ms: float | None
    memory_used_bytes: int | None
    result: GenerationResult | None = field(default=None, repr=False)

    @property
    def memory_used_gb(self) -> float | None:
        return self.memory_used_bytes / 1e9 if self.memory_used_bytes is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ttft_ms": self.time_to_first_token_ms,
            "tokens_per_second": self.tokens_per_second,
            "total_ms": self.total_ms,
            "completion_tokens": self.completion_tokens,
            "load_ms": self.load_ms,
            "memory_used_bytes": self.memory_used_bytes,
        }

    @classmethod
    async def measure(
        cls, provider: Provider, model: str, work: Callable[[], Awaitable[GenerationResult]]
    ) -> LocalModelMetrics:
        """Run `work` (one generation on `model`) and measure it."""
        started = time.perf_counter()
        result = await work()
        elapsed_ms = (time.perf_counter() - started) * 1000
        metrics = result.metrics
        return cls(
            time_to_first_token_ms=metrics.ttft_ms,
            tokens_per_second=metrics.tokens_per_second,
            total_ms=metrics.total_ms if metrics.total_ms is not None else elapsed_ms,
            completion_tokens=result.usage.completion_tokens,
            load_ms=metrics.load_ms,
            memory_used_bytes=await model_memory(provider, model),
            result=result,
        )


async def model_memory(provider: Provider, model: str) -> int | None:
    """What the loaded model occupies according to the server; None when it does not say."""
    try:
        loaded = find_model(await provider.loaded_models(), model)
    except Exception as exc:  # any provider's failure only costs the benchmark one column
        logger.debug("no memory figure for %s: %s", model, exc)
        return None
    return loaded.size_bytes if loaded is not None else None


@dataclass
class BenchReport:
    model: str
    provider: str
    runs: list[LocalModelMetrics]
    prompts: list[str]

    def _median(self, values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None

    @property
    def warm_runs(self) -> list[LocalModelMetrics]:
        """Runs after the first when the first one loaded the model."""
        if len(self.runs) > 1 and self.runs[0].load_ms and self.runs[0].load_ms > 1:
            return self.runs[1:]
        return self.runs

    def summary(self) -> dict[str, Any]:
        warm = self.warm_runs
        memory = [r.memory_used_bytes for r in self.runs if r.memory_used_bytes is not None]
        return {
            "ttft_ms": self._median([r.time_to_first_token_ms for r in warm]),
            "tokens_per_second": self._median([r.tokens_per_second for r in warm]),
            "total_ms": self._median([r.total_ms for r in warm]),
            "load_ms": self.runs[0].load_ms if self.runs else None,
            "memory_used_bytes": max(memory) if memory else None,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "provider": self.provider,
            "summary": self.summary(),
            "runs": [
                {"prompt": prompt, **run.to_dict()}
                for prompt, run in zip(self.prompts, self.runs, strict=True)
            ],
        }


async def bench(
    provider: Provider,
    model: str,
    prompts: Sequence[str] = DEFAULT_PROMPTS,
    settings: GenerationSettings = DEFAULT_SETTINGS,
    on_run: Callable[[int, LocalModelMetrics], None] | None = None,
) -> BenchReport:
    """Measure each prompt in turn (not concurrently: concurrency would skew tokens/s)."""
    runs: list[LocalModelMetrics] = []
    for index, prompt in enumerate(prompts):
        request = ChatRequest(model, [Message.user(prompt)], settings)

        async def work(request: ChatRequest = request) -> GenerationResult:
            async with aclosing(stream_events(provider, request)) as events:
                return await collect(events)

        run = await LocalModelMetrics.measure(provider, model, work)
        runs.append(run)
        if on_run is not None:
            on_run(index, run)
    return BenchReport(model, provider.name, runs, list(prompts))

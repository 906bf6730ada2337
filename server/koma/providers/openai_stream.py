"""An OpenAI `chat/completions` (or `completions`) event stream assembled into `WireChunk`s.

The wire spreads one answer over many events: text and reasoning deltas, tool calls sent in
fragments keyed by index (or whole, or by id only, depending on the server), a finish reason,
and statistics in three dialects (OpenAI `usage`, llama.cpp `timings`, LM Studio `stats`).
`StreamState` keeps what spans events and hands back text as it comes and the calls, finish
and statistics at the end; the provider (`openai_compat.py`) only builds requests and feeds it
validated records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from koma.providers.base import WireChunk
from koma.providers.wire import OpenAIChunk, OpenAIDelta, OpenAIToolCall, validate_record
from koma.types import Metrics, ToolCall, Usage, decode_arguments


@dataclass
class _PendingCall:
    id: str | None = None
    name: str = ""
    arguments: str = ""


@dataclass
class StreamState:
    """What a chat/completions stream says across chunks: tool-call pieces, finish, stats."""

    calls: dict[int, _PendingCall] = field(default_factory=dict)
    finish_reason: str | None = None
    finished: bool = False
    usage: Usage | None = None
    metrics: Metrics | None = None
    cached_tokens: int | None = None

    def feed(self, record: OpenAIChunk | dict[str, Any]) -> WireChunk | None:
        """Absorb one event; return the text it carries, if any.

        A raw dict is validated first (a wrong type raises `StreamError`).
        """
        obj = (
            record
            if isinstance(record, OpenAIChunk)
            else validate_record(OpenAIChunk, record, "the server")
        )
        self._stats(obj)
        choice = obj.choices[0] if obj.choices else None
        if choice is None:
            return None
        if choice.finish_reason:
            self.finish_reason = choice.finish_reason
            self.finished = True
        # `message` instead of `delta`: servers that ignore `stream` send one whole answer.
        delta = choice.delta or choice.message or OpenAIDelta()
        content = delta.content or choice.text or ""
        reasoning = delta.reasoning or delta.reasoning_content or ""
        for i, piece in enumerate(delta.tool_calls or []):
            self._add_call_piece(i, piece)
        if content or reasoning:
            return WireChunk(content=content, reasoning=reasoning)
        return None

    def _add_call_piece(self, position: int, piece: OpenAIToolCall) -> None:
        index = piece.index
        if index is None:
            # Servers that send whole calls without an index: match by id, else by position.
            by_id = {c.id: i for i, c in self.calls.items() if c.id}
            index = position if piece.id is None else by_id.get(piece.id, len(self.calls))
        call = self.calls.setdefault(index, _PendingCall())
        if piece.id:
            call.id = piece.id
        fn = piece.function
        if fn is None:
            return
        if fn.name:
            call.name = fn.name
        if isinstance(fn.arguments, str):
            call.arguments += fn.arguments
        elif isinstance(fn.arguments, dict):
            call.arguments = json.dumps(fn.arguments, ensure_ascii=False)

    def _stats(self, obj: OpenAIChunk) -> None:
        if obj.usage is not None:
            details = obj.usage.prompt_tokens_details
            cached = details.cached_tokens if details else None
            self.usage = Usage(obj.usage.prompt_tokens, obj.usage.completion_tokens, cached)
        timings = obj.timings
        if timings is not None:
            self.metrics = metrics_from_timings(timings)
            cache_n = timings.get("cache_n")
            if isinstance(cache_n, int) and not isinstance(cache_n, bool):
                self.cached_tokens = cache_n
        if obj.stats is not None:
            self.metrics = metrics_from_stats(obj.stats) or self.metrics

    def final(self) -> WireChunk:
        calls = [
            ToolCall(name=c.name, arguments=decode_arguments(c.arguments), id=c.id)
            for _, c in sorted(self.calls.items())
        ]
        usage = self.usage
        if self.cached_tokens is not None:
            usage = usage or Usage()
            usage.cached_tokens = usage.cached_tokens or self.cached_tokens
        return WireChunk(
            tool_calls=calls,
            done=True,
            finish_reason=self.finish_reason,
            usage=usage,
            metrics=self.metrics,
        )


def metrics_from_timings(timings: dict[str, Any]) -> Metrics:
    """llama.cpp `timings` (milliseconds already)."""
    prompt_ms = _number(timings.get("prompt_ms"))
    predicted_ms = _number(timings.get("predicted_ms"))
    total = prompt_ms + predicted_ms if prompt_ms is not None and predicted_ms is not None else None
    return Metrics(
        ttft_ms=prompt_ms,
        tokens_per_second=_number(timings.get("predicted_per_second")),
        total_ms=total,
        prompt_ms=prompt_ms,
        source="server",
    )


def metrics_from_stats(stats: dict[str, Any]) -> Metrics | None:
    """LM Studio `stats` (seconds)."""
    tps = _number(stats.get("tokens_per_second"))
    ttft_s = _number(stats.get("time_to_first_token"))
    gen_s = _number(stats.get("generation_time"))
    if tps is None and ttft_s is None:
        return None
    total = (ttft_s or 0.0) + gen_s if gen_s is not None else None
    return Metrics(
        ttft_ms=ttft_s * 1000 if ttft_s is not None else None,
        tokens_per_second=tps,
        total_ms=total * 1000 if total is not None else None,
        source="server",
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

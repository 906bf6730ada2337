"""Plays a scripted reply token by token with the configured timing, independent of wire format.

Each wire module supplies an `emit(kind, text)` callback; this module owns the waits (load,
time to first token, per-token delay), token limits, mid-stream errors and the timing numbers
the servers report (Ollama's nanosecond durations, llama.cpp timings, LM Studio stats).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from koma_sim.script import Reply
from koma_sim.transport import Exchange

Emit = Callable[[str, str], None]


@dataclass
class Playback:
    """What was generated and when (perf_counter seconds)."""

    t_start: float
    t_loaded: float = 0.0
    t_first: float | None = None
    t_last: float | None = None
    t_end: float = 0.0
    thinking: str = ""
    content: str = ""
    count: int = 0
    finish: str = "stop"  # stop | length | error | tool_calls
    delay_s: float = 0.0
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def prompt_s(self) -> float:
        """Time from loaded to first token (prompt processing)."""
        first = self.t_first if self.t_first is not None else self.t_end
        return max(first - self.t_loaded, 1e-6)

    @property
    def eval_s(self) -> float:
        """Generation time: first to last token plus one token's worth."""
        if self.t_first is None or self.t_last is None:
            return 1e-6
        return max(self.t_last - self.t_first + self.delay_s, 1e-6)

    @property
    def load_s(self) -> float:
        """Time spent loading the model for this request."""
        return max(self.t_loaded - self.t_start, 0.0)

    def ollama_durations(self, prompt_tokens: int) -> dict[str, Any]:
        """Ollama's final-chunk statistics, in nanoseconds."""
        # eval counts one token interval more than first-to-last, so keep the sum consistent
        parts = self.load_s + self.prompt_s + self.eval_s
        return {
            "total_duration": int(max(self.t_end - self.t_start, parts) * 1e9),
            "load_duration": int(self.load_s * 1e9),
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": int(self.prompt_s * 1e9),
            "eval_count": self.count + self.tool_tokens,
            "eval_duration": int(self.eval_s * 1e9),
        }

    @property
    def tool_tokens(self) -> int:
        """Tokens the tool calls would have cost (4 characters a token)."""
        return sum((len(json.dumps(c)) + 3) // 4 for c in self.tool_calls)

    @property
    def completion_tokens(self) -> int:
        """Generated tokens including tool calls."""
        return self.count + self.tool_tokens


def ms(value: float | None, default: float) -> float:
    """Milliseconds (reply override or simulator default) as seconds."""
    return max(0.0, value if value is not None else default) / 1000.0


def play(
    ex: Exchange,
    reply: Reply,
    emit: Emit,
    *,
    load_s: float = 0.0,
    limit: int | None = None,
    with_thinking: bool = True,
    stop: list[str] | None = None,
) -> Playback:
    """Stream the reply's tokens through `emit`, honouring waits, limits and scripted errors.

    Raises ClientGone as soon as the client disconnects. Tool calls are not emitted here;
    `result.finish == "tool_calls"` tells the wire to send them after the text.
    """
    sim = ex.sim
    delay = ms(reply.token_delay_ms, sim.token_delay_ms)
    result = Playback(t_start=ex.record.started_at, delay_s=delay)
    ex.wait(load_s)
    result.t_loaded = time.perf_counter()
    pieces = reply.pieces()
    if not with_thinking:
        pieces = [p for p in pieces if p[0] != "thinking"]
    if reply.error_after_tokens is not None:
        pieces = pieces[: max(0, reply.error_after_tokens)]
        result.finish = "error"
    elif limit is not None and limit >= 0 and len(pieces) > limit:
        pieces = pieces[:limit]
        result.finish = "length"
    elif reply.tool_calls:
        result.finish = "tool_calls"
        result.tool_calls = reply.tool_calls
    elif reply.done_reason != "stop":
        result.finish = reply.done_reason
    ex.wait(ms(reply.ttft_ms, sim.ttft_ms))
    stops = [word for word in stop or [] if word]
    held = ""  # content that may be the start of a stop sequence: not sent yet
    for index, (kind, text) in enumerate(pieces):
        if index:
            ex.wait(delay)
        else:
            ex.wait(0)
        stopping = False
        if stops and kind != "thinking":
            # A stop sequence ends the answer and is not part of it; a piece that may begin
            # one is held back until it is known not to (as llama.cpp and Ollama do).
            held += text
            cut = min((held.find(word) for word in stops if word in held), default=-1)
            if cut >= 0:
                text, held = held[:cut], ""
                result.finish = "stop"
                stopping = True
            else:
                keep = _partial_stop(held, stops)
                text, held = held[: len(held) - keep], held[len(held) - keep :]
            if not text:
                if stopping:
                    break
                continue
        _sent(ex, result, emit, kind, text)
        if stopping:
            break
    if held:
        _sent(ex, result, emit, "content", held)
    if result.finish == "tool_calls" and pieces:
        ex.wait(delay)
    result.t_end = time.perf_counter()
    return result


def _sent(ex: Exchange, result: Playback, emit: Emit, kind: str, text: str) -> None:
    """Emit one piece and account for it."""
    emit(kind, text)
    now = time.perf_counter()
    if result.t_first is None:
        result.t_first = now
    result.t_last = now
    result.count += 1
    ex.record.tokens_sent += 1
    if kind == "thinking":
        result.thinking += text
    else:
        result.content += text


def _partial_stop(text: str, stops: list[str]) -> int:
    """Length of the longest end of `text` that begins some stop sequence."""
    best = 0
    for word in stops:
        for size in range(min(len(word) - 1, len(text)), best, -1):
            if text.endswith(word[:size]):
                best = size
                break
    return best


def finish_time(result: Playback) -> None:
    """Stamp the end of generation (after tool calls were sent)."""
    result.t_end = time.perf_counter()


def split_fragments(text: str, count: int) -> list[str]:
    """Cut a tool call's argument JSON into `count` consecutive pieces (none empty)."""
    count = max(1, min(count, len(text) or 1))
    step = -(-len(text) // count) if text else 1
    return [text[i : i + step] for i in range(0, len(text), step)] or [""]

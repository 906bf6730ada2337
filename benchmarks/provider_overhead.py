"""Provider overhead: how long Koma itself adds before the first token reaches the caller.

For each run against the loopback simulator (real HTTP on 127.0.0.1, no model):

    overhead = (first content event at the caller − call started)
             − (simulator wrote its first byte − simulator received the request)

so the simulator's own time to first byte is subtracted and what remains is Koma's request
building, connection reuse, HTTP and stream parsing — plus, for the "engine" rows, the channel
parser and event stream (`koma.engine.stream.stream_events`). The simulator runs in this
process (same clock), so Python's GIL is shared: the numbers are an upper bound.

    python benchmarks/provider_overhead.py [--runs 300] [--warmup 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import httpx

from common import fmt_ms, percentile, print_table, section, write_section
from koma.engine.stream import stream_events
from koma.providers.base import ChatRequest, Provider
from koma.providers.ollama import OllamaProvider
from koma.providers.openai_compat import OpenAICompatProvider
from koma.types import GenerationSettings, Message, TextDelta
from koma_sim import Reply, Simulator

MODEL = "gpt-oss:20b"
CHAT_ENDPOINTS = ("chat", "chat_completions")
ANSWER = "Sure. Here is a short answer that streams as several tokens."


@dataclass
class Samples:
    overhead: list[float] = field(default_factory=list)
    before_server: list[float] = field(default_factory=list)
    after_first_byte: list[float] = field(default_factory=list)


async def first_content(stream: AsyncIterator[object]) -> float:
    """When the first piece of answer text arrived; the stream is closed right after."""
    async with aclosing(stream) as items:  # type: ignore[type-var]
        async for item in items:
            text = item.text if isinstance(item, TextDelta) else getattr(item, "content", "")
            if text:
                return time.perf_counter()
    raise RuntimeError("the stream ended without any text")


async def plain_stream(
    http: httpx.AsyncClient, url: str, body: dict[str, Any]
) -> AsyncIterator[TextDelta]:
    """The floor: a bare httpx stream, parsed only as far as the first text."""
    async with http.stream("POST", url, json=body) as response:
        async for line in response.aiter_lines():
            data = line.removeprefix("data: ")
            if not data.startswith("{"):
                continue
            chunk = json.loads(data)
            text = (chunk.get("message") or {}).get("content") or (
                (chunk.get("choices") or [{}])[0].get("delta") or {}
            ).get("content")
            if text:
                yield TextDelta("final", text)


async def measure(
    sim: Simulator, open_stream: Callable[[], AsyncIterator[Any]], runs: int, warmup: int
) -> Samples:
    samples = Samples()
    for i in range(warmup + runs):
        seen = len(sim.requests)
        started = time.perf_counter()
        arrived = await first_content(open_stream())
        # Only the streamed chat counts (the Ollama provider also asks /api/show once).
        chats = [r for r in sim.requests[seen:] if r.endpoint in CHAT_ENDPOINTS]
        if len(chats) != 1:
            raise RuntimeError(f"expected one chat request, got {chats}")
        record = chats[0]
        # The simulator's thread notes its first byte just after writing it; let it finish.
        sim.wait_for_completion(record, timeout=10)
        if record.first_byte_at is None:
            raise RuntimeError(f"the simulator recorded no first byte: {record}")
        if i < warmup:
            continue
        server_ttfb = record.first_byte_at - record.started_at
        samples.overhead.append((arrived - started - server_ttfb) * 1000)
        samples.before_server.append((record.started_at - started) * 1000)
        samples.after_first_byte.append((arrived - record.first_byte_at) * 1000)
    return samples


WIRES: dict[str, tuple[str, Callable[[Simulator], Provider], str]] = {
    "Ollama (NDJSON)": ("ollama", lambda sim: OllamaProvider(sim.url), "/api/chat"),
    "OpenAI-compatible (SSE)": (
        "llamacpp",
        lambda sim: OpenAICompatProvider(sim.openai_url, preset="llamacpp"),
        "/v1/chat/completions",
    ),
}


Wire = tuple[str, Callable[[Simulator], Provider], str]


async def measure_wire(label: str, wire: Wire, runs: int, warmup: int) -> list[list[str]]:
    flavor, make, path = wire
    request = ChatRequest(MODEL, [Message.user("hello")], GenerationSettings(max_tokens=64))
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "stream": True}
    rows: list[list[str]] = []
    with Simulator(flavor=flavor, default_reply=Reply(content=ANSWER)) as sim:
        provider = make(sim)
        http = httpx.AsyncClient(timeout=30, trust_env=False)
        levels: dict[str, Callable[[], AsyncIterator[Any]]] = {
            "bare httpx (floor)": lambda: plain_stream(http, sim.url + path, body),
            "provider": lambda: provider.chat(request),
            "provider + engine": lambda: stream_events(provider, request),
        }
        try:
            for level, open_stream in levels.items():
                s = await measure(sim, open_stream, runs, warmup)
                rows.append(
                    [
                        label,
                        level,
                        fmt_ms(percentile(s.overhead, 50), 2),
                        fmt_ms(percentile(s.overhead, 95), 2),
                        fmt_ms(percentile(s.before_server, 50), 2),
                        fmt_ms(percentile(s.after_first_byte, 50), 2),
                    ]
                )
        finally:
            await provider.aclose()
            await http.aclose()
    return rows


async def run(runs: int, warmup: int) -> list[list[str]]:
    rows: list[list[str]] = []
    for label, wire in WIRES.items():
        rows += await measure_wire(label, wire, runs, warmup)
    return rows


COLUMNS = [
    "wire",
    "measured at",
    "overhead p50",
    "overhead p95",
    "call → server p50",
    "first byte → event p50",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    rows = asyncio.run(run(args.runs, args.warmup))
    print_table("Provider overhead before the first token", COLUMNS, rows)
    summary = (
        "Time Koma adds before the first token reaches the caller: the caller's time to first "
        "content event minus the simulator's own time to first byte, over "
        f"{args.runs} streamed chat requests per row (after {args.warmup} warm-up requests) on "
        "a kept-alive loopback connection. *call → server* is request building and sending; "
        "*first byte → event* is HTTP and stream parsing (and, for the engine rows, the channel "
        "parser and event stream). The *bare httpx* rows are the floor — the same request "
        "made with httpx alone and parsed only up to the first text — so Koma's own share is "
        "the difference between a provider row and the floor above it."
    )
    notes = (
        "The simulator runs in the benchmark's own process (one clock, no model), so both share "
        "the GIL: these are upper bounds. A local model's own time to first token is hundreds "
        "of milliseconds; Koma adds a few, and part of those is the simulator's own "
        "request parsing (its clock starts once it has read the whole request)."
    )
    write_section(
        "provider_overhead",
        section("Provider overhead (issue 2)", summary, COLUMNS, rows, notes),
    )


if __name__ == "__main__":
    main()

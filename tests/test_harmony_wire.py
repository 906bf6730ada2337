"""The Harmony corpus over real HTTP: raw Harmony in `content`, as `llama-server
--reasoning-format none` or a degraded LM Studio / Ollama template hands it over, through the
OpenAI-compatible and the Ollama wire, the provider and the engine's stream.

Each vector is streamed whole, one character per chunk, and cut in two at every eighth
position (the two wires four apart; the parser's own tests cut at every position); every way
gives the same channels and calls, and no final delta ever shows header text or reasoning.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import pytest

from harmony_vectors import VECTOR_IDS, VECTORS, Vector
from koma.engine.stream import note_raw_harmony, stream_events
from koma.providers.base import ChatRequest, Provider
from koma.providers.ollama import OllamaProvider
from koma.providers.openai_compat import OpenAICompatProvider
from koma.types import Done, GenerationSettings, Message, TextDelta, ToolCallEvent
from koma_sim import Reply, Simulator

MODEL = "gpt-oss:20b"


@dataclass
class Chunked(Reply):
    """A reply streamed in exactly the given content chunks."""

    chunks: tuple[str, ...] = ()

    def pieces(self) -> list[tuple[str, str]]:
        return [("content", c) for c in self.chunks]


@pytest.fixture(scope="module", params=["ollama", "llamacpp"])
def wire(request: pytest.FixtureRequest) -> Iterator[tuple[str, Simulator]]:
    """One server per wire for the whole module (not the root `sim`, which is per test): every
    vector is played cut many ways, and each case scripts its own reply (`times=1`)."""
    with Simulator(flavor=request.param) as sim:
        yield request.param, sim


def provider_for(flavor: str, sim: Simulator) -> Provider:
    if flavor == "ollama":
        return OllamaProvider(sim.url)
    return OpenAICompatProvider(sim.openai_url, preset="llamacpp")


def cuts(text: str, offset: int) -> list[tuple[str, ...]]:
    """Whole, per character, and cut in two at every eighth position from `offset` (the two
    wires use offsets four apart, so together they cut at every fourth position)."""
    halves = [(text[:i], text[i:]) for i in range(1 + offset % 8, len(text), 8)]
    return [(text,), tuple(text), *halves]


async def answer(provider: Provider, sim: Simulator, chunks: tuple[str, ...]) -> tuple[Any, Any]:
    sim.add_reply(Chunked(chunks=chunks, reasoning_field="none", times=1))
    request = ChatRequest(MODEL, [Message.user("hi")], GenerationSettings())
    final_deltas, calls, result = [], [], None
    async with aclosing(stream_events(provider, request)) as events:
        async for event in events:
            if isinstance(event, TextDelta) and event.channel == "final":
                final_deltas.append(event.text)
            elif isinstance(event, ToolCallEvent):
                calls.append((event.call.name, event.call.arguments))
            elif isinstance(event, Done):
                result = event.result
    return result, (final_deltas, calls)


@pytest.mark.parametrize("vector", VECTORS, ids=VECTOR_IDS)
async def test_corpus_through_the_wire_and_the_engine(
    wire: tuple[str, Simulator], vector: Vector
) -> None:
    flavor, sim = wire
    provider = provider_for(flavor, sim)
    if vector.harmony_start:  # what an earlier raw answer from this server taught the engine
        note_raw_harmony(provider, MODEL)
    try:
        offset = VECTORS.index(vector) + (4 if flavor == "ollama" else 0)
        for chunks in cuts(vector.text, offset):
            result, (final_deltas, calls) = await answer(provider, sim, chunks)
            assert result.channels == vector.channels(), chunks
            assert result.text == vector.final
            assert (
                calls
                == list(vector.tool_calls)
                == [(c.name, c.arguments) for c in result.tool_calls]
            )
            shown = "".join(final_deltas)
            assert shown == vector.final  # streamed exactly, nothing shown then taken back
            assert "<|" not in shown and " to=" not in shown
    finally:
        await provider.aclose()


async def test_a_raw_answer_teaches_the_engine_to_hold_the_next_start(
    wire: tuple[str, Simulator],
) -> None:
    """After one raw Harmony answer, an answer that begins inside a prompt-opened channel is
    held until `<|end|>` says it was reasoning; before, the server was not known to be raw."""
    flavor, sim = wire
    provider = provider_for(flavor, sim)
    continuation = " thinking<|end|><|start|>assistant<|channel|>final<|message|>Hi"
    try:
        first, _ = await answer(provider, sim, tuple(VECTORS[2].text))
        assert first.channels.get("analysis")
        held, (final_deltas, _) = await answer(provider, sim, tuple(continuation))
    finally:
        await provider.aclose()
    assert held.channels == {"analysis": " thinking", "final": "Hi"}
    assert "".join(final_deltas) == "Hi"


async def test_a_wire_tool_name_with_leaked_header_text_is_repaired() -> None:
    """Ollama's gpt-oss parser sometimes names a call `read_file<|channel|>analysis`."""
    with Simulator(flavor="ollama") as sim:
        call = {"name": "read_file<|channel|>analysis", "arguments": {"path": "a.py"}}
        sim.add_reply(Reply(thinking="Need the file.", tool_calls=[call]))
        provider = OllamaProvider(sim.url)
        request = ChatRequest(MODEL, [Message.user("hi")], GenerationSettings())
        try:
            async with aclosing(stream_events(provider, request)) as events:
                results = [e.result async for e in events if isinstance(e, Done)]
        finally:
            await provider.aclose()
    assert [(c.name, c.arguments) for c in results[0].tool_calls] == [
        ("read_file", {"path": "a.py"})
    ]

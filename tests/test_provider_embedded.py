"""The embedded provider against the real packaged Gemma 3 270M GGUF, in this process.

One provider serves the whole module: the model loads once per process, as in the language
server, so only the test that unloads it on purpose pays the load again.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

from koma.engine.stream import collect, stream_events
from koma.errors import CapabilityMissing, ModelNotFound
from koma.providers import embedded
from koma.providers.base import ChatRequest, CompletionRequest, WireChunk
from koma.providers.embedded import EmbeddedProvider
from koma.providers.embedded_text import AnswerStart
from koma.types import GenerationSettings, Message

MODEL = embedded.DEFAULT_MODEL_NAME
# A prompt a base model continues for as long as it is allowed to.
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"


@pytest.fixture(scope="module")
def provider() -> EmbeddedProvider:
    return EmbeddedProvider()


async def read_all(stream: Any) -> list[WireChunk]:
    chunks: list[WireChunk] = []
    async with aclosing(stream) as items:
        async for chunk in items:
            chunks.append(chunk)
    return chunks


def ask(question: str, max_tokens: int = 24) -> ChatRequest:
    return ChatRequest(MODEL, [Message.user(question)], GenerationSettings(max_tokens=max_tokens))


async def test_chat_streams_a_real_answer_with_metrics(provider: EmbeddedProvider) -> None:
    chunks = await read_all(provider.chat(ask("What is 2 + 2?")))
    text = "".join(c.content for c in chunks)
    final = chunks[-1]
    assert final.done and final.metrics is not None and final.usage is not None
    assert "4" in text, text
    # The transcript's next turn never leaks into the answer, nor the space after "Answer:".
    assert "Question:" not in text and "Answer:" not in text
    assert text == text.lstrip()
    assert final.metrics.ttft_ms is not None and final.metrics.ttft_ms > 0
    assert final.metrics.total_ms is not None and final.metrics.total_ms >= final.metrics.ttft_ms
    assert (final.usage.completion_tokens or 0) >= 1


async def test_tokens_arrive_progressively(provider: EmbeddedProvider) -> None:
    request = ChatRequest(
        MODEL,
        [Message.user("Name three colors.")],
        GenerationSettings(max_tokens=24),
    )
    chunks = await read_all(provider.chat(request))
    pieces = [c.content for c in chunks if c.content]
    assert len(pieces) >= 3, pieces


async def test_engine_turns_the_stream_into_a_final_channel(provider: EmbeddedProvider) -> None:
    result = await collect(stream_events(provider, ask("Reply with one short greeting.")))
    assert result.text.strip()
    assert result.channels.get("final", "").strip() == result.text.strip()
    assert result.metrics.ttft_ms is not None


async def test_model_loads_once_per_process(provider: EmbeddedProvider) -> None:
    await provider.unload(MODEL)
    assert not (await provider.list_models())[0].loaded
    first = await read_all(provider.chat(ask("Say hello.", 8)))
    second = await read_all(provider.chat(ask("Say hello.", 8)))
    assert first[-1].metrics is not None and first[-1].metrics.load_ms is not None
    assert second[-1].metrics is not None and second[-1].metrics.load_ms is None
    assert (await provider.list_models())[0].loaded
    # A second provider object in the same process shares the loaded model.
    other = await read_all(EmbeddedProvider().chat(ask("Say hello.", 8)))
    assert other[-1].metrics is not None and other[-1].metrics.load_ms is None


async def test_closing_the_stream_stops_generation(provider: EmbeddedProvider) -> None:
    llm = embedded.load_model(provider.model_path)
    prompt_tokens = len(llm.tokenize(COUNTING.encode()))
    settings = GenerationSettings(max_tokens=200, temperature=0)

    # Uncancelled, the model keeps counting up to its budget (the prompt really is endless).
    budget = GenerationSettings(max_tokens=30, temperature=0)
    await read_all(provider.complete(CompletionRequest(MODEL, COUNTING, settings=budget)))
    assert llm.n_tokens - prompt_tokens >= 25

    stream = provider.complete(CompletionRequest(MODEL, COUNTING, settings=settings))
    first = await anext(stream)
    assert first.content
    await stream.aclose()
    # The worker releases the model once it has noticed; then count what it evaluated.
    acquired = await asyncio.to_thread(embedded._generation_lock.acquire, True, 60)
    assert acquired
    embedded._generation_lock.release()
    generated = llm.n_tokens - prompt_tokens
    assert generated < 10, f"{generated} tokens evaluated after the stream was closed"


async def test_concurrent_requests_take_turns(provider: EmbeddedProvider) -> None:
    answers = await asyncio.gather(
        read_all(provider.chat(ask("What is 2 + 2?", 12))),
        read_all(provider.chat(ask("Name three colors.", 12))),
    )
    for chunks in answers:
        assert chunks[-1].done
        assert "".join(c.content for c in chunks).strip()


async def test_show_reads_the_gguf_metadata(provider: EmbeddedProvider) -> None:
    details = await provider.show(MODEL)
    assert details.architecture == "gemma3"
    assert details.context_length == 32768
    assert details.quantization == "Q4_K_M"
    assert await provider.ping()
    assert (await provider.version() or "").startswith("llama-cpp-python")


async def test_a_suffix_is_refused_not_mangled(provider: EmbeddedProvider) -> None:
    request = CompletionRequest(MODEL, "def f(", suffix="\n    return x\n")
    with pytest.raises(CapabilityMissing):
        await read_all(provider.complete(request))


async def test_missing_gguf_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelNotFound) as info:
        await read_all(EmbeddedProvider(missing).chat(ask("hi")))
    assert str(missing) in str(info.value)


def test_koma_chat_prints_the_answer_without_llama_cpp_noise(tmp_path: Path) -> None:
    """The README's first command, pinned to the embedded provider."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOMA_")}
    env.update({"HOME": str(tmp_path), "KOMA_CONFIG": str(tmp_path / "none.toml")})
    argv = ["chat", "--provider", "embedded", "--json", "--max-tokens", "24", "What is 2 + 2?"]
    proc = subprocess.run(
        [sys.executable, "-m", "koma", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["provider"] == "embedded"
    assert "4" in result["text"]
    assert result["metrics"]["ttft_ms"] > 0
    assert "llama" not in proc.stderr and "ggml" not in proc.stderr, proc.stderr


# ---------------------------------------------------------------- answer start


def test_leading_whitespace_of_a_transcript_answer_is_dropped() -> None:
    start = AnswerStart(strip_leading=True)
    assert "".join(start.feed(p) for p in [" ", "\n\n", " Paris", ".\n", " more"]) == (
        "Paris.\n more"
    )
    assert AnswerStart(strip_leading=False).feed("  code") == "  code"

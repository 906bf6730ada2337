"""The Python API (`generate`, `generate_text`, `stream_text`) over real loopback HTTP."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

from koma import (
    ChannelEnd,
    ChannelStart,
    ConfigError,
    Done,
    GenerationSettings,
    Message,
    ModelNotFound,
    ResponseCache,
    TextDelta,
    generate,
    generate_text,
    stream_text,
)
from koma.providers.registry import create_provider
from koma_sim import Reply, Simulator

THINKING = "The user asks about relativity. Explain <briefly> | simply."
ANSWER = "Time slows down when you move fast; analysis of clocks shows it."


def generations(server: Simulator) -> list:
    """Requests that asked the model for text (not the capability look-ups around them)."""
    paths = ("/api/chat", "/api/generate", "/v1/chat/completions", "/v1/completions")
    return [r for r in server.requests if r.path in paths]


@pytest.fixture
def sim_options() -> dict[str, Any]:
    return {"default_reply": Reply(thinking=THINKING, content=ANSWER)}


@pytest.fixture
def koma_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sim: Simulator) -> Simulator:
    """Koma's own settings point at the simulator, and nothing else on this machine counts."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KOMA_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("KOMA_PROVIDER", "ollama")
    monkeypatch.setenv("KOMA_BASE_URL", sim.url)
    monkeypatch.setenv("KOMA_MODEL", "gpt-oss:20b")
    return sim


async def test_generate_returns_only_the_final_answer(koma_env: Simulator):
    text = await generate("Explain the theory of relativity")
    assert text == ANSWER
    (record,) = generations(koma_env)
    assert record.body["model"] == "gpt-oss:20b"


async def test_generate_text_separates_reasoning_and_reports_everything(koma_env: Simulator):
    result = await generate_text(
        messages=[Message.system("Show your reasoning."), Message.user("Faster than light?")],
        settings=GenerationSettings(reasoning_effort="high", max_tokens=4096, temperature=0.8),
    )
    assert result.text == ANSWER
    assert result.channels["thinking"] == THINKING
    assert THINKING not in result.text
    assert (result.model, result.provider) == ("gpt-oss:20b", "ollama")
    assert result.usage.completion_tokens
    assert result.metrics.total_ms is not None
    body = generations(koma_env)[-1].body
    assert body["think"] == "high"  # effort reached the wire as gpt-oss needs it


async def test_stream_text_buffers_tokens_and_brackets_channels(koma_env: Simulator):
    events = []
    async with aclosing(
        stream_text(prompt="hi", settings=GenerationSettings(streaming_buffer_size=10))
    ) as stream:
        async for event in stream:
            events.append(event)
    kinds = [type(e) for e in events]
    assert kinds[0] is ChannelStart and kinds[-1] is Done
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert "".join(d.text for d in deltas if d.channel == "final") == ANSWER
    assert "".join(d.text for d in deltas if d.channel == "thinking") == THINKING
    # 10 wire tokens per delta: far fewer deltas than tokens.
    record = generations(koma_env)[-1]
    assert len(deltas) <= record.tokens_sent // 10 + 2
    starts = [e.channel for e in events if isinstance(e, ChannelStart)]
    ends = [e.channel for e in events if isinstance(e, ChannelEnd)]
    assert starts == ends == ["thinking", "final"]


async def test_leaving_the_stream_hangs_up_on_the_server():
    with Simulator(flavor="ollama", token_delay_ms=20) as server:
        server.set_default_reply(Reply(content="word " * 500))
        provider = create_provider("ollama", server.url)
        try:
            async with aclosing(
                stream_text("gpt-oss:20b", prompt="long please", provider=provider)
            ) as stream:
                async for event in stream:
                    if isinstance(event, TextDelta):
                        break
            (record,) = generations(server)
            hung_up = await asyncio.to_thread(server.wait_for_disconnect, record, 10.0)
            assert hung_up
            assert record.tokens_sent < 500
        finally:
            await provider.aclose()


async def test_openai_wire_with_reasoning_content_and_raw_harmony():
    with Simulator(flavor="llamacpp") as server:
        server.add_reply(Reply(thinking="Think first.", content="Done.", match="field"))
        harmony = (
            "<|channel|>analysis<|message|>Harmony thought<|end|>"
            "<|start|>assistant<|channel|>final<|message|>Harmony answer<|return|>"
        )
        server.add_reply(Reply(content=harmony, match="harmony"))
        provider = create_provider("openai", server.openai_url)
        try:
            field = await generate_text("gpt-oss-20b", prompt="field", provider=provider)
            raw = await generate_text("gpt-oss-20b", prompt="harmony", provider=provider)
        finally:
            await provider.aclose()
    assert (field.text, field.channels.get("thinking")) == ("Done.", "Think first.")
    assert (raw.text, raw.channels.get("analysis")) == ("Harmony answer", "Harmony thought")


async def test_model_defaults_to_the_first_listed_one(
    koma_env: Simulator, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("KOMA_MODEL")
    provider = create_provider("ollama", koma_env.url)
    try:
        result = await generate_text(prompt="hi", provider=provider)
    finally:
        await provider.aclose()
    assert result.model == koma_env.models[0].name


async def test_no_model_anywhere_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KOMA_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("KOMA_MODEL", raising=False)
    with Simulator(models=[], flavor="ollama") as server:
        provider = create_provider("ollama", server.url)
        try:
            with pytest.raises(ModelNotFound) as err:
                await generate("hi", provider=provider)
        finally:
            await provider.aclose()
    assert "pull" in str(err.value)


async def test_nothing_to_send_is_a_clear_error():
    with pytest.raises(ConfigError):
        stream_text("m")


async def test_deterministic_requests_use_the_shared_cache(koma_env: Simulator):
    cache = ResponseCache.local_model_cache()
    cache.clear()
    settings = GenerationSettings(temperature=0)
    try:
        first = await generate_text(prompt="cache me", settings=settings)
        second = await generate_text(prompt="cache me", settings=settings)
    finally:
        cache.clear()
    assert first.text == second.text == ANSWER
    assert len(generations(koma_env)) == 1

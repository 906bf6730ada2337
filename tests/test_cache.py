"""ResponseCache: what the key covers, what gets stored, persistence, clear() and stats."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

from koma import GenerationSettings, Message, ResponseCache, StreamError, ToolCall
from koma.engine.stream import collect, stream_completion_events, stream_events
from koma.providers.base import ChatRequest, CompletionRequest, Provider, WireChunk
from koma.types import Metrics, ModelInfo, Usage

DETERMINISTIC = GenerationSettings(temperature=0)


class CountingProvider(Provider):
    """Answers with a numbered reply so a replay is distinguishable from a fresh answer."""

    def __init__(self, name: str = "ollama", base_url: str = "http://127.0.0.1:1") -> None:
        self.name = name
        self.base_url = base_url
        self.calls = 0
        self.fail = False

    async def _answer(self) -> AsyncIterator[WireChunk]:
        self.calls += 1
        n = self.calls
        yield WireChunk(reasoning=f"thought {n}")
        yield WireChunk(content=f"answer {n}")
        if self.fail:
            raise StreamError("connection dropped")
        yield WireChunk(
            tool_calls=[ToolCall("search", {"q": "x"}, id="c1")],
            done=True,
            finish_reason="stop",
            usage=Usage(10, 2),
            metrics=Metrics(tokens_per_second=30.0, source="server"),
        )

    def chat(self, request: ChatRequest) -> AsyncIterator[WireChunk]:
        return self._answer()

    def complete(self, request: CompletionRequest) -> AsyncIterator[WireChunk]:
        return self._answer()

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo("m")]


def chat(settings: GenerationSettings = DETERMINISTIC, **fields: Any) -> ChatRequest:
    base: dict[str, Any] = {
        "model": "gpt-oss:20b",
        "messages": [Message.system("be brief"), Message.user("What is Swift?")],
        "settings": settings,
        "tools": None,
        "response_format": None,
    }
    base.update(fields)
    return ChatRequest(**base)


async def ask(provider: Provider, req: ChatRequest) -> Any:
    return await collect(stream_events(provider, req))


async def test_repeated_deterministic_request_is_replayed():
    inner = CountingProvider()
    cache = ResponseCache()
    provider = cache.wrap(inner)
    first = await ask(provider, chat())
    second = await ask(provider, chat())
    assert inner.calls == 1
    assert second.text == first.text == "answer 1"
    assert second.channels == first.channels
    assert [c.to_dict() for c in second.tool_calls] == [c.to_dict() for c in first.tool_calls]
    assert second.usage == first.usage
    # A replay does not pretend to be the server's speed.
    assert first.metrics.tokens_per_second == 30.0
    assert second.metrics.source == "client" and second.metrics.tokens_per_second is None
    assert cache.stats.to_dict() == {"hits": 1, "misses": 1, "entries": 1}


async def test_sampled_requests_are_not_cached_by_default_but_are_with_always():
    inner = CountingProvider()
    provider = ResponseCache().wrap(inner)
    sampled = chat(GenerationSettings(temperature=0.8))
    await ask(provider, sampled)
    await ask(provider, sampled)
    assert inner.calls == 2

    seeded = chat(GenerationSettings(temperature=0.8, seed=7))
    await ask(provider, seeded)
    await ask(provider, seeded)
    assert inner.calls == 3

    inner = CountingProvider()
    provider = ResponseCache(mode="always").wrap(inner)
    await ask(provider, sampled)
    await ask(provider, sampled)
    assert inner.calls == 1


async def test_mode_off_never_caches():
    inner = CountingProvider()
    cache = ResponseCache(mode="off")
    await ask(cache.wrap(inner), chat())
    await ask(cache.wrap(inner), chat())
    assert inner.calls == 2
    assert cache.stats.entries == 0


SETTING_CHANGES: dict[str, Any] = {
    "reasoning_effort": "high",
    "max_tokens": 100,
    "temperature": 0.5,
    "top_p": 0.5,
    "top_k": 5,
    "repeat_penalty": 1.1,
    "seed": 1,
    "stop": ("\n",),
    "num_ctx": 8192,
    "num_gpu": 10,
    "num_thread": 4,
    "main_gpu": 1,
    "use_mmap": False,
}


def test_every_output_setting_is_in_the_key_and_delivery_settings_are_not():
    provider = CountingProvider()
    base = ResponseCache.chat_key(provider, chat())
    fields = set(GenerationSettings.model_fields)
    assert fields == set(SETTING_CHANGES) | {"streaming_buffer_size", "keep_alive"}
    for name, value in SETTING_CHANGES.items():
        changed = DETERMINISTIC.model_copy(update={name: value})
        assert ResponseCache.chat_key(provider, chat(changed)) != base, name
    for name, value in {"streaming_buffer_size": 10, "keep_alive": "1h"}.items():
        changed = DETERMINISTIC.model_copy(update={name: value})
        assert ResponseCache.chat_key(provider, chat(changed)) == base, name


def test_provider_url_model_messages_tools_and_format_are_in_the_key():
    provider = CountingProvider()
    base = ResponseCache.chat_key(provider, chat())
    variants = [
        ResponseCache.chat_key(CountingProvider(name="lmstudio"), chat()),
        ResponseCache.chat_key(CountingProvider(base_url="http://127.0.0.1:2"), chat()),
        ResponseCache.chat_key(provider, chat(model="gpt-oss:120b")),
        ResponseCache.chat_key(provider, chat(tools=[{"type": "function", "function": {}}])),
        ResponseCache.chat_key(provider, chat(response_format="json")),
    ]
    assert len({base, *variants}) == len(variants) + 1
    # Every field of a message counts, not just role and content.
    message = Message.user("What is Swift?")
    for field, value in {
        "role": "system",
        "content": "What is Rust?",
        "thinking": "hm",
        "tool_calls": [ToolCall("f", {})],
        "tool_name": "f",
        "tool_call_id": "1",
    }.items():
        changed = dataclasses.replace(message, **{field: value})
        req = chat(messages=[Message.system("be brief"), changed])
        assert ResponseCache.chat_key(provider, req) != base, field


async def test_partially_read_stream_is_not_stored():
    inner = CountingProvider()
    cache = ResponseCache()
    provider = cache.wrap(inner)
    async with aclosing(stream_events(provider, chat())) as events:
        async for _ in events:
            break
    assert cache.stats.entries == 0
    await ask(provider, chat())
    assert inner.calls == 2


async def test_failed_stream_is_not_stored():
    inner = CountingProvider()
    inner.fail = True
    cache = ResponseCache()
    provider = cache.wrap(inner)
    with pytest.raises(StreamError):
        await ask(provider, chat())
    assert cache.stats.entries == 0
    inner.fail = False
    assert (await ask(provider, chat())).text == "answer 2"


async def test_completions_are_cached_by_prompt_and_suffix():
    inner = CountingProvider()
    provider = ResponseCache().wrap(inner)

    async def complete(suffix: str) -> str:
        req = CompletionRequest("coder", "def f(", suffix=suffix, settings=DETERMINISTIC)
        return (await collect(stream_completion_events(provider, req))).text

    assert await complete(")") == "answer 1"
    assert await complete(")") == "answer 1"
    assert await complete("):") == "answer 2"


async def test_lru_keeps_only_max_entries():
    inner = CountingProvider()
    cache = ResponseCache(max_entries=2)
    provider = cache.wrap(inner)
    for question in ("a", "b", "c"):
        await ask(provider, chat(messages=[Message.user(question)]))
    assert cache.stats.entries == 2
    await ask(provider, chat(messages=[Message.user("a")]))  # evicted: asked again
    assert inner.calls == 4


def stored_files(folder: Path) -> list[Path]:
    return list(folder.iterdir())


async def test_persistent_store_survives_a_new_cache_and_clear_empties_it(tmp_path: Path):
    inner = CountingProvider()
    await ask(ResponseCache(persistent=True, path=tmp_path).wrap(inner), chat())
    assert stored_files(tmp_path)

    reloaded = ResponseCache(persistent=True, path=tmp_path)
    again = await ask(reloaded.wrap(inner), chat())
    assert inner.calls == 1
    assert again.text == "answer 1"
    assert reloaded.stats.hits == 1

    assert reloaded.clear() == 1
    assert reloaded.stats.entries == 0
    fresh = ResponseCache(persistent=True, path=tmp_path)
    await ask(fresh.wrap(inner), chat())
    assert inner.calls == 2


async def test_unusable_persistent_store_degrades_to_memory(tmp_path: Path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    cache = ResponseCache(persistent=True, path=blocker)
    inner = CountingProvider()
    await ask(cache.wrap(inner), chat())
    await ask(cache.wrap(inner), chat())
    assert inner.calls == 1  # the in-memory layer still works


async def test_corrupt_persistent_file_is_reported_not_raised(tmp_path: Path):
    (tmp_path / "responses.sqlite3").write_bytes(b"this is not sqlite" * 100)
    inner = CountingProvider()
    cache = ResponseCache(persistent=True, path=tmp_path)
    assert (await ask(cache.wrap(inner), chat())).text == "answer 1"
    assert cache.clear() >= 0


def test_local_model_cache_is_shared_and_reconfigurable():
    shared = ResponseCache.local_model_cache()
    assert ResponseCache.local_model_cache() is shared
    mode = shared.mode
    try:
        shared.configure(mode="always")
        assert ResponseCache.local_model_cache().mode == "always"
    finally:
        shared.configure(mode=mode)


async def test_wrapped_provider_delegates_the_rest():
    inner = CountingProvider(name="lmstudio")
    provider = ResponseCache().wrap(inner)
    assert provider.name == "lmstudio"
    assert provider.base_url == inner.base_url
    assert [m.name for m in await provider.list_models()] == ["m"]

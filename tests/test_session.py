"""The engine `Session`: model choice, request settings, and retiring a provider safely.

Real loopback HTTP throughout; what "closed" means is that the provider's connection pool was
released, and that a request starting on it afterwards fails instead of reaching the server
the user moved away from.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from koma import generate_text
from koma.engine.cache import CachedProvider
from koma.engine.doctor import DoctorContext, check_model
from koma.engine.inflight import InFlightProvider, ProviderRetired
from koma.engine.session import Session
from koma.settings import KomaSettings
from koma.types import ModelInfo
from koma_sim import Reply, Simulator, gpt_oss_20b, qwen_coder

LONG_ANSWER = " ".join(f"word{i}" for i in range(200))


@pytest.fixture
def old() -> Iterator[Simulator]:
    """The server the settings point at first; it answers slowly, so a stream stays open."""
    with Simulator(models=[gpt_oss_20b(), qwen_coder()], flavor="ollama", token_delay_ms=5) as sim:
        sim.set_default_reply(Reply(content=LONG_ANSWER))
        yield sim


@pytest.fixture
def new() -> Iterator[Simulator]:
    with Simulator(models=[gpt_oss_20b()], flavor="ollama") as sim:
        yield sim


def settings_for(sim: Simulator, **values: object) -> KomaSettings:
    return KomaSettings.model_validate({"provider": "ollama", "baseUrl": sim.url, **values})


def is_closed(provider: object) -> bool:
    assert isinstance(provider, InFlightProvider)
    return bool(provider.inner._client.is_closed)  # type: ignore[attr-defined]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_without_a_configured_model_a_loaded_one_wins_over_the_first_listed(
    old: Simulator,
) -> None:
    first = Session(settings_for(old))
    try:
        assert await first.model("chat") == "gpt-oss:20b"  # nothing loaded: the first listed
    finally:
        await first.aclose()
    async with httpx.AsyncClient(base_url=old.url) as http:
        await http.post("/api/generate", json={"model": "qwen2.5-coder:1.5b", "keep_alive": "1h"})
    session = Session(settings_for(old))
    try:
        assert await session.model("chat") == "qwen2.5-coder:1.5b"
        assert await session.model("completion") == "qwen2.5-coder:1.5b"
    finally:
        await session.aclose()
    configured = Session(settings_for(old, model="gpt-oss:20b", completionModel="tiny"))
    assert await configured.model("chat") == await configured.model("actions") == "gpt-oss:20b"
    assert await configured.model("completion") == "tiny"
    assert configured.current_provider is None  # a configured model needs no server


def test_request_settings_come_from_the_settings_and_the_caller_overrides_them() -> None:
    settings = KomaSettings.model_validate(
        {
            "reasoningEffort": {"chat": "medium", "actions": "low", "completion": "low"},
            "chat": {"maxTokens": 300, "temperature": 0.4},
            "completion": {"maxTokens": 64, "temperature": 0.1},
            "numCtx": 16384,
            "keepAlive": "3m",
            "gpu": {"numGpu": 20, "mainGpu": 1},
        }
    )
    session = Session(settings)
    chat = session.request_settings("chat")
    assert (chat.reasoning_effort, chat.max_tokens, chat.temperature) == ("medium", 300, 0.4)
    assert (chat.num_ctx, chat.keep_alive, chat.num_gpu, chat.main_gpu) == (16384, "3m", 20, 1)
    actions = session.request_settings("actions")
    assert (actions.reasoning_effort, actions.max_tokens) == ("low", 300)  # the chat's limits
    completion = session.request_settings("completion")
    assert (completion.max_tokens, completion.temperature) == (64, 0.1)
    flags = session.request_settings("chat", effort="high", max_tokens=9, temperature=0, seed=3)
    assert (flags.reasoning_effort, flags.max_tokens, flags.temperature) == ("high", 9, 0)
    assert flags.seed == 3


async def test_a_retired_provider_finishes_its_stream_then_is_closed(
    old: Simulator, new: Simulator
) -> None:
    session = Session(settings_for(old, model="gpt-oss:20b"))
    try:
        first = await session.provider()
        answer = asyncio.create_task(
            generate_text("gpt-oss:20b", prompt="long, please", provider=first)
        )
        await asyncio.to_thread(old.wait_for_requests, 1, 10.0, "chat")  # now streaming
        assert session.reconfigure(settings_for(new, model="gpt-oss:20b"))
        await settle()
        assert not is_closed(first)  # the answer is still streaming from it
        result = await answer
        assert result.text == LONG_ANSWER  # finished whole, from the old server
        await settle()
        assert is_closed(first)  # and then its connections were released
        with pytest.raises(ProviderRetired):
            await first.list_models()
        second = await session.provider()
        assert second is not first and second.base_url == new.url
    finally:
        await session.aclose()


async def test_no_request_starts_on_a_retired_provider_while_another_still_streams(
    old: Simulator, new: Simulator
) -> None:
    # The race of inline completion and koma.preload: the provider is taken, then something
    # is awaited (the model choice), and the settings move to another server meanwhile. A
    # stream still running on the old provider must not let the late request through to it.
    session = Session(settings_for(old, model="gpt-oss:20b"))
    try:
        taken = await session.provider()
        streaming = asyncio.create_task(
            generate_text("gpt-oss:20b", prompt="long, please", provider=taken)
        )
        await asyncio.to_thread(old.wait_for_requests, 1, 10.0, "chat")
        session.reconfigure(settings_for(new, model="gpt-oss:20b"))
        await settle()
        before = len(old.requests)
        with pytest.raises(ProviderRetired):
            await taken.list_models()
        with pytest.raises(ProviderRetired):
            await generate_text("gpt-oss:20b", prompt="late", provider=taken)
        assert len(old.requests) == before, "a late request reached the old server"
        assert (await streaming).text == LONG_ANSWER  # what was already running finishes
    finally:
        await session.aclose()


async def test_a_model_chosen_by_the_old_server_is_not_kept_for_the_new_one(
    old: Simulator, new: Simulator
) -> None:
    # No model configured: the session asks the server. If the settings move to another
    # server while the old one answers, its choice must not stick to the new server.
    async with httpx.AsyncClient(base_url=old.url) as http:  # the old server's choice: qwen
        await http.post("/api/generate", json={"model": "qwen2.5-coder:1.5b", "keep_alive": "1h"})
    session = Session(settings_for(old))
    try:
        provider = await session.provider()
        assert isinstance(provider, InFlightProvider)
        answer, listing = asyncio.Event(), provider.inner.list_models

        async def slow_listing() -> list[ModelInfo]:
            await answer.wait()
            return await listing()

        provider.inner.list_models = slow_listing  # type: ignore[method-assign]
        choosing = asyncio.create_task(session.model("chat"))
        await settle()
        session.reconfigure(settings_for(new))
        answer.set()
        await choosing
        assert await session.model("chat") == "gpt-oss:20b"  # the new server's only model
    finally:
        await session.aclose()


async def test_use_keeps_a_retired_provider_open_for_the_whole_block(
    old: Simulator, new: Simulator
) -> None:
    session = Session(settings_for(old))
    try:
        async with session.use(cached=True) as provider:
            assert isinstance(provider, CachedProvider)  # cache.mode is on by default
            session.reconfigure(settings_for(new))
            await settle()
            # A chat turn's next tool step still reaches the server the turn started on.
            assert [m.name for m in await provider.list_models()] == [
                "gpt-oss:20b",
                "qwen2.5-coder:1.5b",
            ]
        await settle()
        assert is_closed(provider.inner)
    finally:
        await session.aclose()


async def test_an_idle_provider_is_closed_at_once_and_unrelated_changes_keep_it(
    old: Simulator, new: Simulator
) -> None:
    session = Session(settings_for(old))
    try:
        provider = await session.provider()
        assert session.reconfigure(settings_for(old, chat={"temperature": 0.2}))
        assert await session.provider() is provider  # not a provider setting: kept
        assert not session.reconfigure(settings_for(old, chat={"temperature": 0.2}))
        session.reconfigure(settings_for(new))
        await settle()
        assert is_closed(provider)
    finally:
        await session.aclose()


async def test_the_cache_follows_its_settings(old: Simulator) -> None:
    session = Session(settings_for(old, cache={"mode": "off"}))
    try:
        assert await session.cached_provider() is await session.provider()
        session.reconfigure(settings_for(old, cache={"mode": "always", "maxEntries": 7}))
        assert isinstance(await session.cached_provider(), CachedProvider)
        assert (session.response_cache.mode, session.response_cache.max_entries) == ("always", 7)
    finally:
        await session.aclose()


async def test_settings_that_move_while_auto_probes_never_get_the_old_server(
    old: Simulator, new: Simulator
) -> None:
    session = Session(KomaSettings.model_validate({"provider": "auto", "baseUrl": old.url}))
    try:
        resolving = asyncio.create_task(session.provider())
        await asyncio.sleep(0)  # the probe of the old URL is on the wire
        session.reconfigure(KomaSettings.model_validate({"provider": "auto", "baseUrl": new.url}))
        provider = await resolving
        assert provider.base_url == new.url
        assert "/api/version" in [r.path for r in new.requests]  # probed anew
    finally:
        await session.aclose()


async def test_koma_doctor_names_the_model_the_session_would_use() -> None:
    listed = [ModelInfo(name="first"), ModelInfo(name="in-memory", loaded=True)]
    context = DoctorContext(KomaSettings(), None, facts={"models": listed})
    check = await check_model(context)
    assert check is not None and "in-memory" in check.detail
    assert context.facts["model"] == "in-memory"
    empty = DoctorContext(KomaSettings(), None, facts={"models": []})
    assert (await check_model(empty)) is not None and "model" not in empty.facts

"""The memory manager against the simulated servers, with a clock the test moves forward."""

from __future__ import annotations

import time

from lc_support import GB, machine

from koma.engine.lifecycle.memory import MemoryManager, pair_warning, parse_duration, parse_expiry
from koma.providers.base import ChatRequest
from koma.providers.lmstudio import LMStudioProvider
from koma.providers.ollama import OllamaProvider
from koma.settings import MemorySettings
from koma.types import Message, ModelInfo
from koma_sim import Simulator

MINUTE = 60.0


class FakeClock:
    """Wall-clock seconds that only move when the test says so."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def test_an_idle_model_is_unloaded_after_auto_unload_minutes(
    sim: Simulator, provider: OllamaProvider
) -> None:
    await provider.load("gpt-oss:20b", keep_alive="1h")
    clock = FakeClock()
    manager = MemoryManager(auto_unload_minutes=10, keep_alive="1h", clock=clock)
    assert await manager.tick(provider) == []
    clock.advance(9 * MINUTE)
    assert await manager.tick(provider) == []
    assert sim.loaded_models() == ["gpt-oss:20b"]
    clock.advance(1.5 * MINUTE)
    (action,) = await manager.tick(provider)
    assert (action.model, action.reason, action.ok) == ("gpt-oss:20b", "idle", True)
    assert "autoUnloadMinutes 10" in action.message
    assert sim.loaded_models() == []
    unload = [r for r in sim.requests if r.endpoint == "generate"][-1]
    assert unload.body["keep_alive"] == 0


async def test_a_model_kept_forever_counts_from_when_it_was_first_seen(
    sim: Simulator, provider: OllamaProvider
) -> None:
    await provider.load("gpt-oss:20b", keep_alive=-1)  # Ollama shows year 2318
    clock = FakeClock()
    manager = MemoryManager(auto_unload_minutes=5, keep_alive="10m", clock=clock)
    assert await manager.tick(provider) == []
    clock.advance(4 * MINUTE)
    assert await manager.tick(provider) == []
    clock.advance(1 * MINUTE)
    assert [a.model for a in await manager.tick(provider)] == ["gpt-oss:20b"]
    assert sim.loaded_models() == []


async def test_a_touched_model_stays_and_the_other_goes(
    sim: Simulator, provider: OllamaProvider
) -> None:
    for model in ("gpt-oss:20b", "qwen2.5-coder:1.5b"):
        await provider.load(model, keep_alive=-1)
    clock = FakeClock()
    manager = MemoryManager(auto_unload_minutes=10, clock=clock)
    await manager.tick(provider)
    clock.advance(8 * MINUTE)
    manager.touch("qwen2.5-coder:1.5b")
    clock.advance(3 * MINUTE)
    assert [a.model for a in await manager.tick(provider)] == ["gpt-oss:20b"]
    assert sim.loaded_models() == ["qwen2.5-coder:1.5b"]


async def test_use_by_another_client_moves_the_expiry_and_counts_as_use(
    sim: Simulator, provider: OllamaProvider
) -> None:
    await provider.load("gpt-oss:20b", keep_alive="1h")
    clock = FakeClock()
    # keep_alive unknown: only the movement of Ollama's expiry reveals use.
    manager = MemoryManager(auto_unload_minutes=10, keep_alive=None, clock=clock)
    await manager.tick(provider)
    async for _ in provider.chat(ChatRequest("gpt-oss:20b", [Message.user("hi")])):
        pass
    clock.advance(11 * MINUTE)
    assert await manager.tick(provider) == []  # used since the last look
    clock.advance(11 * MINUTE)
    assert [a.model for a in await manager.tick(provider)] == ["gpt-oss:20b"]


async def test_max_memory_unloads_the_least_recently_used_first(
    sim: Simulator, provider: OllamaProvider
) -> None:
    for model in ("qwen2.5-coder:1.5b", "gpt-oss:20b"):
        await provider.load(model, keep_alive=-1)
    clock = FakeClock()
    # 13.78 GB + 0.99 GB loaded, 14 GB allowed: one must go — the one used least recently.
    manager = MemoryManager(max_memory_gb=14, clock=clock)
    manager.touch("qwen2.5-coder:1.5b")
    clock.advance(MINUTE)
    manager.touch("gpt-oss:20b")
    (action,) = await manager.tick(provider)
    assert (action.model, action.reason) == ("qwen2.5-coder:1.5b", "memory")
    assert "maxMemoryGb 14" in action.message
    assert sim.loaded_models() == ["gpt-oss:20b"]


async def test_pinned_and_kept_models_are_never_unloaded(
    sim: Simulator, provider: OllamaProvider
) -> None:
    for model in ("qwen2.5-coder:1.5b", "gpt-oss:20b"):
        await provider.load(model, keep_alive=-1)
    clock = FakeClock()
    manager = MemoryManager(max_memory_gb=1, auto_unload_minutes=1, clock=clock)
    manager.pin("gpt-oss:20b")
    await manager.tick(provider, keep=["qwen2.5-coder:1.5b", "gpt-oss:20b"])  # first look
    clock.advance(5 * MINUTE)
    actions = await manager.tick(provider, keep=["qwen2.5-coder:1.5b"])
    # qwen is idle (unloaded for idleness); the pinned model stays despite the budget.
    assert [(a.model, a.reason) for a in actions] == [("qwen2.5-coder:1.5b", "idle")]
    assert sim.loaded_models() == ["gpt-oss:20b"]
    manager.unpin("gpt-oss:20b")
    clock.advance(2 * MINUTE)
    assert [a.model for a in await manager.tick(provider)] == ["gpt-oss:20b"]


async def test_lm_studio_models_are_unloaded_through_its_native_api() -> None:
    with Simulator(flavor="lmstudio") as sim:
        provider = LMStudioProvider(sim.openai_url, backoff=0.01)
        try:
            await provider.load("gpt-oss:20b")
            clock = FakeClock()
            manager = MemoryManager.from_settings(
                MemorySettings(auto_unload_minutes=2), clock=clock
            )
            assert await manager.tick(provider) == []
            clock.advance(2 * MINUTE)
            assert [a.model for a in await manager.tick(provider)] == ["gpt-oss:20b"]
        finally:
            await provider.aclose()
        assert sim.loaded_models() == []
        assert any(r.endpoint == "unload" for r in sim.requests)


async def test_a_disabled_manager_does_nothing(sim: Simulator, provider: OllamaProvider) -> None:
    await provider.load("gpt-oss:20b", keep_alive=-1)
    manager = MemoryManager()
    assert not manager.enabled
    assert await manager.tick(provider) == []
    manager.configure(auto_unload_minutes=1)
    assert manager.enabled


def test_pair_warning_when_chat_and_completion_models_cannot_both_stay() -> None:
    big = ModelInfo("gpt-oss:120b", size_bytes=65_369_818_941)
    small = ModelInfo("qwen2.5-coder:1.5b", size_bytes=986_062_089)
    text = pair_warning(big, small, max_memory_gb=48)
    assert text is not None
    for part in ("gpt-oss:120b", "qwen2.5-coder:1.5b", "66.4 GB", "maxMemoryGb 48", "evict"):
        assert part in text
    # On a 64 GB machine, 80 % usable = 51.2 GB: the same pair does not fit either.
    assert pair_warning(big, small, memory=machine(64, 60)) is not None
    # A 256 GB machine holds both; one model used for both never evicts itself.
    assert pair_warning(big, small, memory=machine(256, 200)) is None
    assert pair_warning(big, big, max_memory_gb=1) is None
    assert pair_warning(big, ModelInfo("x"), max_memory_gb=1) is None  # size unknown


def test_durations_and_expiries() -> None:
    assert parse_duration("10m") == 600
    assert parse_duration("1h30m") == 5400
    assert parse_duration(300) == 300
    assert parse_duration("-1") is None and parse_duration(-1) is None
    assert parse_duration("soon") is None
    stamp = parse_expiry("2025-08-05T12:00:00.123456789Z")
    assert stamp is not None and abs(stamp - 1754395200.123456) < 1e-3
    assert parse_expiry("2025-08-05T14:00:00-07:00") == parse_expiry("2025-08-05T21:00:00Z")
    assert parse_expiry("not a time") is None and parse_expiry(None) is None
    assert GB == 10**9

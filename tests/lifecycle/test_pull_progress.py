"""`/api/pull` progress: totals across layers, speed, time left, errors, and cancelling."""

from __future__ import annotations

import asyncio

import pytest

from koma.engine.lifecycle.pull import PullProgress, PullSnapshot, format_eta, pull_model
from koma.errors import CapabilityMissing, StreamError
from koma.providers.lmstudio import LMStudioProvider
from koma.providers.ollama import OllamaProvider
from koma_sim import Simulator
from koma_sim.script import gpt_oss_120b

LAYER_A = "sha256:" + "a" * 64
LAYER_B = "sha256:" + "b" * 64


def test_progress_sums_layers_and_measures_speed_and_eta() -> None:
    now = [100.0]
    progress = PullProgress(lambda: now[0])
    assert progress.feed({"status": "pulling manifest"}) == PullSnapshot("pulling manifest")
    progress.feed({"status": "pulling aaaa", "digest": LAYER_A, "total": 1000, "completed": 0})
    now[0] = 102.0
    # Layer A 400/1000 after 2 s, layer B announced with 200 bytes to go.
    progress.feed({"status": "pulling aaaa", "digest": LAYER_A, "total": 1000, "completed": 400})
    snap = progress.feed({"status": "pulling bbbb", "digest": LAYER_B, "total": 200})
    # 400 bytes in 2 s = 200 B/s; 1200 − 400 = 800 left → 4 s.
    assert (snap.completed, snap.total) == (400, 1200)
    assert snap.bytes_per_second == pytest.approx(200.0)
    assert snap.eta_seconds == pytest.approx(4.0)
    assert snap.fraction == pytest.approx(1 / 3)
    done = progress.feed({"status": "success"})
    assert done.done and done.completed == done.total == 1200 and done.eta_seconds == 0


def test_a_resumed_pull_counts_only_new_bytes_for_speed() -> None:
    now = [0.0]
    progress = PullProgress(lambda: now[0])
    progress.feed({"status": "pulling", "digest": LAYER_A, "total": 1000, "completed": 900})
    now[0] = 1.0
    snap = progress.feed({"status": "pulling", "digest": LAYER_A, "total": 1000, "completed": 950})
    assert snap.bytes_per_second == pytest.approx(50.0)  # not 950 B/s
    assert snap.eta_seconds == pytest.approx(1.0)


def test_speed_uses_a_recent_window() -> None:
    now = [0.0]
    progress = PullProgress(lambda: now[0], window=5.0)
    for second, done in enumerate((0, 100, 200, 300, 400, 500, 600, 1600, 2600)):
        now[0] = float(second)
        snap = progress.feed({"status": "p", "digest": LAYER_A, "total": 10_000, "completed": done})
    # Seconds 3…8 are in the window: (2600 − 300) / 5 = 460 B/s, not the all-time 325 B/s.
    assert snap.bytes_per_second == pytest.approx(460.0)


def test_eta_format() -> None:
    assert format_eta(None) == "—"
    assert format_eta(75) == "1:15"
    assert format_eta(3725) == "1:02:05"


async def test_pull_reports_every_step_and_installs_the_model() -> None:
    with Simulator(models=[], catalog=[gpt_oss_120b()]) as sim:
        provider = OllamaProvider(sim.url, backoff=0.01)
        seen: list[PullSnapshot] = []
        try:
            final = await pull_model(provider, "gpt-oss:120b", seen.append)
            installed = [m.name for m in await provider.list_models()]
        finally:
            await provider.aclose()
    assert seen[0].status == "pulling manifest"
    assert any(s.status.startswith("pulling ") and s.completed for s in seen)
    assert [s.status for s in seen[-3:]] == [
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    assert final.done and final.total is not None and final.total > 65_000_000_000
    assert installed == ["gpt-oss:120b"]
    body = next(r.body for r in sim.requests if r.endpoint == "pull")
    assert body == {"model": "gpt-oss:120b", "stream": True}


async def test_an_unknown_model_fails_with_the_servers_message(
    sim: Simulator, provider: OllamaProvider
) -> None:
    with pytest.raises(StreamError, match="file does not exist"):
        await pull_model(provider, "nosuchmodel:7b")


async def test_cancelling_closes_the_stream_and_installs_nothing() -> None:
    with Simulator(models=[], catalog=[gpt_oss_120b()], token_delay_ms=100) as sim:
        provider = OllamaProvider(sim.url, backoff=0.01)
        started = asyncio.Event()

        def on_progress(snapshot: PullSnapshot) -> None:
            if snapshot.completed:
                started.set()

        task = asyncio.create_task(pull_model(provider, "gpt-oss:120b", on_progress))
        try:
            await asyncio.wait_for(started.wait(), 30)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            (record,) = [r for r in sim.requests if r.endpoint == "pull"]
            assert await asyncio.to_thread(sim.wait_for_disconnect, record, 30)
            assert [m.name for m in await provider.list_models()] == []
        finally:
            await provider.aclose()


async def test_servers_that_cannot_pull_say_where_to_get_models() -> None:
    with Simulator(flavor="lmstudio") as sim:
        provider = LMStudioProvider(sim.openai_url)
        try:
            with pytest.raises(CapabilityMissing) as caught:
                await pull_model(provider, "openai/gpt-oss-20b")
        finally:
            await provider.aclose()
    assert "lms get openai/gpt-oss-20b" in str(caught.value)

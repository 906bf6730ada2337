"""The cross-file context ring: what enters, what is dropped, and the order it is sent in."""

from __future__ import annotations

from koma.engine.completion.ring import ContextRing, is_secret, lines_around
from koma.settings import DEFAULT_SECRET_PATTERNS

BODY = "\n".join(f"def f{i}(x):\n    return x * {i}" for i in range(40))


def test_a_near_copy_replaces_the_old_chunk_and_order_is_kept() -> None:
    ring = ContextRing(max_chunks=3)
    ring.add("a.py", "alpha = 1\nbeta = 2\ngamma = 3")
    ring.add("b.py", "one = 1\ntwo = 2")
    ring.add("a.py", "alpha = 1\nbeta = 2\ngamma = 3")  # the same place again: moves to the end
    assert [c.name for c in ring.chunks_for("", 10_000)] == ["b.py", "a.py"]
    ring.add("c.py", "x = 1")
    ring.add("d.py", "y = 2")
    assert [c.name for c in ring.chunks_for("", 10_000)] == ["a.py", "c.py", "d.py"]


def test_chunks_like_the_cursor_text_and_over_budget_are_left_out() -> None:
    ring = ContextRing()
    ring.add("old.py", "import os\n" + "a = 1\n" * 50)
    ring.add("near.py", "def area(r):\n    return 3.14 * r * r")
    ring.add("new.py", "import sys\nprint(sys.argv)")
    around = "def area(r):\n    return 3.14 * r * r\n"
    names = [c.name for c in ring.chunks_for(around, 60)]
    assert names == ["new.py"]  # near.py is the cursor's own text; old.py is over the budget


def test_secret_files_never_enter() -> None:
    ring = ContextRing()
    ring.secret_patterns = list(DEFAULT_SECRET_PATTERNS)
    assert not ring.add(".env", "AWS_SECRET_ACCESS_KEY=abc", "file:///w/.env")
    assert not ring.add("credentials", "key=1", "file:///home/u/.aws/credentials")
    assert ring.add("app.py", "x = 1", "file:///w/app.py")
    assert is_secret("file:///w/keys/server.pem", DEFAULT_SECRET_PATTERNS)
    assert len(ring) == 1


def test_an_edit_far_from_the_last_keeps_the_old_place() -> None:
    ring = ContextRing()
    ring.note_edit("file:///w/m.py", BODY, 3)
    ring.note_edit("file:///w/m.py", BODY, 5)
    assert len(ring) == 0
    ring.note_edit("file:///w/m.py", BODY, 70)
    (chunk,) = ring.chunks_for("", 10_000)
    assert chunk.name == "m.py" and chunk.text == lines_around(BODY, 5)
    assert "def f2(x):" in chunk.text


async def test_idle_after_a_new_chunk_warms_the_llama_server_cache() -> None:
    import asyncio

    from koma.engine.completion.pipeline import CompletionInput, CompletionPipeline, ModelTarget
    from koma.providers.openai_compat import OpenAICompatProvider
    from koma.settings import CompletionSettings
    from koma_sim import Reply, Simulator
    from koma_sim.script import qwen_coder

    sim = Simulator(models=[qwen_coder()], flavor="llamacpp")
    sim.start()
    provider = OpenAICompatProvider(f"{sim.url}/v1", backoff=0.01)
    try:
        sim.set_default_reply(Reply(content="1"))

        async def target() -> ModelTarget:
            return ModelTarget(provider, "qwen2.5-coder:1.5b")

        current = CompletionSettings()
        pipeline = CompletionPipeline(target, lambda: current)
        pipeline.warmer.idle_s = 0.2
        await pipeline.complete(CompletionInput("file:///w/a.py", "x = ", "\n", invoked=True))
        pipeline.ring.add("units.py", "TAU = 6.28", "file:///w/units.py")
        pipeline.ring_changed()
        # Typing again before the idle time passes calls the warm-up off…
        await asyncio.sleep(0.05)
        await pipeline.complete(CompletionInput("file:///w/a.py", "y = ", "\n", invoked=True))
        await asyncio.sleep(0.4)
        assert pipeline.stats.warm_ups == 0
        # …and once idle, one zero-token /infill carries the ring's chunks.
        pipeline.ring.add("more.py", "E = 2.718", "file:///w/more.py")
        pipeline.ring_changed()
        await asyncio.sleep(0.6)
        assert pipeline.stats.warm_ups == 1
    finally:
        await provider.aclose()
        sim.stop()
    warm = [r for r in sim.requests if r.endpoint == "infill" and r.body.get("n_predict") == 0]
    extra = warm[-1].body["input_extra"]
    assert [c["filename"] for c in extra] == ["units.py", "more.py"]

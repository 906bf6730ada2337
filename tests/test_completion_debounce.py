"""The debounce follows the user's typing rhythm and predicts where they pause."""

from __future__ import annotations

import random
import time

from koma.engine.completion.debounce import DEFAULT_MS, MAX_MS, MIN_MS, AdaptiveDebounce
from koma.engine.completion.pipeline import CompletionInput, CompletionPipeline, ModelTarget
from koma.settings import CompletionSettings

URI = "file:///w/a.py"


def typed(debounce: AdaptiveDebounce, gaps_ms: list[float]) -> None:
    t = 0.0
    debounce.keystroke("u", at=t)
    for gap in gaps_ms:
        t += gap / 1000.0
        debounce.keystroke("u", at=t)


def test_without_history_the_default_applies() -> None:
    assert AdaptiveDebounce().delay_ms("x = foo", "") == DEFAULT_MS * 1.15 * 0.9


def test_fast_typists_wait_less_than_slow_typists() -> None:
    rng = random.Random(1)
    fast, slow = AdaptiveDebounce(), AdaptiveDebounce()
    typed(fast, [rng.lognormvariate(4.3, 0.3) for _ in range(60)])  # ~75 ms gaps
    typed(slow, [rng.lognormvariate(5.3, 0.3) for _ in range(60)])  # ~200 ms gaps
    assert fast.delay_ms("x = fo", "") < slow.delay_ms("x = fo", "")
    assert MIN_MS <= fast.delay_ms("x = fo", "") <= MAX_MS


def test_wait_exceeds_most_gaps_so_typing_does_not_trigger_requests() -> None:
    rng = random.Random(2)
    gaps = [rng.lognormvariate(4.8, 0.35) for _ in range(200)]
    debounce = AdaptiveDebounce()
    typed(debounce, gaps)
    wait = debounce.delay_ms("value = fo", "")
    recent = gaps[-40:]
    assert sum(g > wait for g in recent) / len(recent) < 0.15


def test_pauses_do_not_inflate_the_rhythm() -> None:
    debounce = AdaptiveDebounce()
    typed(debounce, [100.0] * 30 + [5000.0] + [100.0] * 10)
    assert debounce.base_ms() < 200


def test_wait_is_shorter_after_a_word_than_inside_one() -> None:
    debounce = AdaptiveDebounce()
    typed(debounce, [120.0] * 30)
    assert debounce.delay_ms("foo(", "") < debounce.delay_ms("foo", "")


def test_fixed_setting_wins() -> None:
    debounce = AdaptiveDebounce(fixed_ms=42)
    typed(debounce, [300.0] * 30)
    assert debounce.delay_ms("x", "") == 42.0


def typed_lines(
    debounce: AdaptiveDebounce, lines: list[str], gap_ms: float, pause_ms: float
) -> None:
    """Type each line key by key (each request tells the cursor line), pausing before Enter."""
    t = 0.0
    for line in lines:
        for i in range(1, len(line) + 1):
            debounce.keystroke("u", at=t)
            debounce.note_context("u", line[:i])
            t += (pause_ms if i == len(line) else gap_ms) / 1000.0
        debounce.keystroke("u", at=t)  # Enter
        debounce.note_context("u", "    ")
        t += gap_ms / 1000.0


STATEMENTS = ["if width <= 0:", "chunks.reverse()", "for chunk in chunks:", "lines.append(line)"]


def test_a_learned_pause_sends_the_request_at_once() -> None:
    """This user stops after finishing a statement: there a fast model is asked at once."""
    debounce = AdaptiveDebounce()
    debounce.note_latency(80.0)
    typed_lines(debounce, STATEMENTS * 3, gap_ms=90.0, pause_ms=700.0)
    assert debounce.delay_ms("        if x:", "") == 0.0
    assert debounce.delay_ms("        total = compute(a, b)", "") == 0.0
    # Inside a word and inside an open call the usual wait applies.
    assert debounce.delay_ms("        total = comp", "") >= MIN_MS
    assert debounce.delay_ms("        total = compute(a, ", "") >= MIN_MS


def pauses_mostly(debounce: AdaptiveDebounce) -> None:
    """Three statements in four are followed by a pause; from the fourth the user types on."""
    for i, line in enumerate(STATEMENTS * 3):
        typed_lines(debounce, [line], gap_ms=90.0, pause_ms=90.0 if i % 4 == 3 else 700.0)


def test_a_slow_model_is_not_asked_early_on_a_guess() -> None:
    """A wrong guess costs a whole model call: worth it for a fast model, not a slow one."""
    fast, slow, unknown = AdaptiveDebounce(), AdaptiveDebounce(), AdaptiveDebounce()
    fast.note_latency(80.0)
    slow.note_latency(1500.0)
    for debounce in (fast, slow, unknown):
        pauses_mostly(debounce)
    assert fast.delay_ms("x = f(a)", "") == 0.0
    assert slow.delay_ms("x = f(a)", "") >= MIN_MS
    # Before any model call has answered, the model is taken to be slow.
    assert unknown.delay_ms("x = f(a)", "") >= MIN_MS


def test_no_pause_is_predicted_for_someone_who_types_straight_on() -> None:
    debounce = AdaptiveDebounce()
    debounce.note_latency(80.0)
    typed_lines(debounce, STATEMENTS * 3, gap_ms=90.0, pause_ms=90.0)
    assert debounce.delay_ms("        if x:", "") >= MIN_MS


def test_a_fast_steady_typist_waits_less_than_a_hesitant_one_in_the_same_place() -> None:
    rng = random.Random(3)
    steady, hesitant = AdaptiveDebounce(), AdaptiveDebounce()
    typed(steady, [rng.gauss(80.0, 5.0) for _ in range(60)])
    # Same median speed, but every fourth key comes after a short hesitation.
    typed(hesitant, [80.0 if i % 4 else 320.0 for i in range(60)])
    assert steady.delay_ms("    retu", "") < hesitant.delay_ms("    retu", "")


def test_the_prediction_follows_a_change_of_habit() -> None:
    debounce = AdaptiveDebounce()
    debounce.note_latency(80.0)
    typed_lines(debounce, STATEMENTS * 3, gap_ms=90.0, pause_ms=700.0)
    assert debounce.delay_ms("x = f(a)", "") == 0.0
    typed_lines(debounce, STATEMENTS * 6, gap_ms=90.0, pause_ms=90.0)
    assert debounce.delay_ms("x = f(a)", "") >= MIN_MS


def test_a_fixed_setting_also_overrides_a_predicted_pause() -> None:
    debounce = AdaptiveDebounce(fixed_ms=300)
    debounce.note_latency(80.0)
    typed_lines(debounce, STATEMENTS * 3, gap_ms=90.0, pause_ms=700.0)
    assert debounce.delay_ms("x = f(a)", "") == 300.0


async def test_a_cache_hit_is_answered_without_waiting_for_a_slow_rhythm() -> None:
    """Even for a slow typist (a long learned wait) a cached suggestion comes back at once."""
    calls: list[str] = []

    async def target() -> ModelTarget:
        calls.append("model")
        raise AssertionError("the model must not be asked")

    settings = CompletionSettings()
    pipeline = CompletionPipeline(target, lambda: settings)
    typed(pipeline.debounce, [900.0] * 30)
    assert pipeline.debounce.delay_ms("x = com", "") >= 500.0
    pipeline.cache.put(URI, "x = ", "\n", "compute(a, b)")
    started = time.perf_counter()
    result = await pipeline.complete(CompletionInput(URI, "x = com", "\n"))
    assert (result.text, result.source) == ("pute(a, b)", "cache")
    assert time.perf_counter() - started < 0.2
    assert calls == []

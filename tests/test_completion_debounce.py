"""The debounce follows the user's typing rhythm."""

from __future__ import annotations

import random

from koma.engine.completion.debounce import DEFAULT_MS, MAX_MS, MIN_MS, AdaptiveDebounce


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

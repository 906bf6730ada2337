"""The repetition guard every chat stream runs through: loops end, everything else passes."""

from __future__ import annotations

import pytest

from koma.engine.metrics import plausible_rate
from koma.engine.repetition import RepetitionGuard
from koma.types import Metrics


def run(text: str, size: int, channel: str = "final") -> tuple[str, bool, RepetitionGuard]:
    """Feed `text` in pieces of `size` characters; what was shown, and whether it looped."""
    guard = RepetitionGuard()
    shown: list[str] = []
    for i in range(0, len(text), size):
        pieces, looping = guard.feed([(channel, text[i : i + size])])  # type: ignore[list-item]
        shown += [t for _, t in pieces]
        if looping:
            return "".join(shown), True, guard
    shown += [t for _, t in guard.flush()]
    return "".join(shown), False, guard


SIZES = [1, 3, 7, 40]


@pytest.mark.parametrize("size", SIZES)
def test_a_repeated_line_stops_after_two_copies(size: int) -> None:
    head = "def f(s):\n    return s[::-1]\n\n"
    shown, looping, guard = run(head + 'print(f("hello"))\n' * 30, size)
    assert looping
    assert shown == head + 'print(f("hello"))\n' * 2
    assert guard.loop is not None and "8 times" in guard.loop
    assert "the repeated copies are not shown" in guard.warning()


@pytest.mark.parametrize("size", SIZES)
def test_a_repeated_paragraph_stops_after_two_copies(size: int) -> None:
    paragraph = "The answer is four.\nTwo and two make four.\n\n"
    shown, looping, _ = run("Sure.\n" + paragraph * 20, size)
    assert looping
    assert shown.count("The answer is four.") == 2
    assert shown.startswith("Sure.\n")


@pytest.mark.parametrize("size", SIZES)
def test_one_endless_line_stops(size: int) -> None:
    shown, looping, guard = run("Well, " + "I am a model and I like it. " * 80, size)
    assert looping
    assert len(shown) < 800
    assert guard.loop is not None and "characters" in guard.loop


@pytest.mark.parametrize("size", SIZES)
def test_a_model_writing_itself_the_next_question_stops(size: int) -> None:
    """What the packaged Gemma did against llama-cpp-python with --chat_format alpaca."""
    turns = "".join(
        f"### Instruction: What is {n} - 18?\n\n{n} - 19 = {n + 3}\n\n" for n in range(60, 200)
    )
    shown, looping, guard = run("4\n\n" + turns, size)
    assert looping
    assert shown.count("### Instruction") == 16  # all shown: near copies are not held back
    assert guard.loop is not None and "other numbers" in guard.loop
    assert "not shown" not in guard.warning()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    "text",
    [
        'print("hello")\n' * 5 + "done\n",  # asked for five: five it is
        "a = 1\na = 1\na = 12\n\n\na = 1\nb = 2\n",
        "{\n  a: {\n    b: {\n      c: 1\n    }\n  }\n}\n" + "}\n" * 3,
        "x" * 100 + "\n" + "=" * 79 + "\n",
        "| a | b |\n|---|---|\n| 1 | 2 |\n| 1 | 2 |\n| 3 | 4 |\n",
        "no newline at the end, a partial line that looks like nothing",
        "repeat\nrepeat\nrepeat",  # ends held back: flushed whole at the end
        "".join(f"{n}\n" for n in range(1, 31)),  # count to 30, one per line
        "".join(f"| {n} | {n * n} |\n" for n in range(1, 21)),  # a table of squares
    ],
)
def test_text_that_does_not_loop_is_shown_exactly(text: str, size: int) -> None:
    shown, looping, _ = run(text, size)
    assert not looping
    assert shown == text


def test_channels_are_watched_separately() -> None:
    guard = RepetitionGuard()
    shown, looping = guard.feed([("analysis", "think\n"), ("final", "think\n")] * 5)
    assert not looping
    shown += guard.flush()
    assert "".join(t for c, t in shown if c == "final") == "think\n" * 5


def test_a_rate_needs_two_tokens() -> None:
    absurd = Metrics(tokens_per_second=1_000_000_000.0, ttft_ms=5.0, source="server")
    assert plausible_rate(absurd, 0).tokens_per_second is None
    assert plausible_rate(absurd, 500).tokens_per_second is None  # no local model is that fast
    assert plausible_rate(absurd, 0).ttft_ms == 5.0
    real = Metrics(tokens_per_second=41.5)
    assert plausible_rate(real, 1).tokens_per_second is None
    assert plausible_rate(real, 2).tokens_per_second == 41.5

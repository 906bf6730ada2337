"""The completion prompt stays within its token budget and keeps a stable beginning."""

from __future__ import annotations

from koma.engine.completion.prompt import (
    HOLE,
    Neighbour,
    build_prompt,
    estimate_tokens,
    prefix_window,
    suffix_window,
)

SOURCE = "".join(f"def function_{i}(value):\n    return value * {i}\n\n" for i in range(400))


def test_small_files_are_sent_whole() -> None:
    parts = build_prompt("x = 1\n", "\ny = 2\n", prefix_tokens=1024, suffix_tokens=256)
    assert parts.prefix == "x = 1\n" and parts.suffix == "\ny = 2\n"


def test_windows_respect_the_budget_and_cut_at_lines() -> None:
    cut = len(SOURCE) // 2
    parts = build_prompt(SOURCE[:cut], SOURCE[cut:], prefix_tokens=300, suffix_tokens=100)
    assert estimate_tokens(parts.prefix) <= 300
    assert estimate_tokens(parts.suffix) <= 101
    assert SOURCE[:cut].endswith(parts.prefix)
    assert SOURCE[cut - len(parts.prefix) - 1] == "\n"  # starts on a line boundary
    assert SOURCE[cut:].startswith(parts.suffix) and parts.suffix.endswith("\n")


def test_window_start_survives_typing() -> None:
    """Typing at the cursor keeps the prompt's first bytes, so the server's prompt cache hits."""
    base = SOURCE[:20_000]
    starts = set()
    same = 0
    previous = None
    for typed in range(1, 200):
        window = prefix_window(base + "x" * typed, 1024, offset=0)
        start = window[:80]
        starts.add(start)
        same += start == previous
        previous = start
    assert len(starts) <= 2
    assert same >= 190


def test_window_is_stable_when_the_caller_pre_cuts_the_text() -> None:
    text = SOURCE[:30_000]
    full = prefix_window(text, 1024)
    cut_at = 10_000
    assert prefix_window(text[cut_at:], 1024, offset=cut_at) == full


def test_one_huge_line_is_cut_by_characters() -> None:
    window = prefix_window("a" * 100_000, 100)
    assert 0 < len(window) <= 400


def test_suffix_budget_zero_sends_no_suffix() -> None:
    assert suffix_window("abc\ndef\n", 0) == ""


def test_snippets_from_related_open_files_come_first_and_fit() -> None:
    other = Neighbour(
        "file:///w/geometry.py",
        "import math\n\n\ndef circle_area(radius):\n    return math.pi * radius ** 2\n",
    )
    unrelated = Neighbour("file:///w/notes.py", "print('hello world')\n" * 5)
    prefix = "from geometry import circle_area\n\nradius = 2\narea = circle_area(radius)\n"
    parts = build_prompt(
        prefix, "", prefix_tokens=1024, suffix_tokens=64, neighbours=(other, unrelated)
    )
    assert [s.uri for s in parts.snippets] == ["file:///w/geometry.py"]
    prompt = parts.fim_prompt()
    assert prompt.index("circle_area(radius):") < prompt.index("radius = 2")
    assert prompt.endswith(prefix)
    assert estimate_tokens(parts.context_header()) <= 1024 // 4 + 16


def test_hole_filler_messages_put_the_fixed_instructions_first() -> None:
    parts = build_prompt("a = ", "\nb = 2\n", prefix_tokens=100, suffix_tokens=100)
    system, user = parts.chat_messages()
    assert system.role == "system" and "<COMPLETION>" in system.content
    assert f"a = {HOLE}\nb = 2" in user.content

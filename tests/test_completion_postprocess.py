"""Post-processing of raw model output into ghost text (what the user would see)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from koma.engine.completion.postprocess import (
    CursorContext,
    clean,
    extract_hole,
    fit_to_line,
    open_brackets,
    stream_should_stop,
    strip_reasoning,
)


def ctx(prefix: str, suffix: str = "", multiline: str = "auto") -> CursorContext:
    return CursorContext.from_text(prefix, suffix, multiline)  # type: ignore[arg-type]


def test_single_line_is_cut_at_the_first_newline() -> None:
    c = ctx("x = compute(", ")\nprint(x)\n")
    assert c.mode == "single"
    assert clean("a, b)\nprint(y)\n", c) == "a, b)"


def test_mid_word_cursor_gets_no_suggestion() -> None:
    c = ctx("result = val", "ue + 1\n")
    assert c.mode is None
    assert clean("ue + 2", c) is None


def test_blank_line_in_a_block_allows_several_lines_but_stops_at_dedent() -> None:
    prefix = "def total(items):\n    "
    suffix = "\n\ndef other():\n    pass\n"
    c = ctx(prefix, suffix)
    assert c.mode == "multi"
    raw = "s = 0\n    for i in items:\n        s += i\n    return s\n\ndef third():\n    pass\n"
    assert clean(raw, c) == "s = 0\n    for i in items:\n        s += i\n    return s"


def test_block_opener_completion_keeps_the_body_only() -> None:
    c = ctx("class A:\n    def f(self):", "\n    def g(self):\n        pass\n")
    assert c.mode == "multi" and c.block_opener
    raw = "\n        return 1\n    def g(self):\n        pass"
    assert clean(raw, c) == "\n        return 1"


def test_lines_already_after_the_cursor_are_not_repeated() -> None:
    prefix = "def f(a):\n    "
    suffix = "\n    return a\n"
    c = ctx(prefix, suffix)
    assert clean("a = a * 2\n    return a\n", c) == "a = a * 2"


def test_unmatched_closing_bracket_is_cut() -> None:
    c = ctx("values = [1, 2", "\n")
    assert clean("]) + extra", c) == "]"
    assert clean(", 3]", c) == ", 3]"


def test_brackets_inside_strings_do_not_count() -> None:
    assert open_brackets("x = '('\ny = [\"]\"") == "["
    assert open_brackets("f(  # (\n") == "("


def test_whitespace_or_empty_results_show_nothing() -> None:
    c = ctx("x = ", "\n")
    assert clean("   ", c) is None
    assert clean("", c) is None
    assert clean("\n\n", c) is None


def test_reasoning_never_reaches_the_suggestion() -> None:
    c = ctx("total = ", "\n")
    assert clean("<think>the user wants a sum</think>a + b", c) == "a + b"
    harmony = (
        "<|channel|>analysis<|message|>Sum them.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>a + b<|return|>"
    )
    assert clean(harmony, c) == "a + b"
    assert strip_reasoning("<|channel|>analysis<|message|>only thoughts") == ""


def test_hole_filler_answer_is_taken_from_its_tags() -> None:
    c = ctx("def add(a, b):\n    return ", "\n")
    assert clean("Sure!\n<COMPLETION>a + b</COMPLETION>\nDone.", c, "chat") == "a + b"
    # A model that repeats the start of the line is trimmed back to the hole.
    assert clean("<COMPLETION>return a + b</COMPLETION>", c, "chat") == "a + b"
    # Fenced code without tags still works.
    assert extract_hole("```python\na + b\n```") == "a + b"


def test_hole_filler_on_an_indented_blank_line_does_not_double_the_indent() -> None:
    c = ctx("def f(x):\n    ", "\n")
    assert clean("<COMPLETION>    return x</COMPLETION>", c, "chat") == "return x"


def test_fit_to_line_cuts_a_duplicated_auto_closed_bracket() -> None:
    assert fit_to_line("a, b)", ")") == ("a, b", 0)


def test_fit_to_line_extends_over_auto_closed_chars_it_contains() -> None:
    assert fit_to_line("a, b): pass", ")") == ("a, b): pass", 1)
    assert fit_to_line("a, b", ")") == ("a, b", 0)
    assert fit_to_line("x", "") == ("x", 0)


def test_stream_stops_once_a_single_line_is_complete() -> None:
    c = ctx("x = ", "\n")
    assert not stream_should_stop("foo(", c)
    assert stream_should_stop("foo()\nbar", c)


def test_stream_stops_when_a_block_is_left() -> None:
    c = ctx("def f():\n    ", "\n")
    assert not stream_should_stop("a = 1\n    b = 2\n", c)
    assert stream_should_stop("a = 1\n    b = 2\ndef g():\n", c)


def test_chat_stream_stops_at_the_closing_tag() -> None:
    c = ctx("def f():\n    ", "\n")
    assert not stream_should_stop("thinking about it <COMPLETION>return", c, "chat")
    assert stream_should_stop("<COMPLETION>return 1</COMPLETION>", c, "chat")


@given(st.text(max_size=200), st.text(max_size=60), st.text(max_size=60))
def test_clean_never_returns_blank_text(raw: str, prefix: str, suffix: str) -> None:
    for route in ("fim", "chat"):
        out = clean(raw, ctx(prefix, suffix), route)  # type: ignore[arg-type]
        assert out is None or out.strip()
        if out is not None:
            assert "<think>" not in out and "<|channel|>" not in out

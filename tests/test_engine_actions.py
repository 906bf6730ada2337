"""Code-action prompts and answer extraction: code from the final answer only, never reasoning."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from koma.engine.actions import (
    build_messages,
    code_blocks,
    extract_code,
    generate_edit,
    make_target,
    reindent,
    replacement,
    widen_to_lines,
)
from koma.errors import KomaError
from koma.providers.registry import create_provider
from koma.types import GenerationSettings
from koma_sim import Reply, Simulator

LINES = [
    "import os",
    "",
    "class A:",
    "    def f(self):",
    "        return 1",
    "",
    "x = 2",
]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ((3, 6), (4, 5), (3, 4)),  # partial lines widen to whole lines
        ((2, 0), (5, 0), (2, 4)),  # ending at column 0 excludes that line
        ((3, 2), (3, 2), (2, 4)),  # a cursor takes its paragraph
        ((6, 1), (6, 1), (6, 6)),
        ((1, 0), (1, 0), None),  # a cursor on a blank line: nothing
        ((5, 0), (5, 0), None),
        ((40, 0), (90, 3), (6, 6)),  # past the end clamps to the last line
    ],
)
def test_widen_to_lines(
    start: tuple[int, int], end: tuple[int, int], expected: tuple[int, int] | None
) -> None:
    assert widen_to_lines(LINES, start, end) == expected


def test_widen_on_an_empty_document_gives_nothing() -> None:
    assert widen_to_lines([], (0, 0), (0, 0)) is None
    assert widen_to_lines(["", ""], (0, 0), (1, 0)) is None


def test_target_keeps_bounded_context_and_refuses_huge_selections() -> None:
    target = make_target(LINES, (3, 4), "python", "a.py")
    assert target.code == "    def f(self):\n        return 1"
    assert target.before.endswith("class A:") and target.after.endswith("x = 2")
    huge = ["x = 1" * 20_000]
    with pytest.raises(KomaError, match="too large"):
        make_target(huge, (0, 0), "python", "a.py")


def test_prompts_put_stable_instructions_first_and_carry_the_diagnostic() -> None:
    target = make_target(LINES, (3, 4), "python", "a.py")
    system, user = build_messages("fix", target, "Missing return type")
    assert system.role == "system" and "exactly one fenced code block" in system.content
    assert "Diagnostic: Missing return type" in user.content
    assert "lines 4-5" in user.content
    [explain] = build_messages("explain", target)
    assert explain.role == "user" and "def f(self):" in explain.content


def test_fences_in_the_code_get_a_longer_fence() -> None:
    target = make_target(['doc = """', "```py", "x", "```", '"""'], (0, 4), "python", "a.md")
    _, user = build_messages("refactor", target)
    assert "````python\n" in user.content


def test_extract_prefers_the_block_in_the_documents_language() -> None:
    answer = "Try:\n```bash\npip install x\n```\nthen\n```python\nprint(1)\n```\n"
    assert extract_code(answer, "python") == "print(1)"
    assert extract_code(answer, "") == "pip install x"  # otherwise the longest


def test_extract_handles_tildes_indented_fences_and_nested_backticks() -> None:
    assert extract_code("~~~\na = 1\n~~~") == "a = 1"
    assert extract_code("1. Do this:\n   ```py\n   b = 2\n   ```\n") == "b = 2"
    nested = "````md\n```py\nc = 3\n```\n````"
    assert extract_code(nested, "md") == "```py\nc = 3\n```"


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ("", "empty answer"),
        ("   \n", "empty answer"),
        ("Just use a context manager.", "no code block"),
        ("```python\ndef f():\n    return", "cut off"),
    ],
)
def test_extract_refuses_answers_without_complete_code(answer: str, problem: str) -> None:
    with pytest.raises(KomaError, match=problem):
        extract_code(answer, "python")


def test_extract_strips_any_leaked_reasoning_markup() -> None:
    assert extract_code("```py\n<think>x = 1</think>\n<|end|>\n```") == "x = 1\n"


def test_code_blocks_marks_an_unclosed_block() -> None:
    blocks = code_blocks("```a\n1\n```\n```b\n2")
    assert [(b.info, b.code, b.closed) for b in blocks] == [("a", "1", True), ("b", "2", False)]


@given(
    st.lists(
        st.text(alphabet="abc =()\t:#'\"", max_size=20).filter(lambda s: "```" not in s),
        min_size=1,
        max_size=6,
    )
)
def test_extract_returns_the_fenced_code_unchanged(lines: list[str]) -> None:
    code = "\n".join(lines)
    if not code.strip():
        return
    assert extract_code(f"Here:\n```python\n{code}\n```\nDone.", "python") == code


def test_reindent_moves_dedented_code_back_into_its_block() -> None:
    original = "    def f(self):\n        return 1"
    assert reindent("def f(self):\n    return 2", original) == "    def f(self):\n        return 2"
    assert reindent("    def f(self):\n        pass", original) == "    def f(self):\n        pass"
    assert reindent("\tx = 1\n", "\t\tx = 0") == "\t\tx = 1\n"
    assert reindent("a\n\nb", "  z") == "  a\n\n  b"  # blank lines stay empty


def test_generated_tests_are_not_reindented() -> None:
    target = make_target(LINES, (3, 4), "python", "a.py")
    answer = "```python\ndef test_f():\n    assert A().f() == 1\n```"
    assert replacement("tests", target, answer) == "def test_f():\n    assert A().f() == 1"
    assert replacement("refactor", target, "```python\ndef f(self):\n    return 1\n```") == (
        "    def f(self):\n        return 1"
    )


async def test_generate_edit_uses_only_the_final_answer() -> None:
    harmony = (
        "<|channel|>analysis<|message|>Maybe ```python\nimport evil\n``` no.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>```python\ndef f(self):\n"
        "    return 2\n```<|return|>"
    )
    with Simulator(flavor="ollama") as sim:
        sim.add_reply(Reply(thinking="REASONING-TEXT", content=harmony))
        provider = create_provider("ollama", sim.url)
        try:
            target = make_target(LINES, (3, 4), "python", "a.py")
            outcome = await generate_edit(
                provider,
                "gpt-oss:20b",
                "refactor",
                target,
                GenerationSettings(reasoning_effort="medium"),
            )
        finally:
            await provider.aclose()
    assert outcome.new_text == "    def f(self):\n        return 2"
    assert "REASONING-TEXT" in outcome.result.reasoning
    assert "import evil" in outcome.result.reasoning
    assert "evil" not in outcome.new_text

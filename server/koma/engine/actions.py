"""Code actions as prompts: what to ask the model, and how to turn its answer into code.

Each action works on whole lines (a partial selection is widened to the lines it touches) so
the replacement can be re-indented to where it goes. The model is asked for exactly one fenced
code block; only the *final* answer is ever searched for it — the reasoning channels are kept
for hover and never reach the file. An answer without a complete code block is refused with a
clear message rather than pasted into the user's code.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Literal

from koma.errors import KomaError
from koma.providers.base import ChatRequest, Provider
from koma.types import GenerationResult, GenerationSettings, Message, StreamEvent

ActionKind = Literal["explain", "refactor", "docstring", "tests", "fix"]
ACTION_KINDS: tuple[ActionKind, ...] = ("explain", "refactor", "docstring", "tests", "fix")
TITLES: dict[ActionKind, str] = {
    "explain": "Koma: Explain",
    "refactor": "Koma: Refactor",
    "docstring": "Koma: Add docstring",
    "tests": "Koma: Generate tests",
    "fix": "Koma: Fix",
}
# Context around the target sent along so the model sees names and imports; characters.
CONTEXT_CHARS = 6_000
# Bigger targets are refused: the answer would not fit a local model's output budget.
MAX_TARGET_CHARS = 60_000

SYSTEM_PROMPT = (
    "You are Koma, a careful senior engineer editing code inside the user's editor. "
    "Answer with exactly one fenced code block that holds the complete replacement code and "
    "nothing else: no explanation before or after, no placeholders, no elided parts. Keep the "
    "language, style, names and indentation of the surrounding code."
)

INSTRUCTIONS: dict[ActionKind, str] = {
    "refactor": (
        "Refactor the target code for readability and simplicity without changing its "
        "behaviour or public interface. Return the full rewritten target code."
    ),
    "docstring": (
        "Add a concise docstring (or the language's doc comment) to each function, class or "
        "module in the target code that lacks one. Change nothing else. Return the full "
        "target code with the docstrings added."
    ),
    "tests": (
        "Write unit tests for the target code using the test framework the project most "
        "likely uses (pytest for Python). Return only the test code; it will be inserted "
        "after the target code."
    ),
    "fix": (
        "Fix the problem reported by the diagnostic below in the target code with the "
        "smallest correct change. Return the full corrected target code."
    ),
}

EXPLAIN_PROMPT = (
    "Explain what the following code from {where} does, how it works, and anything surprising "
    "or risky in it.\n\n{fence}{language}\n{code}\n{fence}"
)


@dataclass
class ActionTarget:
    """The whole lines an action works on, and the code around them."""

    start_line: int
    end_line: int  # inclusive
    code: str
    before: str
    after: str
    language: str
    path: str


def widen_to_lines(
    lines: list[str], start: tuple[int, int], end: tuple[int, int]
) -> tuple[int, int] | None:
    """Whole-line span of a selection; an empty selection takes the block around the cursor.

    Returns None when there is nothing to act on (an empty document, or a blank line).
    """
    if not lines:
        return None
    last = len(lines) - 1
    first_line = min(max(start[0], 0), last)
    end_line = min(max(end[0], 0), last)
    if (start[0], start[1]) != (end[0], end[1]):
        if end_line > first_line and end[1] == 0 and end[0] <= last:
            end_line -= 1  # a selection ending at column 0 does not include that line
        if all(not lines[i].strip() for i in range(first_line, end_line + 1)):
            return None
        return first_line, end_line
    # No selection: the paragraph (contiguous non-blank lines) holding the cursor.
    if not lines[first_line].strip():
        return None
    top = first_line
    while top > 0 and lines[top - 1].strip():
        top -= 1
    bottom = first_line
    while bottom < last and lines[bottom + 1].strip():
        bottom += 1
    return top, bottom


def make_target(lines: list[str], span: tuple[int, int], language: str, path: str) -> ActionTarget:
    """Cut the target lines and a bounded context out of the document."""
    start_line, end_line = span
    code = "\n".join(lines[start_line : end_line + 1])
    if len(code) > MAX_TARGET_CHARS:
        raise KomaError(
            f"the selection is too large for a code action ({len(code)} characters)",
            f"select at most {MAX_TARGET_CHARS} characters",
        )
    before = "\n".join(lines[:start_line])[-CONTEXT_CHARS:]
    after = "\n".join(lines[end_line + 1 :])[:CONTEXT_CHARS]
    return ActionTarget(start_line, end_line, code, before, after, language, path)


def _fence_for(text: str) -> str:
    """A fence longer than any backtick run in `text`, so code holding fences stays intact."""
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=2)
    return "`" * max(3, longest + 1)


def build_messages(
    kind: ActionKind, target: ActionTarget, diagnostic: str | None = None
) -> list[Message]:
    """The chat messages for one action; the stable instructions come first (prompt caching)."""
    if kind == "explain":
        return [Message.user(explain_prompt(target.code, target.language, target.path))]
    fence = _fence_for(target.before + target.code + target.after)
    parts = [f"File: {target.path} (language: {target.language or 'unknown'})"]
    if target.before.strip():
        parts.append(f"Code before the target (context only):\n{fence}\n{target.before}\n{fence}")
    parts.append(
        f"Target code (lines {target.start_line + 1}-{target.end_line + 1}):\n"
        f"{fence}{target.language}\n{target.code}\n{fence}"
    )
    if target.after.strip():
        parts.append(f"Code after the target (context only):\n{fence}\n{target.after}\n{fence}")
    if kind == "fix" and diagnostic:
        parts.append(f"Diagnostic: {diagnostic}")
    parts.append(INSTRUCTIONS[kind])
    return [Message.system(SYSTEM_PROMPT), Message.user("\n\n".join(parts))]


def explain_prompt(code: str, language: str, path: str) -> str:
    fence = _fence_for(code)
    return EXPLAIN_PROMPT.format(where=path, fence=fence, language=language, code=code)


_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$")
# Reasoning markup that must never reach a file, even if a parser upstream missed it.
_REASONING_MARKUP = re.compile(
    r"<\|(?:start|end|message|channel|constrain|return|call)\|>|</?(?:think|thinking|analysis)>",
)


@dataclass
class CodeBlock:
    info: str
    code: str
    closed: bool


def code_blocks(text: str) -> list[CodeBlock]:
    """Fenced blocks of a Markdown answer, in order; an unclosed last block is marked so."""
    blocks: list[CodeBlock] = []
    lines = text.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(lines):
        match = _FENCE_OPEN.match(lines[i])
        if not match:
            i += 1
            continue
        fence = match.group("fence")
        indent = len(match.group("indent"))
        body: list[str] = []
        i += 1
        closed = False
        while i < len(lines):
            stripped = lines[i].strip()
            if stripped.startswith(fence) and set(stripped) == {fence[0]}:
                closed = True
                i += 1
                break
            line = lines[i]
            # A fence indented in a list item indents its body the same way.
            body.append(line[indent:] if line[:indent].strip() == "" else line)
            i += 1
        blocks.append(CodeBlock(match.group("info").strip(), "\n".join(body), closed))
    return blocks


def extract_code(final_text: str, language: str = "") -> str:
    """The code of the model's final answer; raises `KomaError` when there is none.

    Prefers a closed block tagged with the document's language, then the longest closed block.
    """
    if not final_text.strip():
        raise KomaError("the model returned an empty answer", "try again or pick another model")
    blocks = [b for b in code_blocks(final_text) if b.code.strip()]
    closed = [b for b in blocks if b.closed]
    if not closed:
        if blocks:
            raise KomaError(
                "the model's answer was cut off before its code block ended",
                "raise chat.maxTokens / numCtx or select less code",
            )
        raise KomaError(
            "the model's answer held no code block, so nothing was changed",
            "try again, or ask in chat instead",
        )
    tagged = [b for b in closed if language and b.info.split()[:1] == [language]]
    best = (tagged or sorted(closed, key=lambda b: len(b.code), reverse=True))[0]
    return _REASONING_MARKUP.sub("", best.code)


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def reindent(code: str, original: str) -> str:
    """Shift `code` so its least-indented line sits at the original's first-line indentation."""
    base = next((_indent_of(line) for line in original.split("\n") if line.strip()), "")
    lines = code.split("\n")
    present = [_indent_of(line) for line in lines if line.strip()]
    if not present:
        return code
    least = min(present, key=len)
    if len(least) >= len(base):
        return code
    pad = base[len(least) :] if base.startswith(least) else base
    return "\n".join(pad + line if line.strip() else line for line in lines)


def replacement(kind: ActionKind, target: ActionTarget, final_text: str) -> str:
    """The text that goes into the document for an edit action."""
    code = extract_code(final_text, target.language).strip("\n")
    if kind == "tests":
        return code
    return reindent(code, target.code)


StreamFn = Callable[[Provider, ChatRequest], AsyncGenerator[StreamEvent, None]]


@dataclass
class ActionOutcome:
    """An edit action's replacement text and the full generation (reasoning for hover)."""

    new_text: str
    result: GenerationResult


async def generate_edit(
    provider: Provider,
    model: str,
    kind: ActionKind,
    target: ActionTarget,
    settings: GenerationSettings,
    diagnostic: str | None = None,
    stream: StreamFn | None = None,
) -> ActionOutcome:
    """Ask the model for one edit action and extract the code; raises `KomaError` on failure."""
    from koma.engine.stream import collect, stream_events

    request = ChatRequest(model, build_messages(kind, target, diagnostic), settings)
    result = await collect((stream or stream_events)(provider, request))
    return ActionOutcome(replacement(kind, target, result.text), result)

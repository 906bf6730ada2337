"""Turn what a model generated into text fit for ghost text at the cursor.

Models, especially chat models answering a hole-filler prompt, return more or less than the
hole: the code after the cursor again, a whole function when one line was wanted, an extra
closing bracket, their reasoning, markdown fences. Each step here removes one such failure.
The result is either clean text or `None` ("show nothing") — never reasoning, never whitespace.

`CursorContext` is computed once per request from the text around the cursor; `clean()` runs
before caching; `fit_to_line()` runs when a suggestion is served (also from the cache), because
the rest of the cursor line (auto-closed brackets) may differ between the two moments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Mode = Literal["single", "multi"]
Route = Literal["fim", "raw", "chat"]

MAX_LINES = 16
OPENERS = "([{"
CLOSERS = ")]}"
_PAIR = {")": "(", "]": "[", "}": "{"}
# What may follow the cursor on its line for a suggestion to still make sense.
_LINE_TAIL_OK = re.compile(r"[\s)\]}\"'`:;,.]*")
_REASONING_BLOCK = re.compile(
    r"<(think|thinking|analysis|reasoning)>.*?(</\1>|\Z)", re.DOTALL | re.IGNORECASE
)
_HARMONY_FINAL = re.compile(
    r"<\|channel\|>final<\|message\|>(.*?)(?:<\|(?:end|return)\|>|\Z)", re.S
)
_HARMONY_TOKEN = re.compile(r"<\|[a-z_]+\|>")
_FENCE = re.compile(r"^\s*```[\w+-]*\n(.*?)(?:\n```\s*)?$", re.DOTALL)
# Triple-quoted strings, one-line strings (an unterminated one ends with its line), comments,
# and brackets: one pass of this finds every bracket that is code.
_CODE_TOKEN = re.compile(
    r'"""(?:[^\\]|\\.)*?(?:"""|\Z)'
    r"|'''(?:[^\\]|\\.)*?(?:'''|\Z)"
    r'|"(?:[^"\\\n]|\\.)*(?:"|$)'
    r"|'(?:[^'\\\n]|\\.)*(?:'|$)"
    r"|#[^\n]*"
    r"|[()\[\]{}]",
    re.DOTALL | re.MULTILINE,
)
_OPEN_TAG = re.compile(r"<COMPLETION>", re.IGNORECASE)
_CLOSE_TAG = re.compile(r"</COMPLETION>", re.IGNORECASE)


@dataclass(frozen=True)
class CursorContext:
    """What post-processing needs to know about the cursor's surroundings."""

    line_prefix: str
    line_suffix: str
    next_lines: tuple[str, ...]
    mode: Mode | None
    block_opener: bool
    open_brackets: str

    @property
    def indent(self) -> int:
        return len(self.line_prefix) - len(self.line_prefix.lstrip())

    @property
    def blank_line(self) -> bool:
        return not self.line_prefix.strip()

    @classmethod
    def from_text(
        cls,
        prefix: str,
        suffix: str,
        multiline: Literal["auto", "always", "never"] = "auto",
        language_id: str = "python",
    ) -> CursorContext:
        line_prefix = prefix[prefix.rfind("\n") + 1 :]
        end = suffix.find("\n")
        line_suffix = suffix if end < 0 else suffix[:end]
        following = [] if end < 0 else suffix[end + 1 : end + 2000].split("\n")
        next_lines = tuple(line for line in following if line.strip())[:3]
        stripped = line_prefix.rstrip()
        opener = bool(stripped) and stripped[-1] in ":{([" and not _in_comment(line_prefix)
        mode: Mode | None
        if not _LINE_TAIL_OK.fullmatch(line_suffix):
            mode = None  # mid-word or mid-expression: a suggestion would collide with the text
        elif multiline == "never":
            mode = "single"
        elif multiline == "always":
            mode = "multi"
        elif line_suffix.strip() or _in_comment(line_prefix):
            mode = "single"
        elif not stripped or opener:
            mode = "multi"
        else:
            mode = "single"
        return cls(
            line_prefix=line_prefix,
            line_suffix=line_suffix,
            next_lines=next_lines,
            mode=mode,
            block_opener=opener,
            open_brackets=open_brackets(prefix[-4000:]),
        )


def _in_comment(line: str) -> bool:
    """A crude single-line comment check (`#` or `//` outside a string)."""
    quote: str | None = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote and line[i - 1] != "\\":
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#" or line.startswith("//", i):
            return True
    return False


def open_brackets(text: str) -> str:
    """Brackets opened and not yet closed in `text`, ignoring strings and `#` comments.

    One regex pass over the 4 KB it is given; it runs on every keystroke that misses the cache.
    """
    stack: list[str] = []
    for match in _CODE_TOKEN.finditer(text):
        token = match.group()
        if token in OPENERS:
            stack.append(token)
        elif token in CLOSERS and stack and stack[-1] == _PAIR[token]:
            stack.pop()
    return "".join(stack)


def strip_reasoning(text: str) -> str:
    """Remove reasoning that leaked into the answer text (tags or Harmony framing).

    The engine's channel parser normally separates it already; this is the last line of
    defence so that ghost text can never show a model's thoughts.
    """
    if "<|" in text:
        finals = _HARMONY_FINAL.findall(text)
        if finals:
            text = "".join(finals)
        elif "<|channel|>" in text:
            return ""  # only non-final channels: nothing to show
        text = _HARMONY_TOKEN.sub("", text)
    if "<" in text:
        text = _REASONING_BLOCK.sub("", text)
    return text


def extract_hole(text: str) -> str:
    """The body of a hole-filler answer: inside `<COMPLETION>` tags, else without fences."""
    start = _OPEN_TAG.search(text)
    if start:
        body = text[start.end() :]
        end = _CLOSE_TAG.search(body)
        return body[: end.start()] if end else body
    end = _CLOSE_TAG.search(text)
    if end:
        text = text[: end.start()]
    fenced = _FENCE.match(text)
    return fenced.group(1) if fenced else text


def hole_complete(text: str) -> bool:
    """True once a streamed hole-filler answer has closed its tag (the rest is noise)."""
    return _CLOSE_TAG.search(text) is not None


def _chat_fixups(text: str, ctx: CursorContext) -> str:
    """Undo what chat models typically add around a hole: a newline, the line start, indent."""
    if text.startswith("\n") and not ctx.block_opener:
        text = text[1:]
    head = ctx.line_prefix.lstrip()
    if len(head.strip()) >= 2 and text.lstrip().startswith(head):
        text = text.lstrip()[len(head) :]
    elif ctx.blank_line and ctx.line_prefix and text.startswith(ctx.line_prefix):
        text = text[len(ctx.line_prefix) :]
    return text


def _limit_scope(text: str, ctx: CursorContext) -> str:
    """Keep the lines that belong to the block being written; stop where it ends."""
    lines = text.split("\n")
    # Starting a new block after an opener: the block ends at a line back at the opener's
    # indentation. On a blank line: it ends at a line dedented below the cursor column.
    limit = ctx.indent if ctx.block_opener else ctx.indent - 1
    kept = [lines[0]]
    for line in lines[1:]:
        if line.strip():
            indent = len(line) - len(line.lstrip())
            if indent <= limit:
                break
        kept.append(line)
        if len(kept) >= MAX_LINES:
            break
    return "\n".join(kept)


def _cut_suffix_duplicate(text: str, ctx: CursorContext) -> str:
    """Stop where the completion starts repeating the lines after the cursor."""
    if not ctx.next_lines:
        return text
    target = ctx.next_lines[0].strip()
    lines = text.split("\n")
    for i in range(1, len(lines)):
        if lines[i].strip() == target:
            return "\n".join(lines[:i])
    return text


def _cut_repetition(text: str) -> str:
    """A model stuck in a loop repeats a line; keep its first occurrence only."""
    lines = text.split("\n")
    for i in range(2, len(lines)):
        line = lines[i].strip()
        if line and line == lines[i - 1].strip() == lines[i - 2].strip():
            return "\n".join(lines[: i - 1])
    return text


def _balance(text: str, ctx: CursorContext) -> str:
    """Cut at the first closing bracket that closes nothing opened before it."""
    stack = list(ctx.open_brackets)
    quote: str | None = None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = None
            elif ch == "\n":
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in OPENERS:
            stack.append(ch)
        elif ch in CLOSERS:
            if stack and stack[-1] == _PAIR[ch]:
                stack.pop()
            else:
                return text[:i]
    return text


def clean(raw: str, ctx: CursorContext, route: Route = "fim") -> str | None:
    """The suggestion to cache for this cursor context, or None when there is none."""
    if ctx.mode is None:
        return None
    text = strip_reasoning(raw.replace("\r\n", "\n"))
    if route == "chat":
        text = _chat_fixups(extract_hole(text), ctx)
    if ctx.mode == "single":
        if text.startswith("\n") and ctx.line_prefix.strip():
            return None
        text = text.lstrip("\n").split("\n", 1)[0]
    else:
        text = _limit_scope(text, ctx)
        text = _cut_suffix_duplicate(text, ctx)
        text = _cut_repetition(text)
    text = _balance(text, ctx).rstrip()
    if not text.strip():
        return None
    return text


def stream_should_stop(text: str, ctx: CursorContext, route: Route = "fim") -> bool:
    """Whether the stream (the final channel so far) already holds everything `clean` keeps.

    Stopping early closes the upstream request, so the model stops spending time on tokens
    that would be cut anyway.
    """
    if ctx.mode is None:
        return True
    if route == "chat":
        if hole_complete(text):
            return True
        if not _OPEN_TAG.search(text):
            return False
        text = _chat_fixups(extract_hole(text), ctx)
    if ctx.mode == "single":
        body = text.lstrip("\n") if not ctx.line_prefix.strip() else text
        return "\n" in body
    lines = text.split("\n")
    if len(lines) > MAX_LINES + 1:
        return True
    finished = lines[:-1]  # the last line may still be growing
    if len(finished) < 2:
        return False
    joined = "\n".join(finished)
    return (
        _limit_scope(joined, ctx) != joined
        or _cut_suffix_duplicate(joined, ctx) != joined
        or _cut_repetition(joined) != joined
    )


def fit_to_line(text: str, line_suffix: str) -> tuple[str, int]:
    """Adapt a suggestion to the rest of the cursor line; returns (insert text, chars replaced).

    When the editor auto-closed a bracket (`foo(|)`) and the suggestion also closes it, either
    the duplicate closer is cut from a one-line suggestion, or the range is extended over the
    auto-closed characters so accepting it does not leave `foo(a))`.
    """
    tail = line_suffix.rstrip()
    if not tail:
        return text, 0
    first, newline, _rest = text.partition("\n")
    if not newline and first.endswith(tail) and len(first) > len(tail):
        return first[: -len(tail)], 0
    # Extend over the tail when the first line contains its characters in order.
    pos = 0
    for ch in tail:
        found = first.find(ch, pos)
        if found < 0:
            return text, 0
        pos = found + 1
    return text, len(tail)

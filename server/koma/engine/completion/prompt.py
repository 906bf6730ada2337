"""Build the completion prompt: a prefix/suffix window budgeted in tokens, plus snippets.

Two things matter for latency on a local server. The prompt must be small (a laptop processes
prompt tokens at a few hundred per second), and its *start* must stay byte-identical from one
keystroke to the next so llama.cpp's `cache_prompt` / Ollama's KV cache can reuse it. So the
stable parts come first (snippets of other open files, then the prefix window) and the prefix
window starts on a line boundary snapped to a grid: while the user types, the window
start does not move, only its end grows. The suffix, which changes least usefully for caching,
goes last in both the FIM and the hole-filler layouts.

Tokens are estimated with the engine's one estimate (`koma.engine.tokens`; no tokenizer is
loaded on the hot path), which errs on the side of a slightly smaller window.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from koma.engine.tokens import CHARS_PER_TOKEN as CHARS_PER_TOKEN  # read here by pipeline.py
from koma.engine.tokens import chars_for_tokens, estimate_tokens
from koma.types import Message

# The prefix window start moves in steps of this many characters (see `prefix_window`).
WINDOW_GRID_CHARS = 1024
SNIPPET_LINES = 12
MAX_SNIPPETS = 3
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")

HOLE = "{{FILL_HERE}}"

HOLE_FILLER_SYSTEM = (
    "You are a code completion engine. You are given a file with the marker "
    f"{HOLE} at the cursor. Reply with only the code that belongs at the marker, wrapped in "
    "<COMPLETION></COMPLETION> tags: no explanation, no markdown fences, and do not repeat "
    "code that is already before or after the marker. Keep the indentation of the file. "
    "If nothing should be inserted, reply <COMPLETION></COMPLETION>."
)

_COMMENT_PREFIX = {
    "python": "#",
    "ruby": "#",
    "shellscript": "#",
    "sh": "#",
    "bash": "#",
    "yaml": "#",
    "toml": "#",
    "r": "#",
    "perl": "#",
    "lua": "--",
    "sql": "--",
    "haskell": "--",
}


def comment_prefix(language_id: str) -> str:
    """Line-comment marker for a language (C-like `//` when unknown)."""
    return _COMMENT_PREFIX.get(language_id.lower(), "//")


@dataclass(frozen=True)
class Neighbour:
    """Another open document the snippets may come from."""

    uri: str
    text: str


@dataclass(frozen=True)
class Snippet:
    uri: str
    text: str


@dataclass
class PromptParts:
    """The pieces of one completion prompt, before a route renders them."""

    prefix: str
    suffix: str
    snippets: list[Snippet] = field(default_factory=list)
    language_id: str = "python"
    path: str = ""
    # Cross-file chunks from the context ring (name, text), oldest first: they lead the prompt.
    extra: list[tuple[str, str]] = field(default_factory=list)

    def context_header(self) -> str:
        """Snippets and the file path as comments: stable text that goes first in the prompt."""
        mark = comment_prefix(self.language_id)
        lines: list[str] = []
        for name, text in self.extra:
            lines.append(f"{mark} Path: {name}")
            lines.extend(f"{mark} {line}" if line else mark for line in text.split("\n"))
        for snippet in self.snippets:
            lines.append(f"{mark} Path: {_short_path(snippet.uri)}")
            lines.extend(f"{mark} {line}" if line else mark for line in snippet.text.split("\n"))
        if self.path:
            lines.append(f"{mark} Path: {self.path}")
        return "\n".join(lines) + "\n" if lines else ""

    def extra_chunks(self) -> list[tuple[str, str]]:
        """The snippets as (file name, text) pairs: llama-server `/infill`'s `input_extra`."""
        chunks = [(name, text + "\n") for name, text in self.extra]
        return chunks + [(_short_path(s.uri), s.text + "\n") for s in self.snippets]

    def fim_prompt(self) -> str:
        """The `prompt` of a FIM request: header + prefix window (the suffix travels apart)."""
        return self.context_header() + self.prefix

    def chat_messages(self) -> list[Message]:
        """The hole-filler chat: fixed system prompt, then context, then the file with a hole."""
        parts: list[str] = []
        for name, text in self.extra:
            parts.append(f"Recently worked on, {name}:\n{text}\n")
        for snippet in self.snippets:
            parts.append(f"Another open file, {_short_path(snippet.uri)}:\n{snippet.text}\n")
        name = self.path or "the file"
        parts.append(f"Complete {name} at {HOLE}:\n\n{self.prefix}{HOLE}{self.suffix}")
        return [Message.system(HOLE_FILLER_SYSTEM), Message.user("\n".join(parts))]


def _short_path(uri: str) -> str:
    return uri.rsplit("/", 2)[-1] if "/" in uri else uri


def prefix_window(prefix: str, budget_tokens: int, offset: int = 0) -> str:
    """The end of `prefix` that fits the budget, starting on a line boundary that rarely moves.

    `offset` is the absolute position of `prefix[0]` in the document. The earliest allowed
    start is rounded up to a multiple of `WINDOW_GRID_CHARS` (absolute), then moved to the next
    line start: typing at the cursor moves the window start only once every grid step, so the
    prompt's beginning — and the server's prompt cache — survives keystrokes.
    """
    max_chars = max(1, chars_for_tokens(budget_tokens))
    if len(prefix) <= max_chars:
        return prefix
    earliest = offset + len(prefix) - max_chars
    snapped = -(-earliest // WINDOW_GRID_CHARS) * WINDOW_GRID_CHARS - offset
    newline = prefix.find("\n", max(0, snapped - 1))
    if newline < 0 or newline + 1 >= len(prefix):
        # One enormous line: cut by characters.
        return prefix[len(prefix) - max_chars :]
    return prefix[newline + 1 :]


def suffix_window(suffix: str, budget_tokens: int) -> str:
    """The start of `suffix` that fits the budget, cut at a line end."""
    if budget_tokens <= 0:
        return ""
    max_chars = chars_for_tokens(budget_tokens)
    if len(suffix) <= max_chars:
        return suffix
    cut = suffix.rfind("\n", 0, max_chars)
    return suffix[: cut + 1] if cut > 0 else suffix[:max_chars]


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text))


@lru_cache(maxsize=64)
def _chunks(text: str) -> tuple[tuple[frozenset[str], str], ...]:
    """Overlapping line windows of a document with their identifiers, memoised per text."""
    lines = text[:200_000].split("\n")
    step = max(1, SNIPPET_LINES // 2)
    out: list[tuple[frozenset[str], str]] = []
    for start in range(0, max(1, len(lines) - SNIPPET_LINES + 1), step):
        chunk = "\n".join(lines[start : start + SNIPPET_LINES]).strip("\n")
        words = frozenset(_words(chunk))
        if words:
            out.append((words, chunk))
    return tuple(out)


def pick_snippets(
    anchor: str, neighbours: Sequence[Neighbour], budget_tokens: int
) -> list[Snippet]:
    """Windows of other open files that share the most identifiers with `anchor`.

    `anchor` should be the text just above the cursor *excluding* the line being typed, so the
    choice (and with it the prompt start) only changes when the user moves to another line.
    """
    target = _words(anchor)
    if not target or budget_tokens <= 0:
        return []
    scored: list[tuple[float, int, Snippet]] = []
    for order, doc in enumerate(neighbours):
        best: tuple[float, str] | None = None
        for words, chunk in _chunks(doc.text):
            score = len(words & target) / len(words | target)
            if best is None or score > best[0]:
                best = (score, chunk)
        if best is not None and best[0] > 0.05:
            scored.append((best[0], order, Snippet(doc.uri, best[1])))
    scored.sort(key=lambda item: (-item[0], item[1]))
    chosen: list[Snippet] = []
    used = 0
    for _, _, snippet in scored[:MAX_SNIPPETS]:
        cost = estimate_tokens(snippet.text) + 8
        if used + cost > budget_tokens:
            continue
        chosen.append(snippet)
        used += cost
    # Keep a deterministic order (by uri) so equal choices give equal prompts.
    chosen.sort(key=lambda s: s.uri)
    return chosen


def build_prompt(
    prefix: str,
    suffix: str,
    *,
    prefix_tokens: int,
    suffix_tokens: int,
    neighbours: Sequence[Neighbour] = (),
    language_id: str = "python",
    path: str = "",
    prefix_offset: int = 0,
    extra: Sequence[tuple[str, str]] = (),
) -> PromptParts:
    """Window the text around the cursor and add snippets within the prefix budget.

    Snippets take at most a quarter of the prefix budget; the file's own text is worth more.
    `extra` (the context ring's chunks, already budgeted) is taken from the window's share.
    """
    snippet_budget = prefix_tokens // 4 if neighbours else 0
    extra_tokens = min(sum(estimate_tokens(text) + 8 for _, text in extra), prefix_tokens // 2)
    window = prefix_window(prefix, prefix_tokens - snippet_budget - extra_tokens, prefix_offset)
    snippets: list[Snippet] = []
    if snippet_budget:
        cursor_line_start = window.rfind("\n") + 1
        anchor = window[max(0, cursor_line_start - 1500) : cursor_line_start]
        snippets = pick_snippets(anchor, neighbours, snippet_budget)
    return PromptParts(
        prefix=window,
        suffix=suffix_window(suffix, suffix_tokens),
        snippets=snippets,
        language_id=language_id,
        path=path,
        extra=list(extra),
    )

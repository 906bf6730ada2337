"""Cross-file context: a ring buffer of code chunks from the places the user recently worked.

Open documents alone say little about what the user is doing; the places they edited, saved or
copied from say more (llama.vim's ring buffer). Chunks come from edits that moved far from the
previous one (the old place is kept), from saves, from opening a document, and from text the
editor reports with `koma/contextChunk` (a yank or a copy). A chunk almost equal to one already
held replaces it; the oldest goes when the ring is full.

Order matters for speed: chunks are sent in the order they entered the ring (as `input_extra`
to llama-server's `/infill`, or as a comment header before the prefix on the other routes), so
from one keystroke to the next the start of the prompt is unchanged and the server's prompt
cache keeps it. Chunks too similar to the text around the cursor add nothing and are left out;
the rest fit a character budget taken from the prompt's, oldest dropped first.

Documents whose path matches `tools.secretPatterns` (`.env`, credentials, keys) never enter.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

CHUNK_LINES = 32
MAX_CHUNKS = 16
# Chunks at least this similar (shared lines / all lines) are the same place.
SAME_CHUNK = 0.9
# Chunks this similar to the text around the cursor are left out of the prompt.
NEAR_CURSOR = 0.5
# An edit this many lines from the previous one in the same document starts a new place.
MOVED_LINES = CHUNK_LINES


@dataclass(frozen=True)
class Chunk:
    """Some lines of a document (or copied text) and the name shown to the model."""

    name: str
    text: str


def similarity(a: str, b: str) -> float:
    """Share of distinct non-blank lines the two texts have in common (Jaccard)."""
    return _jaccard(_line_set(a), _line_set(b))


def _line_set(text: str) -> set[str]:
    return {line.strip() for line in text.split("\n") if line.strip()}


def _jaccard(left: set[str], right: set[str]) -> float:
    if not left or not right:
        return 0.0
    return len(left & right) / len(left | right)


def is_secret(uri: str, patterns: Sequence[str]) -> bool:
    """Whether the document's path matches a secret pattern (any path part, or a path end)."""
    path = unquote(urlsplit(uri).path) if "://" in uri else uri
    parts = [p.lower() for p in path.split("/") if p]
    for pattern in (p.lower() for p in patterns if p):
        body = pattern.lstrip("/")
        if "/" in body:
            if any(fnmatch.fnmatchcase("/".join(parts[i:]), body) for i in range(len(parts))):
                return True
        elif any(fnmatch.fnmatchcase(part, body) for part in parts):
            return True
    return False


def lines_around(text: str, line: int, size: int = CHUNK_LINES) -> str:
    """`size` lines of `text` centred on `line` (0-based), without trailing blank lines."""
    lines = text.split("\n")
    start = max(0, min(line - size // 2, len(lines) - size))
    return "\n".join(lines[start : start + size]).strip("\n")


class ContextRing:
    """The chunks, oldest first, and where the user last edited each document."""

    def __init__(self, max_chunks: int = MAX_CHUNKS) -> None:
        self.max_chunks = max_chunks
        self._chunks: list[Chunk] = []
        self._last_edit: dict[str, int] = {}
        self.secret_patterns: Sequence[str] = ()
        self.version = 0  # counts additions, so a change can be noticed cheaply

    def __len__(self) -> int:
        return len(self._chunks)

    def add(self, name: str, text: str, uri: str = "") -> bool:
        """Add a chunk; returns False when it was refused (empty, or from a secret file)."""
        text = text.strip("\n")
        if not text.strip() or (uri and is_secret(uri, self.secret_patterns)):
            return False
        self._chunks = [c for c in self._chunks if similarity(c.text, text) < SAME_CHUNK]
        self._chunks.append(Chunk(name, text))
        del self._chunks[: max(0, len(self._chunks) - self.max_chunks)]
        self.version += 1
        return True

    def note_edit(self, uri: str, text: str, line: int) -> None:
        """An edit at `line`: when it moved far from the previous one, keep the old place."""
        previous = self._last_edit.get(uri)
        self._last_edit[uri] = line
        if previous is not None and abs(line - previous) >= MOVED_LINES:
            self.add(short_name(uri), lines_around(text, previous), uri)

    def note_place(self, uri: str, text: str, line: int | None = None) -> None:
        """Opened or saved: keep the lines around the last edit (or the top)."""
        where = self._last_edit.get(uri, 0) if line is None else line
        self.add(short_name(uri), lines_around(text, where), uri)

    def forget(self, uri: str) -> None:
        self._last_edit.pop(uri, None)

    def clear(self) -> None:
        self._chunks.clear()
        self._last_edit.clear()

    def chunks_for(self, around_cursor: str, budget_chars: int) -> list[Chunk]:
        """The chunks for one prompt, oldest first: none too like the cursor's surroundings,
        within `budget_chars` (the oldest dropped first, so the newest places stay)."""
        # Runs on every keystroke: the cursor's lines are split once, not once per chunk.
        cursor = _line_set(around_cursor)
        kept = [c for c in self._chunks if _jaccard(_line_set(c.text), cursor) < NEAR_CURSOR]
        total = sum(len(c.text) for c in kept)
        while kept and total > budget_chars:
            total -= len(kept.pop(0).text)
        return kept


def short_name(uri: str) -> str:
    """The file name of a document URI (what the model is shown)."""
    path = unquote(urlsplit(uri).path) if "://" in uri else uri
    return path.rsplit("/", 1)[-1] or uri

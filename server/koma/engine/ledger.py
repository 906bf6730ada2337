"""The reasoning ledger: which ranges the model changed, and why, for hover.

When a code action resolves, its edit and the model's reasoning are recorded against the range
the edit replaces. The entry follows every later document change, so the range keeps covering
the same code while the user types above, below or inside it. An entry becomes visible to hover
only once the edit has really been applied — that is, once the text in its range equals the
text the model produced — so hovering over code the user never accepted shows nothing.

Positions are `(line, character)` pairs in whatever unit the editor negotiated (UTF-16 by
default); the ledger never needs the document text except through the `text_in` callback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

Pos = tuple[int, int]
# Entries kept per document; the oldest go first.
MAX_ENTRIES_PER_DOCUMENT = 64


@dataclass
class LedgerEntry:
    """One AI edit: where it is now, what it wrote, and the reasoning behind it."""

    uri: str
    start: Pos
    end: Pos
    new_text: str
    action: str
    model: str
    reasoning: str
    applied: bool = False
    created: float = field(default_factory=time.time)

    def contains(self, pos: Pos) -> bool:
        return self.start <= pos <= self.end and self.start != self.end


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, LSP's default position unit."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


def end_of(start: Pos, text: str, units: Callable[[str], int] = utf16_len) -> Pos:
    """Where `text` ends when inserted at `start`."""
    lines = text.replace("\r\n", "\n").split("\n")
    if len(lines) == 1:
        return (start[0], start[1] + units(lines[0]))
    return (start[0] + len(lines) - 1, units(lines[-1]))


def _shift(pos: Pos, end: Pos, inserted_end: Pos) -> Pos:
    """Move a position that lies after a change by what the change did."""
    if pos[0] == end[0]:
        return (inserted_end[0], inserted_end[1] + pos[1] - end[1])
    return (pos[0] + inserted_end[0] - end[0], pos[1])


def map_start(pos: Pos, start: Pos, end: Pos, inserted_end: Pos, grow: bool) -> Pos:
    """A range start: text inserted exactly at it joins the range only if `grow`."""
    if pos == start == end and not grow:
        return inserted_end
    if pos <= start:
        return pos
    if pos < end:
        return start
    return _shift(pos, end, inserted_end)


def map_end(pos: Pos, start: Pos, end: Pos, inserted_end: Pos, grow: bool) -> Pos:
    """A range end: text replacing its tail joins the range; text inserted at it only if `grow`."""
    if pos < start:
        return pos
    if pos == start and not (start == end and grow):
        return pos
    if pos <= end:
        return inserted_end
    return _shift(pos, end, inserted_end)


class ReasoningLedger:
    """Per-document AI edits, newest last."""

    def __init__(self, max_per_document: int = MAX_ENTRIES_PER_DOCUMENT) -> None:
        self._entries: dict[str, list[LedgerEntry]] = {}
        self._max = max_per_document

    def record(
        self,
        uri: str,
        start: Pos,
        end: Pos,
        new_text: str,
        *,
        action: str,
        model: str,
        reasoning: str,
    ) -> LedgerEntry:
        """Remember an edit that will replace `start..end` with `new_text` once applied."""
        entry = LedgerEntry(uri, start, end, new_text, action, model, reasoning)
        entries = self._entries.setdefault(uri, [])
        entries.append(entry)
        del entries[: -self._max]
        return entry

    def change(
        self,
        uri: str,
        start: Pos | None,
        end: Pos | None,
        text: str,
        text_in: Callable[[Pos, Pos], str | None],
        units: Callable[[str], int] = utf16_len,
    ) -> None:
        """Follow one content change; `start is None` means the whole document was replaced.

        `text_in(start, end)` reads the document after the change; it lets an entry notice
        that its edit has just been applied. `units` measures text in the editor's position
        unit (UTF-16 unless the client negotiated another).
        """
        entries = self._entries.get(uri)
        if not entries:
            return
        if start is None or end is None:
            # A full-text sync gives no positions to follow; only exact re-applications survive.
            survivors = []
            for entry in entries:
                if entry.applied and _same(text_in(entry.start, entry.end), entry.new_text):
                    survivors.append(entry)
            self._entries[uri] = survivors
            return
        inserted_end = end_of(start, text, units)
        kept: list[LedgerEntry] = []
        for entry in entries:
            if entry.applied and start <= entry.start and entry.end <= end:
                continue  # the change replaced everything the model wrote
            # Until its edit is applied, an entry widens to take in text typed at its edges
            # (editors may apply an edit as several smaller changes); afterwards it does not.
            grow = not entry.applied
            entry.start = map_start(entry.start, start, end, inserted_end, grow)
            entry.end = map_end(entry.end, start, end, inserted_end, grow)
            if entry.end < entry.start:
                entry.end = entry.start
            if not entry.applied:
                if _same(text_in(entry.start, entry.end), entry.new_text):
                    entry.applied = True
            elif entry.start == entry.end:
                continue  # the user deleted everything the model wrote
            kept.append(entry)
        self._entries[uri] = kept

    def at(self, uri: str, pos: Pos) -> LedgerEntry | None:
        """The newest applied edit covering `pos`, if any."""
        for entry in reversed(self._entries.get(uri, [])):
            if entry.applied and entry.contains(pos):
                return entry
        return None

    def entries(self, uri: str) -> list[LedgerEntry]:
        return list(self._entries.get(uri, []))

    def forget(self, uri: str) -> None:
        """A closed document's positions can no longer be followed."""
        self._entries.pop(uri, None)

    def clear(self) -> int:
        count = sum(len(v) for v in self._entries.values())
        self._entries.clear()
        return count


def _same(current: str | None, expected: str) -> bool:
    if current is None:
        return False
    return current.replace("\r\n", "\n").strip() == expected.replace("\r\n", "\n").strip()

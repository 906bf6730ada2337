"""Suggestion cache with typing-through ("forwarding") entries.

A suggestion computed for (document, text before, text after) is stored once; for each of its
first `FORWARD_CHARS` characters a forwarding key is stored too, so that when the user types
what the ghost text showed, the next request is answered from memory with the rest of the
suggestion — no debounce, no model call (tabby-agent's idea; Cody measured that ~15 % of shown
suggestions can come from the cache).

Keys are hashes, not strings: 200 suggestions × 50 forwarding keys of multi-kilobyte prefixes
would cost tens of megabytes. A hit is verified against the entry's stored text, so a hash
collision can never show a wrong suggestion.

The text after the cursor is normalised: closing brackets and quotes at the start of the cursor
line are dropped, because editors auto-close `(` as the user types it and that must not turn a
typing-through hit into a miss.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

FORWARD_CHARS = 50
PREFIX_KEY_CHARS = 4096
SUFFIX_KEY_CHARS = 1024
TTL_SECONDS = 300.0
_AUTO_CLOSED = ")]}\"'`"


def key_suffix(suffix: str) -> str:
    """The part of the text after the cursor that identifies a cache entry."""
    head = suffix[:SUFFIX_KEY_CHARS]
    line_end = head.find("\n")
    line = head if line_end < 0 else head[:line_end]
    kept = line.lstrip(" \t" + _AUTO_CLOSED)
    return kept + ("" if line_end < 0 else head[line_end:])


@dataclass
class _Entry:
    uri: str
    prefix_tail: str
    suffix_key: str
    text: str | None
    created: float
    keys: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class CacheHit:
    """A cached suggestion; `typed` characters of the original were typed through already."""

    text: str | None
    typed: int


class CompletionCache:
    """LRU of suggestions keyed on document + surrounding text, with forwarding entries."""

    def __init__(
        self,
        max_entries: int = 200,
        ttl_seconds: float = TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.ttl = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._index: dict[int, tuple[int, int]] = {}  # key -> (entry id, typed chars)
        self._next_id = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _key(uri: str, prefix_tail: str, suffix_key: str) -> int:
        return hash((uri, prefix_tail, suffix_key))

    def get(self, uri: str, prefix: str, suffix: str) -> CacheHit | None:
        """The suggestion for this cursor, including one being typed through; None on a miss."""
        tail = prefix[-PREFIX_KEY_CHARS:]
        skey = key_suffix(suffix)
        found = self._index.get(self._key(uri, tail, skey))
        if found is not None:
            entry_id, typed = found
            entry = self._entries.get(entry_id)
            if entry is not None and self._valid(entry, uri, tail, skey, typed):
                self._entries.move_to_end(entry_id)
                self.hits += 1
                rest = None if entry.text is None else entry.text[typed:]
                return CacheHit(rest, typed)
        self.misses += 1
        return None

    def peek(self, uri: str, prefix: str, suffix: str) -> bool:
        """Whether a suggestion is cached for this cursor (no hit or miss is counted)."""
        hits, misses = self.hits, self.misses
        found = self.get(uri, prefix, suffix) is not None
        self.hits, self.misses = hits, misses
        return found

    def _valid(self, entry: _Entry, uri: str, tail: str, skey: str, typed: int) -> bool:
        if self._clock() - entry.created > self.ttl:
            return False
        if entry.uri != uri or entry.suffix_key != skey:
            return False
        typed_text = entry.text[:typed] if entry.text else ""
        return (entry.prefix_tail + typed_text)[-PREFIX_KEY_CHARS:] == tail

    def put(self, uri: str, prefix: str, suffix: str, text: str | None) -> None:
        """Store a suggestion (None caches "nothing to suggest here") and its forwarding keys."""
        if self.max_entries <= 0:
            return
        tail = prefix[-PREFIX_KEY_CHARS:]
        skey = key_suffix(suffix)
        entry_id = self._next_id
        self._next_id += 1
        entry = _Entry(uri, tail, skey, text, self._clock())
        self._entries[entry_id] = entry
        self._add_key(entry, entry_id, self._key(uri, tail, skey), 0)
        if text:
            # Typing all of the suggestion leaves nothing to show; keep the last char out.
            stops = set(range(1, min(FORWARD_CHARS, len(text) - 1) + 1))
            # Accepting a multi-line suggestion line by line (Tab, next line) reaches each line
            # end, however long the lines before it were.
            stops.update(i for i, ch in enumerate(text) if ch == "\n" and 0 < i < len(text) - 1)
            for typed in sorted(stops):
                forwarded = (tail + text[:typed])[-PREFIX_KEY_CHARS:]
                self._add_key(entry, entry_id, self._key(uri, forwarded, skey), typed)
        while len(self._entries) > self.max_entries:
            old_id, old = self._entries.popitem(last=False)
            self._drop_keys(old_id, old)

    def _add_key(self, entry: _Entry, entry_id: int, key: int, typed: int) -> None:
        self._index[key] = (entry_id, typed)
        entry.keys.append(key)

    def _drop_keys(self, entry_id: int, entry: _Entry) -> None:
        for key in entry.keys:
            # A newer entry may have taken over the key; only drop keys still pointing here.
            current = self._index.get(key)
            if current is not None and current[0] == entry_id:
                del self._index[key]

    def clear(self) -> int:
        """Forget everything; returns how many suggestions were dropped."""
        count = len(self._entries)
        self._entries.clear()
        self._index.clear()
        return count

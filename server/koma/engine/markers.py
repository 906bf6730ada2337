"""Find fixed marker strings in streamed text, and how much of a chunk's tail might be one.

The channel parser holds back only a tail that could still grow into a marker; this is the
matching it needs, kept cheap because it runs on every streamed chunk (the common case is one
membership test for the markers' first character).
"""

from __future__ import annotations

import re
from collections.abc import Iterable


class Markers:
    """A fixed set of marker strings: find the first one, or how much of a tail might be one."""

    __slots__ = ("first", "first_re", "firsts", "longest", "prefixes", "regex")

    def __init__(self, markers: Iterable[str]) -> None:
        ordered = sorted(set(markers), key=len, reverse=True)
        self.regex = re.compile("|".join(re.escape(m) for m in ordered))
        self.prefixes = frozenset(m[:i] for m in ordered for i in range(1, len(m)))
        self.firsts = "".join(sorted({m[0] for m in ordered}))
        self.first = self.firsts if len(self.firsts) == 1 else ""
        self.first_re = re.compile("[" + re.escape(self.firsts) + "]")
        self.longest = max(len(m) for m in ordered)

    def may_contain(self, text: str) -> bool:
        if self.first:
            return self.first in text
        return self.first_re.search(text) is not None

    def holdback(self, text: str) -> int:
        """Length of the longest suffix of `text` that is a proper prefix of some marker."""
        n = len(text)
        lo = max(0, n - self.longest + 1)
        prefixes = self.prefixes
        if self.first:
            i = text.find(self.first, lo)
            while i != -1:
                if text[i:] in prefixes:
                    return n - i
                i = text.find(self.first, i + 1)
            return 0
        for found in self.first_re.finditer(text, lo):  # only where a marker could begin
            i = found.start()
            if text[i:] in prefixes:
                return n - i
        return 0

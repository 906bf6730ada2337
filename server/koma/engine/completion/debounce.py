"""How long to wait after a keystroke before asking the model.

A request sent while the user is still typing is wasted: the next keystroke supersedes it, and
on a laptop running gpt-oss the model has spent GPU time on a prompt nobody will see. Waiting
too long makes every suggestion late. The right wait is "a bit longer than this user's usual
gap between two keystrokes": tabby-agent uses the average interval times a context factor;
here a high quantile of the recent intervals is used instead, because typing rhythm is skewed
(many short gaps, a few long ones) and the average underestimates the gaps that matter.

Context shifts the wait: right after a word ends (space, `(`, `.`, newline) or at the end of a
line the user is more likely to pause and want a suggestion, so the wait is shorter; inside a
word it is longer. A fixed `completion.debounceMs` setting replaces all of this.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

DEFAULT_MS = 250.0
MIN_MS = 75.0
MAX_MS = 600.0
# Gaps longer than this are pauses, not typing rhythm.
PAUSE_MS = 1200.0
WINDOW = 40
QUANTILE = 0.85


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class AdaptiveDebounce:
    """Per-user typing rhythm → a wait in seconds for the next completion request."""

    def __init__(
        self, fixed_ms: int | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.fixed_ms = fixed_ms
        self._clock = clock
        self._intervals: deque[float] = deque(maxlen=WINDOW)
        self._last: dict[str, float] = {}
        self._cached: float | None = None

    def keystroke(self, uri: str, at: float | None = None) -> None:
        """Record that the document changed (one keystroke, as far as rhythm goes)."""
        now = self._clock() if at is None else at
        last = self._last.get(uri)
        self._last[uri] = now
        if last is None:
            return
        gap_ms = (now - last) * 1000.0
        if 0.0 < gap_ms < PAUSE_MS:
            self._intervals.append(gap_ms)
            self._cached = None

    def forget(self, uri: str) -> None:
        self._last.pop(uri, None)

    def base_ms(self) -> float:
        """The rhythm part of the wait: a high quantile of recent keystroke gaps."""
        if len(self._intervals) < 5:
            return DEFAULT_MS
        if self._cached is None:
            self._cached = _quantile(list(self._intervals), QUANTILE) * 1.25
        return self._cached

    def delay_ms(self, line_prefix: str, line_suffix: str) -> float:
        """The wait before a request whose cursor line reads `line_prefix|line_suffix`."""
        if self.fixed_ms is not None:
            return float(self.fixed_ms)
        base = self.base_ms()
        last = line_prefix[-1:] if line_prefix else "\n"
        if not last.isalnum() and last != "_":
            factor = 0.85  # a word just ended
        else:
            factor = 1.15  # mid-word: another letter is likely
        if not line_suffix.strip():
            factor *= 0.9  # end of line
        return min(MAX_MS, max(MIN_MS, base * factor))

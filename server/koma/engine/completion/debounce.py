"""How long to wait after a keystroke before asking the model: a prediction of the pause.

A request sent while the user is still typing is wasted: the next keystroke supersedes it, and
on a laptop running gpt-oss the model has spent GPU time on a prompt nobody will see. Waiting
too long makes every suggestion late. A fixed wait after every key is both at once: too long
where the user was going to stop anyway, too short in the middle of a fast word.

So the wait is a prediction from this user's own rhythm. Each gap between two keystrokes is
filed under the *context* the first key left the cursor in: inside a word (`retu|`), after a
space or punctuation (`foo(|`, `x = |`), at a line's start (after Enter), or at the end of a
statement (`):`, `)` or `]` with every bracket closed) — where people stop to think about the
next line. Where this user's history says the gap that follows is usually longer than the
wait would be, the pause is predicted and the request goes out at once: waiting would only
delay a request that is sent anyway. How sure the prediction must be depends on the model: a
wrong guess costs one model call, cheap on a fast model, over a second on a slow one
(`pause_predicted`).

Everywhere else the wait is "a bit longer than this user's usual gap between two keystrokes":
a high quantile of the recent gaps (tabby-agent uses the average interval times a context
factor; a quantile is used because typing rhythm is skewed — many short gaps, a few long ones —
and the average underestimates the gaps that matter), shortened after a word ends and at the
end of a line, lengthened inside a word. A fast steady typist gets a short wait, a hesitant one
a longer one.

A fixed `completion.debounceMs` setting replaces all of this. The cache and a running model
call answer without any wait at all (`pipeline.py` asks them first); this module is only asked
when the model must be called.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Literal

DEFAULT_MS = 250.0
MIN_MS = 75.0
MAX_MS = 600.0
# Gaps longer than this are pauses, not typing rhythm (for the rhythm quantile).
PAUSE_MS = 1200.0
# Gaps filed per context may be longer: a predicted pause is exactly such a gap.
CONTEXT_GAP_CAP_MS = 10_000.0
WINDOW = 40
CONTEXT_WINDOW = 24
QUANTILE = 0.85
# A context needs this many gaps before its history predicts anything.
MIN_CONTEXT_SAMPLES = 6
# The pause is predicted when most of the context's gaps outlast the usual wait (below).
PREDICTED_SHARE = 0.5
# Until a model call has answered, assume a slow model: no request goes out early.
UNKNOWN_LATENCY_MS = MAX_MS
LATENCY_WINDOW = 8

Context = Literal["word", "gap", "line", "end"]
_OPEN, _CLOSE = "([{", ")]}"


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def context_of(line_prefix: str) -> Context:
    """Where a keystroke left the cursor: in a word, after one, at a line start, a statement end."""
    if not line_prefix.strip():
        return "line"
    last = line_prefix[-1]
    if last.isalnum() or last == "_":
        return "word"
    if last in _CLOSE + ":":
        depth = sum(c in _OPEN for c in line_prefix) - sum(c in _CLOSE for c in line_prefix)
        if depth <= 0:
            return "end"
    return "gap"


class AdaptiveDebounce:
    """Per-user typing rhythm → the wait in milliseconds before the next model request."""

    def __init__(
        self, fixed_ms: int | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.fixed_ms = fixed_ms
        self._clock = clock
        self._intervals: deque[float] = deque(maxlen=WINDOW)
        self._by_context: dict[Context, deque[float]] = {
            c: deque(maxlen=CONTEXT_WINDOW) for c in ("word", "gap", "line", "end")
        }
        self._last: dict[str, float] = {}
        # The context the latest keystroke of each document left the cursor in, once known.
        self._pending: dict[str, Context] = {}
        self._cached: float | None = None
        # How long recent model calls took to answer (request → answer).
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def keystroke(self, uri: str, at: float | None = None) -> None:
        """Record that the document changed (one keystroke, as far as rhythm goes)."""
        now = self._clock() if at is None else at
        last = self._last.get(uri)
        self._last[uri] = now
        context = self._pending.pop(uri, None)
        if last is None:
            return
        gap_ms = (now - last) * 1000.0
        if 0.0 < gap_ms < PAUSE_MS:
            self._intervals.append(gap_ms)
            self._cached = None
        if context is not None and 0.0 < gap_ms < CONTEXT_GAP_CAP_MS:
            self._by_context[context].append(gap_ms)

    def note_context(self, uri: str, line_prefix: str) -> None:
        """The cursor line after the latest keystroke reads `line_prefix|` (told per request).

        The gap until the next keystroke is then filed under this context: that is how the
        predictor learns where this user pauses.
        """
        if uri in self._last:
            self._pending[uri] = context_of(line_prefix)

    def note_latency(self, ms: float) -> None:
        """A model call answered after `ms`: what a request sent too early costs (below)."""
        if ms > 0:
            self._latencies.append(ms)

    def latency_ms(self) -> float:
        """The typical time a model call takes to answer (median of the recent ones)."""
        if not self._latencies:
            return UNKNOWN_LATENCY_MS
        return _quantile(list(self._latencies), 0.5)

    def forget(self, uri: str) -> None:
        self._last.pop(uri, None)
        self._pending.pop(uri, None)

    def base_ms(self) -> float:
        """The rhythm part of the wait: a high quantile of recent keystroke gaps."""
        if len(self._intervals) < 5:
            return DEFAULT_MS
        if self._cached is None:
            self._cached = _quantile(list(self._intervals), QUANTILE) * 1.25
        return self._cached

    def pause_predicted(self, line_prefix: str) -> bool:
        """Whether sending now beats waiting, given where this user usually pauses.

        With `p` the share of this context's gaps that outlast the usual wait `w`, sending at
        once gains `w` with probability `p`; with probability `1 - p` the user types on and the
        early call is wasted — and while it runs, the next keystrokes take it over instead of
        asking afresh, so it costs about one model call's time. Send now when the gain wins:
        `p * w > (1 - p) * latency`. A fast model (a wasted call is cheap) gets its suggestions
        early; a slow one (gpt-oss on a laptop) waits as before.
        """
        gaps = self._by_context[context_of(line_prefix)]
        if len(gaps) < MIN_CONTEXT_SAMPLES:
            return False
        usual = min(MAX_MS, max(MIN_MS, self.base_ms()))
        share = sum(g > usual for g in gaps) / len(gaps)
        if share < PREDICTED_SHARE:
            return False
        return share * usual > (1.0 - share) * self.latency_ms()

    def delay_ms(self, line_prefix: str, line_suffix: str) -> float:
        """The wait before a request whose cursor line reads `line_prefix|line_suffix`."""
        if self.fixed_ms is not None:
            return float(self.fixed_ms)
        if self.pause_predicted(line_prefix):
            return 0.0  # the request would go out after the wait anyway: send it now
        base = self.base_ms()
        last = line_prefix[-1:] if line_prefix else "\n"
        if not last.isalnum() and last != "_":
            factor = 0.85  # a word just ended
        else:
            factor = 1.15  # mid-word: another letter is likely
        if not line_suffix.strip():
            factor *= 0.9  # end of line
        return min(MAX_MS, max(MIN_MS, base * factor))

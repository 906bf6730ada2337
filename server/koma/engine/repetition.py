"""The repetition guard: ends a chat answer that has started repeating itself.

Small local models fall into loops — the same `print(...)` line, the same two-line paragraph,
the same sentence on one endless line — and keep going until the token limit or the context
is full, which on a CPU is minutes. Every chat stream (`engine.stream.stream_events`) runs
through one `RepetitionGuard`, whatever the provider, so a loop ends the same way everywhere:
the stream is closed (the server stops generating), the result's `finish_reason` is
`"repetition"` and it carries a warning saying so.

Two loops are recognised, per channel:

- *Lines*: the last `b` non-blank lines (1 ≤ b ≤ `MAX_BLOCK_LINES`) repeated back to back until
  the run covers `MIN_LOOP_LINES` lines and at least `MIN_COPIES` copies. Lines are compared
  with their indentation (closing brackets at different depths are different lines); blank
  lines are ignored. Text that would be a third or later copy is held back while it may still
  turn out to be one, so a loop shows two copies and then the warning; if the run breaks, the
  held text is shown at once and nothing is lost.
- *Lines with other numbers*: the same, with every run of digits counted as one digit, over
  `MIN_NEAR_LOOP_LINES` lines and `MIN_NEAR_COPIES` copies — a small model that writes itself
  the next question (`### Instruction: What is 71 - 18?`, `71 - 19 = 74`, then 72, 73, …)
  until its context is full. Far more copies are needed, and nothing is held back: a numbered
  table is legitimate, a hundred rows of it in a chat answer rarely are.
- *One long line*: a line of at least `MIN_LINE_LOOP_CHARS` characters whose end is one unit of
  at most `MAX_UNIT_CHARS` characters repeated at least `MIN_COPIES` times over
  `MIN_LINE_LOOP_CHARS` characters. This one is not held back (it would hold every long line).

The thresholds are generous on purpose: a legitimate answer may repeat a line a few times
(`print("hello")` five times when asked for it); a loop repeats forever, so waiting for eight
copies costs a second and never cuts a real answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from koma.types import Channel

MAX_BLOCK_LINES = 8
MIN_LOOP_LINES = 8
MIN_COPIES = 3
SHOWN_COPIES = 2
MIN_NEAR_LOOP_LINES = 32
MIN_NEAR_COPIES = 8
MIN_LINE_LOOP_CHARS = 320
MAX_UNIT_CHARS = 200
_LINE_CHECK_EVERY = 32
_KEPT_LINES = MAX_BLOCK_LINES * MIN_NEAR_COPIES
_DIGITS = re.compile(r"\d+")


@dataclass
class _Track:
    """One channel's state: its recent lines, the line being generated, the held-back text."""

    lines: list[str] = field(default_factory=list)
    shapes: list[str] = field(default_factory=list)  # the lines with numbers blurred
    current: str = ""
    held: str = ""
    checked_at: int = 0


class RepetitionGuard:
    """Watches the pieces of a chat stream and says when the model is looping."""

    def __init__(self) -> None:
        self._tracks: dict[Channel, _Track] = {}
        self.loop: str | None = None  # what repeated, once a loop was found
        self.hidden = False  # whether copies were held back and dropped

    def feed(self, pieces: list[tuple[Channel, str]]) -> tuple[list[tuple[Channel, str]], bool]:
        """The pieces to show now, and whether the stream is looping (stop generating).

        Once a loop is found the held-back copies are dropped: they are never shown.
        """
        out: list[tuple[Channel, str]] = []
        for channel, text in pieces:
            track = self._tracks.setdefault(channel, _Track())
            shown, looping = self._feed_track(track, text)
            if shown:
                out.append((channel, shown))
            if looping:
                return out, True
        return out, False

    def flush(self) -> list[tuple[Channel, str]]:
        """What is still held back when the answer ends on its own (nothing is lost)."""
        out: list[tuple[Channel, str]] = []
        for channel, track in self._tracks.items():
            if track.held:
                out.append((channel, track.held))
                track.held = ""
        return out

    def warning(self) -> str:
        """The warning for the result once the stream was stopped."""
        hidden = "; the repeated copies are not shown" if self.hidden else ""
        return (
            f"stopped the answer: the model was repeating itself ({self.loop}){hidden} — "
            "ask again, or lower the temperature"
        )

    # -- one channel -------------------------------------------------------------------------

    def _feed_track(self, track: _Track, text: str) -> tuple[str, bool]:
        shown: list[str] = []
        for piece in text.splitlines(keepends=True):
            ended = piece.endswith(("\n", "\r"))
            track.held += piece
            if not ended:
                track.current += piece
                if self._line_loops(track):
                    return "".join(shown), True
                if not self._may_continue_run(track):
                    shown.append(self._release(track))
                continue
            line, track.current = (track.current + piece).rstrip(), ""
            track.checked_at = 0
            if not line.strip():
                if not self._beyond_shown(track):
                    shown.append(self._release(track))
                continue
            track.lines.append(line)
            track.shapes.append(_DIGITS.sub("0", line))
            del track.lines[:-_KEPT_LINES], track.shapes[:-_KEPT_LINES]
            if self._lines_loop(track):
                track.held = ""
                return "".join(shown), True
            if not self._beyond_shown(track):
                shown.append(self._release(track))
        return "".join(shown), False

    @staticmethod
    def _release(track: _Track) -> str:
        held, track.held = track.held, ""
        return held

    @staticmethod
    def _run(lines: list[str], block: int) -> int:
        """How many of the last lines repeat with period `block` (at least `block`)."""
        if len(lines) < block:
            return 0
        run = block
        while run < len(lines) and lines[-run - 1] == lines[-run - 1 + block]:
            run += 1
        return run

    def _lines_loop(self, track: _Track) -> bool:
        for block in range(1, MAX_BLOCK_LINES + 1):
            run = self._run(track.lines, block)
            if run >= max(MIN_LOOP_LINES, MIN_COPIES * block):
                copies = run // block
                what = "line" if block == 1 else f"{block} lines"
                first = track.lines[-block].strip()
                sample = first if len(first) <= 60 else first[:57] + "…"
                self.loop = f"the same {what} {copies} times: {sample!r}"
                self.hidden = True
                return True
        for block in range(1, MAX_BLOCK_LINES + 1):
            run = self._run(track.shapes, block)
            if run >= max(MIN_NEAR_LOOP_LINES, MIN_NEAR_COPIES * block):
                what = "line" if block == 1 else f"{block} lines"
                first = track.lines[-block].strip()
                sample = first if len(first) <= 60 else first[:57] + "…"
                self.loop = f"the same {what} with other numbers {run // block} times: {sample!r}"
                return True
        return False

    def _beyond_shown(self, track: _Track) -> bool:
        """Whether the last line lies past the copies a loop may show (so it is held)."""
        return any(
            self._run(track.lines, block) > SHOWN_COPIES * block
            for block in range(1, MAX_BLOCK_LINES + 1)
        )

    def _may_continue_run(self, track: _Track) -> bool:
        """Whether the line being generated could be the next copy of a repeating run."""
        if not track.current.strip() and not track.held.strip():
            return False
        partial = track.current
        for block in range(1, MAX_BLOCK_LINES + 1):
            if self._run(track.lines, block) >= SHOWN_COPIES * block:
                expected = track.lines[-block]
                if expected.startswith(partial) or partial.rstrip() == expected:
                    return True
        return False

    def _line_loops(self, track: _Track) -> bool:
        """One endless line: its end is one short unit repeated over many characters."""
        line = track.current
        if len(line) < MIN_LINE_LOOP_CHARS or len(line) - track.checked_at < _LINE_CHECK_EVERY:
            return False
        track.checked_at = len(line)
        tail = line[-(MAX_UNIT_CHARS * (MIN_COPIES + 2)) :]
        for unit in range(1, MAX_UNIT_CHARS + 1):
            span = unit
            limit = len(tail)
            while span < limit and tail[-span - 1] == tail[-span - 1 + unit]:
                span += 1
            if span >= max(MIN_LINE_LOOP_CHARS, MIN_COPIES * unit):
                sample = tail[-unit:].strip()
                sample = sample if len(sample) <= 60 else sample[:57] + "…"
                self.loop = f"the same {unit} characters over and over: {sample!r}"
                return True
        return False

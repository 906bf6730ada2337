"""A realistic, seeded typing trace over real Python source.

The text typed is the middle of the standard library's `textwrap.py` (the methods of
`TextWrapper`): real code with docstrings, comments and nesting, read from the running
interpreter so nothing is copied into this repository. The file above the typed region is the
document's start, the file below it stays after the cursor.

Rhythm (per keystroke, in milliseconds): log-normal gaps around 95 ms inside words (~10
chars/s), a little longer after spaces and punctuation, a pause around 650 ms after Enter, and
now and then a long pause of 2.5–5 s to think. About 2 % of letters are typos, noticed after a
moment and deleted with Backspace. Enter is one keystroke that also inserts the next line's
indentation, as an editor's auto-indent does.

Run as a script to write the trace as JSON (`python benchmarks/traces/typing_trace.py -o t.json`).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import random
import sys
import textwrap
from dataclasses import asdict, dataclass, field
from typing import Literal

KeyKind = Literal["type", "enter", "typo", "backspace"]
START_MARKER = "    def _munge_whitespace"
TARGET_CHARS = 9000
TYPO_RATE = 0.02
LONG_PAUSE_RATE = 0.04
_NEIGHBOURS = "qwertyuiopasdfghjklzxcvbnm"


@dataclass
class Key:
    """One keystroke: wait `gap_ms`, then insert `text` (or delete one char for backspace)."""

    gap_ms: float
    kind: KeyKind
    text: str
    target_pos: int  # position in the target text once this key is applied (typos: unchanged)


@dataclass
class Trace:
    header: str
    target: str
    tail: str
    seed: int
    keys: list[Key] = field(default_factory=list)

    @property
    def chars_per_second(self) -> float:
        total_ms = sum(k.gap_ms for k in self.keys)
        return len(self.keys) / (total_ms / 1000.0) if total_ms else 0.0

    def to_json(self) -> str:
        data = asdict(self)
        data["python"] = sys.version.split()[0]
        data["chars_per_second"] = round(self.chars_per_second, 2)
        return json.dumps(data, indent=1)


def source_parts() -> tuple[str, str, str]:
    """(header, target, tail) cut from `textwrap.py` at line boundaries."""
    source = inspect.getsource(textwrap)
    start = source.index(START_MARKER)
    end = source.rfind("\n", 0, start + TARGET_CHARS)
    return source[:start], source[start:end], source[end:]


def _lognormal(rng: random.Random, median_ms: float, sigma: float) -> float:
    return rng.lognormvariate(math.log(median_ms), sigma)


def generate(seed: int = 1) -> Trace:
    """The full keystroke plan for typing the target text once."""
    rng = random.Random(seed)
    header, target, tail = source_parts()
    trace = Trace(header, target, tail, seed)
    keys = trace.keys
    pos = 0
    previous = "\n"
    while pos < len(target):
        ch = target[pos]
        if ch == "\n":
            end = pos + 1
            while end < len(target) and target[end] == " ":
                end += 1
            gap = _lognormal(rng, 650.0, 0.5)
            if rng.random() < LONG_PAUSE_RATE:
                gap += rng.uniform(2500.0, 5000.0)
            keys.append(Key(gap, "enter", target[pos:end], end))
            pos = end
            previous = "\n"
            continue
        gap = _lognormal(rng, 95.0, 0.35)
        if not previous.isalnum():
            gap *= 1.25
        if ch.isalpha() and rng.random() < TYPO_RATE:
            wrong = rng.choice(_NEIGHBOURS.replace(ch.lower(), ""))
            keys.append(Key(gap, "typo", wrong, pos))
            keys.append(Key(_lognormal(rng, 280.0, 0.3), "backspace", "", pos))
            gap = _lognormal(rng, 120.0, 0.3)
        keys.append(Key(gap, "type", ch, pos + 1))
        pos += 1
        previous = ch
    return trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("-o", "--out", help="write the trace here (default: stdout)")
    args = parser.parse_args()
    text = generate(args.seed).to_json()
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()

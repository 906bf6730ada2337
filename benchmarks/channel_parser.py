"""Per-chunk cost of the channel parser (`koma.engine.channels.ChannelParser`).

Every streamed answer goes through the parser one chunk at a time, so its cost per chunk is a
fixed tax on every token shown. Three workloads, each the median of several rounds:

- `corpus`: every Harmony corpus vector (tests/fixtures/harmony/vectors.json) fed in 4-character
  chunks, the parser's markers, headers, degraded forms and tool calls;
- `plain`: a long answer without markers in 4-character chunks (the fast path);
- `harmony`: a long raw Harmony answer (analysis, then final) in 4-character chunks.

Run from the repository root: `python benchmarks/channel_parser.py [--rounds N]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harmony_vectors import VECTORS
from koma.engine.channels import ChannelParser

CHUNK = 4


def chunks(text: str, size: int = CHUNK) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _streams() -> dict[str, list[tuple[list[str], bool]]]:
    """Each workload: (chunks, harmony_start) per answer."""
    sentence = "The function returns the sum of the two numbers it is given. "
    harmony = (
        "<|channel|>analysis<|message|>"
        + "User asks for a sum; add the numbers and explain. " * 40
        + "<|end|><|start|>assistant<|channel|>final<|message|>"
        + sentence * 40
        + "<|return|>"
    )
    return {
        "corpus": [(chunks(v.text), v.harmony_start) for v in VECTORS] * 20,
        "plain": [(chunks(sentence * 200), False)],
        "harmony": [(chunks(harmony), False)] * 5,
    }


def _round(streams: list[tuple[list[str], bool]]) -> tuple[float, int]:
    """Seconds spent and chunks fed for one pass over `streams`."""
    fed = 0
    started = time.perf_counter()
    for pieces, harmony_start in streams:
        parser = ChannelParser(harmony_start=harmony_start)
        feed: Callable[[str], object] = parser.feed
        for piece in pieces:
            feed(piece)
        parser.finish()
        fed += len(pieces)
    return time.perf_counter() - started, fed


def main(argv: list[str] | None = None) -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--rounds", type=int, default=15)
    rounds = args.parse_args(argv).rounds
    for name, streams in _streams().items():
        _round(streams)  # warm-up
        samples = []
        fed = 0
        for _ in range(rounds):
            seconds, fed = _round(streams)
            samples.append(seconds / fed * 1e9)
        print(
            f"{name:8} {fed:7d} chunks/round  median {statistics.median(samples):7.1f} ns/chunk"
            f"  (min {min(samples):.1f})"
        )


if __name__ == "__main__":
    main()

"""The Harmony corpus (tests/fixtures/harmony/vectors.json) for every layer's tests.

Each vector is an answer as a server hands it over raw in `content`, the channel pieces it must
become and the tool calls it holds; `source` names the reference test the form comes from
(llama.cpp's gpt-oss chat tests, openai/harmony's parser tests, the wire notes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).parent / "fixtures" / "harmony" / "vectors.json"


@dataclass(frozen=True)
class Vector:
    id: str
    source: str
    form: str
    text: str
    pieces: tuple[tuple[str, str], ...]
    tool_calls: tuple[tuple[str, Any], ...]
    harmony_start: bool = False

    def channels(self) -> dict[str, str]:
        """The pieces joined per channel, as `GenerationResult.channels` holds them."""
        out: dict[str, str] = {}
        for channel, text in self.pieces:
            out[channel] = out.get(channel, "") + text
        return out

    @property
    def final(self) -> str:
        return self.channels().get("final", "")


def load_vectors() -> list[Vector]:
    data = json.loads(CORPUS.read_text(encoding="utf-8"))
    return [
        Vector(
            id=v["id"],
            source=v["source"],
            form=v["form"],
            text=v["text"],
            pieces=tuple((c, t) for c, t in v["pieces"]),
            tool_calls=tuple((c["name"], c["arguments"]) for c in v["tool_calls"]),
            harmony_start=bool(v.get("harmony_start", False)),
        )
        for v in data["vectors"]
    ]


VECTORS = load_vectors()
VECTOR_IDS = [v.id for v in VECTORS]


def by_id(vector_id: str) -> Vector:
    return next(v for v in VECTORS if v.id == vector_id)

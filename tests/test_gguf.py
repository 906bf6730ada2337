"""The GGUF header reader behind the embedded model's maximum context (no model is loaded)."""

from __future__ import annotations

import struct
from pathlib import Path

from koma.providers.gguf import gguf_context_length


def string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def header(*pairs: bytes, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, 0, len(pairs)) + b"".join(pairs)


ARCH = string("general.architecture") + struct.pack("<I", 8) + string("gemma3")
TOKENS = (  # an array of strings before the key, as tokenizers are
    string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2) + string("a") + string("b")
)
SCORES = string("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 6, 3) + b"\0" * 12
CONTEXT = string("gemma3.context_length") + struct.pack("<II", 4, 32768)


def test_reads_the_trained_context_past_other_keys(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(header(ARCH, TOKENS, SCORES, CONTEXT) + b"tensor data")
    assert gguf_context_length(path) == 32768


def test_anything_else_is_none_not_an_error(tmp_path: Path) -> None:
    whole = header(ARCH, TOKENS, CONTEXT)
    cases = {
        "missing.gguf": None,
        "text.gguf": b"not a model at all",
        "cut.gguf": whole[: len(whole) - 3],
        "v1.gguf": header(ARCH, CONTEXT, version=1),
        "no-arch.gguf": header(CONTEXT),
        "huge-string.gguf": b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 1 << 60),
    }
    for name, data in cases.items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        assert gguf_context_length(path) is None, name

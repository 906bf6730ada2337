"""A GGUF file's header, read without loading the model: its architecture and trained context.

`koma models` shows the embedded model's maximum context beside the one it runs with; loading
a many-gigabyte GGUF to learn one number would be absurd, so the key/value header at the start
of the file is read instead (GGUF v2/v3: little-endian, 64-bit lengths), stopping at the
`{architecture}.context_length` key. A file that is not GGUF, or is cut short, gives None.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

_MAGIC = b"GGUF"
# Value type → struct format of its fixed-size scalars (8: string, 9: array).
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9
_MAX_KEYS = 10_000
_MAX_STRING = 1 << 24


class _Bad(Exception):
    """Not a GGUF header this reader understands."""


def gguf_context_length(path: Path) -> int | None:
    """`{general.architecture}.context_length` from the GGUF header, or None."""
    try:
        with path.open("rb") as handle:
            return _context_length(handle)
    except (OSError, _Bad, struct.error, UnicodeDecodeError):
        return None


def _context_length(handle: BinaryIO) -> int | None:
    if handle.read(4) != _MAGIC:
        raise _Bad
    version, _tensors, count = struct.unpack("<IQQ", _read(handle, 20))
    if version < 2 or count > _MAX_KEYS:
        raise _Bad
    arch: str | None = None
    for _ in range(count):
        key = _string(handle)
        kind = struct.unpack("<I", _read(handle, 4))[0]
        if key == "general.architecture" and kind == _STRING:
            arch = _string(handle)
            continue
        if arch is not None and key == f"{arch}.context_length" and kind in _SCALARS:
            value = _scalar(handle, kind)
            return int(value) if isinstance(value, int | float) and value > 0 else None
        _skip(handle, kind)
    return None


def _read(handle: BinaryIO, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise _Bad
    return data


def _string(handle: BinaryIO) -> str:
    length = struct.unpack("<Q", _read(handle, 8))[0]
    if length > _MAX_STRING:
        raise _Bad
    return _read(handle, length).decode("utf-8")


def _scalar(handle: BinaryIO, kind: int) -> int | float | bool:
    fmt = "<" + _SCALARS[kind]
    value: int | float | bool = struct.unpack(fmt, _read(handle, struct.calcsize(fmt)))[0]
    return value


def _skip(handle: BinaryIO, kind: int) -> None:
    if kind in _SCALARS:
        handle.seek(struct.calcsize("<" + _SCALARS[kind]), 1)
    elif kind == _STRING:
        length = struct.unpack("<Q", _read(handle, 8))[0]
        handle.seek(length, 1)
    elif kind == _ARRAY:
        inner, items = struct.unpack("<IQ", _read(handle, 12))
        if inner in _SCALARS:
            handle.seek(struct.calcsize("<" + _SCALARS[inner]) * items, 1)
        else:
            for _ in range(items):
                _skip(handle, inner)
    else:
        raise _Bad

"""Reading text files for the model: numbered lines, a byte cap, binary files refused.

A file bigger than `tools.maxReadBytes` is shown from the requested line on until the cap, and
says where to continue; a line range is looked for at most `SCAN_LIMIT_BYTES` into the file, so
a 1 GB log never gets read whole. A NUL byte in the first kilobytes marks a binary file.
"""

from __future__ import annotations

import os

from koma.engine.tools.jail import SNIFF_BYTES, Jail, JailedPath, is_binary
from koma.engine.tools.toolkit import ToolError

SCAN_LIMIT_BYTES = 64 * 1024 * 1024


def read_disk(jail: Jail, target: JailedPath, start: int | None, end: int | None, cap: int) -> str:
    """Lines `start`..`end` of a file on disk, numbered, at most `cap` bytes of them."""
    fd = jail.open_regular(target)
    with os.fdopen(fd, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
        size = os.fstat(handle.fileno()).st_size
        if is_binary(head):
            raise ToolError(
                f"{target.shown} is a binary file ({human_bytes(size)}); only text files are read"
            )
        handle.seek(0)
        first = start or 1
        lines: list[str] = []
        used = scanned = number = 0
        cut = eof = False
        while True:
            raw = handle.readline(cap + 1)
            if not raw:
                eof = True
                break
            number += 1
            scanned += len(raw)
            if end is not None and number > end:
                break
            if number >= first:
                if used + len(raw) > cap:
                    if not lines:  # one huge line (minified code): show its start
                        lines.append(raw[:cap].decode("utf-8", "replace") + " …")
                    cut = True
                    break
                lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
                used += len(raw)
            elif scanned > SCAN_LIMIT_BYTES:
                raise ToolError(
                    f"{target.shown} is {human_bytes(size)}; line {first} is beyond the first "
                    f"{human_bytes(SCAN_LIMIT_BYTES)} that are searched for it"
                )
    if eof and first > number and number:
        raise ToolError(f"{target.shown} has only {number} lines")
    return render(target.shown, lines, first, number if eof else None, cut, cap)


def numbered(shown: str, lines: list[str], start: int | None, end: int | None, cap: int) -> str:
    first = start or 1
    if first > max(len(lines), 1):
        raise ToolError(f"{shown} has only {len(lines)} lines")
    chosen: list[str] = []
    used = 0
    more = False
    for line in lines[first - 1 : end]:
        used += len(line.encode("utf-8", "surrogatepass")) + 1
        if used > cap:
            more = True
            break
        chosen.append(line)
    return render(shown, chosen, first, len(lines), more, cap)


def render(
    shown: str, lines: list[str], first: int, total: int | None, more: bool, cap: int
) -> str:
    last = first + len(lines) - 1
    of = f" of {total}" if total is not None else ""
    head = f"{shown} (lines {first}-{max(last, first)}{of})" if lines else f"{shown} (empty)"
    if more:
        head += f" — cut at {human_bytes(cap)}; ask for start_line={last + 1} to continue"
    body = "\n".join(f"{first + i:6}\t{line}" for i, line in enumerate(lines))
    return f"{head}\n{body}" if body else head


def human_bytes(size: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"

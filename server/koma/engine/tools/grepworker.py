"""The regex search, run in a child process so a pathological pattern can be killed.

Python's `re` has no timeout: a pattern like `(a+)+$` on a long line can spin for minutes. The
language server must stay responsive, so `search` runs this file as `python -I -S grepworker.py`
(standard library only, no site packages) and kills it after a deadline. It reads a JSON job on
stdin — the pattern and the files the jail already allowed — and prints one JSON line per match
as it goes, so the matches found before a kill are still reported. Each file is re-opened with
`O_NOFOLLOW | O_NONBLOCK` and must still be a regular file.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from typing import Any


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _read(path: str, max_bytes: int) -> bytes | None:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return None
        chunks = []
        left = max_bytes
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def main() -> int:
    job = json.load(sys.stdin)
    flags = re.IGNORECASE if job.get("ignore_case") else 0
    pattern = re.compile(job["pattern"], flags)
    max_matches = int(job["max_matches"])
    max_line = int(job["max_line"])
    max_bytes = int(job["max_file_bytes"])
    found = searched = skipped = 0
    for shown, real in job["files"]:
        data = _read(real, max_bytes)
        if data is None or b"\x00" in data[:8192]:
            skipped += 1
            continue
        searched += 1
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if pattern.search(line[: max_line * 4]):
                text = line.strip()
                if len(text) > max_line:
                    text = text[:max_line] + "…"
                _emit({"file": shown, "line": number, "text": text})
                found += 1
                if found >= max_matches:
                    _emit({"done": True, "searched": searched, "skipped": skipped, "cut": True})
                    return 0
    _emit({"done": True, "searched": searched, "skipped": skipped, "cut": False})
    return 0


if __name__ == "__main__":
    sys.exit(main())

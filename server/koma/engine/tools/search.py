"""`search`'s engine: the pattern checked here, the matching done by a killable child process.

See `grepworker.py` for why the regex runs in another process.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from koma.engine.tools.toolkit import ToolError

MAX_PATTERN_CHARS = 500
_WORKER = Path(__file__).with_name("grepworker.py")


def compile_pattern(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ToolError(f"the pattern is longer than {MAX_PATTERN_CHARS} characters")
    if not pattern:
        raise ToolError("the pattern is empty")
    try:
        return re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as err:
        raise ToolError(f"the pattern is not a valid regular expression: {err}") from None


async def grep(
    job: dict[str, Any], seconds: float
) -> tuple[list[dict[str, Any]], dict[str, Any], bool]:
    """Run the grep worker; matches, its summary line, and whether it had to be killed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-S",
        str(_WORKER),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    hits: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}

    async def read() -> None:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(job).encode())
        await proc.stdin.drain()
        proc.stdin.close()
        async for raw in proc.stdout:
            item = json.loads(raw)
            if item.get("done"):
                summary.update(item)
            else:
                hits.append(item)
        await proc.wait()

    timed_out = False
    try:
        await asyncio.wait_for(read(), seconds)
    except TimeoutError:
        timed_out = True
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode and not timed_out:
        assert proc.stderr is not None
        err = (await proc.stderr.read()).decode("utf-8", "replace").strip().splitlines()
        raise ToolError(f"the search failed: {err[-1] if err else proc.returncode}")
    return hits, summary, timed_out

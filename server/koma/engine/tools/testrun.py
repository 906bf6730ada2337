"""`run_tests`: the user's own test command, a validated selector, a deadline, a capped tail.

The command is the argv from `tools.runTestsCommand` and nothing else — the model can never
name a program or pass options. It may add one *selector* (a test file, folder or pytest node
id such as `tests/test_a.py::test_b[1]`), which is appended as a single argv element (there is
no shell anywhere) after these checks: no leading `-`, `+` or `@` (options, pytest's
`@argsfile`), none of the shell's metacharacters, and its path part must resolve inside the
workspace through the jail — the command then gets that resolved path, never the text as
written. The process runs in its own session in the first workspace folder with stdin closed
and an environment without credentials (`childenv`); at the deadline, or when the chat is
cancelled, the whole process group is killed and the pipe closed, so a flood of output cannot
keep the run alive. Only the tail of the output goes back to the model, with the exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import subprocess
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from koma.engine.tools.jail import Jail, PathRefused
from koma.engine.tools.toolkit import ToolError

MAX_SELECTOR_CHARS = 300
TAIL_BYTES = 12_000
# How long a killed test process may take to be reaped.
KILL_WAIT_SECONDS = 2.0
_FORBIDDEN = set(";&|$`<>(){}!*?~'\"\\#\n\r\t\x00")
_SELECTOR_RE = re.compile(r"^[\w./:\[\]\-=,+@%^ ]+$")
PYTEST_EXIT = {
    0: "all tests passed",
    1: "some tests failed",
    2: "the run was interrupted",
    3: "pytest hit an internal error",
    4: "pytest was called wrongly",
    5: "no tests were collected",
}


@dataclass
class TestRun:
    argv: list[str]
    exit_code: int | None
    output: str
    seconds: float
    timed_out: bool
    cut: bool

    def report(self, timeout: float) -> str:
        command = shlex.join(self.argv)
        if self.timed_out:
            head = f"`{command}` did not finish within {timeout:g} s and was stopped"
        else:
            meaning = PYTEST_EXIT.get(self.exit_code or 0, "")
            if self.exit_code is not None and self.exit_code < 0:
                meaning = f"killed by signal {-self.exit_code}"
            head = f"`{command}` exited with code {self.exit_code}" + (
                f" ({meaning})" if meaning and "pytest" in command else ""
            )
        tail = "last part of the output" if self.cut else "output"
        return f"{head} after {self.seconds:.1f} s.\n--- {tail} ---\n{self.output.rstrip()}"


def check_selector(selector: object, jail: Jail) -> str:
    """The selector as one safe argument, or `ToolError` explaining the refusal."""
    if not isinstance(selector, str):
        raise ToolError(f"the test selector must be a string, not {type(selector).__name__}")
    text = selector.strip()
    if not text:
        raise ToolError("the test selector is empty; omit it to run every test")
    if len(text) > MAX_SELECTOR_CHARS:
        raise ToolError(f"the test selector is longer than {MAX_SELECTOR_CHARS} characters")
    if text[0] in "-+@":
        raise ToolError(
            f"the test selector {text!r} looks like an option; only a test file, folder or "
            "node id (path::test) is accepted — options come from tools.runTestsCommand"
        )
    bad = sorted({c for c in text if c in _FORBIDDEN})
    if bad or not _SELECTOR_RE.match(text):
        shown = " ".join(repr(c) for c in bad) or "characters outside a test id"
        raise ToolError(
            f"the test selector {text!r} contains {shown}; it must be a test file, folder or "
            "pytest node id such as tests/test_app.py::test_name"
        )
    path_part, separator, test = text.partition("::")
    try:
        target = jail.resolve(path_part, kind="any")
    except PathRefused as err:
        raise ToolError(f"the test selector's path is not usable: {err}") from None
    # The test command gets the checked, resolved path — never the text as written, which
    # the kernel could resolve differently (`S/../..` through a symlink `S`).
    cwd = jail.roots[0]
    if target.real == cwd or cwd in target.real.parents:
        resolved = target.real.relative_to(cwd).as_posix()
        if resolved[0] in "-+@":
            resolved = "./" + resolved
    else:
        resolved = str(target.real)
    return resolved + separator + test


async def run_command(
    argv: Sequence[str], cwd: Path, seconds: float, env: Mapping[str, str] | None = None
) -> TestRun:
    """Run argv (never a shell) with `env`, keep the output's tail, kill the group on timeout
    or cancel. The run ends at its deadline even when the output floods the pipe."""
    if not argv:
        raise ToolError("tools.runTestsCommand is empty; the user has to set a test command")
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env) if env is not None else None,
        )
    except FileNotFoundError:
        raise ToolError(
            f"the test command {argv[0]!r} was not found; the user can fix tools.runTestsCommand"
        ) from None
    except OSError as err:
        raise ToolError(f"the test command could not start: {err}") from None
    tail: deque[bytes] = deque()
    size = 0
    cut = False

    async def pump() -> None:
        nonlocal size, cut
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(1 << 14):
            tail.append(chunk)
            size += len(chunk)
            while size - len(tail[0]) >= TAIL_BYTES:
                size -= len(tail.popleft())
                cut = True

    timed_out = False
    try:
        await asyncio.wait_for(asyncio.gather(pump(), proc.wait()), seconds)
    except TimeoutError:
        timed_out = True
        await _kill_group(proc)
    except BaseException:
        await _kill_group(proc)
        raise
    data = b"".join(tail)
    if len(data) > TAIL_BYTES:
        data, cut = data[-TAIL_BYTES:], True
    return TestRun(
        list(argv),
        proc.returncode,
        data.decode("utf-8", "replace"),
        time.monotonic() - started,
        timed_out,
        cut,
    )


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """Kill the test process and everything it started (it leads its own session)."""
    # The group outlives its leader while children (a forked server, a sleeper) remain.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    # `wait()` also waits for the output pipe to close; a flood left unread (the reader is
    # paused once its buffer is full) or a child that left the group and still holds the pipe
    # would keep it open. Our end of the pipe is closed instead: nothing more is read.
    transport = getattr(proc, "_transport", None)
    pipe = transport.get_pipe_transport(1) if transport is not None else None
    if pipe is not None:
        pipe.close()
    with contextlib.suppress(TimeoutError):  # killed already; only the reaping may be late
        await asyncio.shield(asyncio.wait_for(proc.wait(), KILL_WAIT_SECONDS))

"""Which files a folder holds, as the user's `.gitignore` sees it.

In a git repository git itself answers (`git ls-files --cached --others --exclude-standard`:
tracked files plus untracked ones that are not ignored), with `core.fsmonitor` switched off so a
hostile repository config cannot make the listing run a program. Elsewhere (or when git is
missing or refuses the folder) a walk honours every `.gitignore` on the way with `pathspec`'s
git-compatible matcher, in a child process killed at a deadline (`walkworker.py`: the
repository writes those patterns). A model's `glob` is matched by `glob_match`, which never
backtracks, in a worker thread with a deadline. Either way `.git/`, secrets and anything
resolving outside the workspace are dropped by the jail, symlinked folders are never descended,
and the walk stops after `MAX_VISITED` entries so a huge tree cannot stall the server.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

from koma.engine.tools.jail import Jail, JailedPath
from koma.engine.tools.toolkit import ToolError

MAX_VISITED = 50_000
GIT_TIMEOUT_SECONDS = 15.0
WALK_TIMEOUT_SECONDS = 10.0
_WALKER = Path(__file__).with_name("walkworker.py")
_GIT_ENV = {"GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


MAX_GLOB_CHARS = 300
# How long matching one glob against a listing may take before the rest is left out.
MATCH_SECONDS = 5.0

# One step of a compiled glob: a literal character, `?`, a `[...]` class, `*` (inside one name),
# `**` (anything) or `**/` (any number of whole folders).
# (kind, literal character or "!" for a negated class, class ranges)
_Token = tuple[str, str, tuple[tuple[str, str], ...]]


@lru_cache(maxsize=256)
def compile_glob(pattern: str) -> tuple[_Token, ...]:
    """A gitignore-style glob as steps for `glob_match`.

    `**` spans folders, `*` and `?` stay inside one name, `[…]` is a class; a pattern without
    `/` matches the file name at any depth (`*.py`), like git and most editors. Runs of `*` are
    one `*`. A pattern longer than `MAX_GLOB_CHARS` is a `ToolError`.
    """
    if len(pattern) > MAX_GLOB_CHARS:
        raise ToolError(f"the glob is longer than {MAX_GLOB_CHARS} characters")
    pattern = pattern.strip().lstrip("./") if pattern.strip() not in (".", "") else "**"
    if "/" not in pattern:
        pattern = "**/" + pattern
    out: list[_Token] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            j = i
            while j < len(pattern) and pattern[j] == "*":
                j += 1
            if j - i >= 2 and j < len(pattern) and pattern[j] == "/":
                token: _Token = ("dirs", "", ())
                j += 1
            else:
                token = ("any", "", ()) if j - i >= 2 else ("star", "", ())
            if not out or out[-1] != token:  # `*/**/` twice in a row changes nothing
                out.append(token)
            i = j
            continue
        if c == "?":
            out.append(("one", "", ()))
        elif c == "[" and (end := pattern.find("]", i + 2)) > 0:
            body = pattern[i + 1 : end]
            negated = body.startswith("!") or body.startswith("^")
            members = _class_members(body[1:] if negated else body)
            out.append(("class", "!" if negated else "", members))
            i = end
        else:
            out.append(("char", c, ()))
        i += 1
    return tuple(out)


def _class_members(body: str) -> tuple[tuple[str, str], ...]:
    ranges, k = [], 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            ranges.append((body[k], body[k + 2]))
            k += 3
        else:
            ranges.append((body[k], body[k]))
            k += 1
    return tuple(ranges)


def glob_match(tokens: tuple[_Token, ...], text: str) -> bool:
    """Whether `text` matches: a set of positions moves along the text once (no backtracking),
    so the time is at most the text's length times the glob's — never exponential."""
    done = len(tokens)

    def close(states: set[int]) -> set[int]:
        todo = list(states)
        while todo:
            s = todo.pop()
            if s < done and tokens[s][0] in ("star", "any", "dirs") and s + 1 not in states:
                states.add(s + 1)
                todo.append(s + 1)
        return states

    # A state is a token index; -(index + 1) is "inside a folder name of `**/` at index".
    states = close({0})
    for ch in text:
        nxt: set[int] = set()
        for s in states:
            if s < 0:
                nxt.add(-s - 1 if ch == "/" else s)
                continue
            if s == done:
                continue
            kind, arg, ranges = tokens[s]
            if kind == "star":
                if ch != "/":
                    nxt.add(s)
            elif kind == "any":
                nxt.add(s)
            elif kind == "dirs":
                nxt.add(s if ch == "/" else -s - 1)
            elif kind == "char":
                if ch == arg:
                    nxt.add(s + 1)
            elif kind == "one":
                if ch != "/":
                    nxt.add(s + 1)
            elif ch != "/":
                if any(low <= ch <= high for low, high in ranges) != (arg == "!"):
                    nxt.add(s + 1)
        if not nxt:
            return False
        states = close(nxt)
    return done in states


def matches(glob: str | None, relative: str) -> bool:
    return not glob or glob_match(compile_glob(glob), relative)


def select(
    names: list[tuple[str, Path]], glob: str | None, seconds: float = MATCH_SECONDS
) -> tuple[list[tuple[str, Path]], bool]:
    """The entries whose name (`/`-separated, relative) matches `glob`; True when the time ran
    out and the rest was left out. Meant for a worker thread: it never holds the loop."""
    if not glob:
        return names, False
    tokens = compile_glob(glob)
    deadline = time.monotonic() + seconds
    out: list[tuple[str, Path]] = []
    for index, (name, real) in enumerate(names):
        if index % 64 == 0 and time.monotonic() > deadline:
            return out, True
        if glob_match(tokens, name):
            out.append((name, real))
    return out, False


async def workspace_files(jail: Jail, folder: JailedPath) -> tuple[list[tuple[Path, Path]], bool]:
    """`(as listed, resolved)` paths of the regular files under `folder` that the jail allows,
    and True when the listing was cut short."""
    cut = False
    from_git = await _git_files(folder.real)
    if from_git is None:
        listed, cut = await _walk(folder.real)
    else:
        listed = from_git
    return await asyncio.to_thread(_allowed, jail, listed), cut


def _allowed(jail: Jail, listed: list[Path]) -> list[tuple[Path, Path]]:
    out = []
    for path in listed:
        real = Path(os.path.realpath(path))
        # Both the name (a symlink called .env) and its target (outside, a secret) count.
        if jail.allowed(real) and jail.allowed(Path(os.path.normpath(path))) and real.is_file():
            out.append((path, real))
    return out


async def _git_files(folder: Path) -> list[Path] | None:
    """Files git knows of under `folder` (tracked + untracked, not ignored); None if not a repo."""
    argv = [
        "git",
        "-c",
        "core.fsmonitor=false",
        "-c",
        "core.quotePath=false",
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
        "--",
        ".",
    ]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **_GIT_ENV},
        )
    except OSError:
        return None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), GIT_TIMEOUT_SECONDS)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    except asyncio.CancelledError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        return None
    seen: set[str] = set()
    files = []
    for name in out.decode("utf-8", "surrogateescape").split("\0"):
        if name and name not in seen:  # a file in conflict is listed once per stage
            seen.add(name)
            files.append(folder / name)
    return files


async def _walk(folder: Path) -> tuple[list[Path], bool]:
    """Files under `folder` not ignored by any `.gitignore` on the way; True when cut short.

    The repository writes the `.gitignore` files, and a pattern such as `*a*a*a*a*a*b` makes
    a regex engine backtrack for minutes on a long name (holding the GIL, so a thread would not
    help): the walk runs in a child process that is killed at `WALK_TIMEOUT_SECONDS`.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        str(_WALKER),
        str(folder),
        str(MAX_VISITED),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    files: list[Path] = []
    done = False

    async def read() -> None:
        nonlocal done
        assert proc.stdout is not None
        async for raw in proc.stdout:
            name = raw.decode("utf-8", "surrogateescape").rstrip("\n")
            if name == "\0":
                done = True
            elif name:
                files.append(folder / name)
        await proc.wait()

    try:
        await asyncio.wait_for(read(), WALK_TIMEOUT_SECONDS)
    except TimeoutError:
        pass
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return files, not done or len(files) >= MAX_VISITED

"""Which files a folder holds, as the user's `.gitignore` sees it.

In a git repository git itself answers (`git ls-files --cached --others --exclude-standard`:
tracked files plus untracked ones that are not ignored), with `core.fsmonitor` switched off so a
hostile repository config cannot make the listing run a program. Elsewhere (or when git is
missing or refuses the folder) a walk honours every `.gitignore` on the way with `pathspec`'s
git-compatible matcher. Either way `.git/`, secrets and anything resolving outside the
workspace are dropped by the jail, symlinked folders are never descended, and the walk stops
after `MAX_VISITED` entries so a huge tree cannot stall the server.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import pathspec

from koma.engine.tools.jail import Jail, JailedPath

MAX_VISITED = 50_000
GIT_TIMEOUT_SECONDS = 15.0
_GIT_ENV = {"GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


@lru_cache(maxsize=256)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A gitignore-style glob as a regex over `/`-separated paths.

    `**` spans folders, `*` and `?` stay inside one name, `[…]` is a class; a pattern without
    `/` matches the file name at any depth (`*.py`), like git and most editors.
    """
    pattern = pattern.strip().lstrip("./") if pattern.strip() not in (".", "") else "**"
    if "/" not in pattern:
        pattern = "**/" + pattern
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def matches(glob: str | None, relative: str) -> bool:
    return not glob or glob_regex(glob).match(relative) is not None


async def workspace_files(jail: Jail, folder: JailedPath) -> tuple[list[tuple[Path, Path]], bool]:
    """`(as listed, resolved)` paths of the regular files under `folder` that the jail allows,
    and True when the listing was cut short."""
    cut = False
    from_git = await _git_files(folder.real)
    if from_git is None:
        listed, cut = await asyncio.to_thread(_walk, folder.real)
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


def _walk(folder: Path) -> tuple[list[Path], bool]:
    """Files under `folder` not ignored by any `.gitignore` on the way; True when cut short."""
    files: list[Path] = []
    visited = 0
    for path in _walk_entries(folder, []):
        visited += 1
        if visited > MAX_VISITED:
            return files, True
        files.append(path)
    return files, False


def _walk_entries(folder: Path, specs: list[tuple[Path, pathspec.GitIgnoreSpec]]) -> Iterator[Path]:
    specs = specs + _spec_of(folder)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.name == ".git":
            continue
        path = Path(entry.path)
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            continue
        if _ignored(specs, path, is_dir):
            continue
        if is_dir:
            yield from _walk_entries(path, specs)
        else:
            yield path


def _spec_of(folder: Path) -> list[tuple[Path, pathspec.GitIgnoreSpec]]:
    ignore = folder / ".gitignore"
    try:
        if not ignore.is_file() or ignore.is_symlink():
            return []
        lines = ignore.read_text("utf-8", "replace").splitlines()
    except OSError:
        return []
    return [(folder, pathspec.GitIgnoreSpec.from_lines(lines))]


def _ignored(specs: list[tuple[Path, pathspec.GitIgnoreSpec]], path: Path, is_dir: bool) -> bool:
    ignored = False
    for base, spec in specs:
        relative = path.relative_to(base).as_posix() + ("/" if is_dir else "")
        result = spec.check_file(relative)
        if result.include is not None:
            ignored = bool(result.include)
    return ignored

"""The `.gitignore`-honouring walk, run in a child process so a hostile pattern can be killed.

A repository's `.gitignore` is untrusted text, and `pathspec` matches it with Python's `re`,
which has no timeout: `*a*a*a*a*a*a*b` against a long file name backtracks for minutes. So
`files._walk` runs this file as `python -I walkworker.py FOLDER MAX` and kills it after a
deadline. It prints one relative path per line as it goes (so what was found before a kill is
still used) and a line holding a NUL when the walk finished. `.git/` is skipped, symlinked
folders are never descended, and at most MAX entries are printed.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pathspec

Specs = list[tuple[Path, pathspec.GitIgnoreSpec]]


def walk_entries(folder: Path, specs: Specs) -> Iterator[Path]:
    """Files under `folder` that no `.gitignore` on the way ignores, in name order."""
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
            yield from walk_entries(path, specs)
        else:
            yield path


def _spec_of(folder: Path) -> Specs:
    ignore = folder / ".gitignore"
    try:
        if not ignore.is_file() or ignore.is_symlink():
            return []
        with open(ignore, "rb") as handle:
            lines = handle.read(1 << 20).decode("utf-8", "replace").splitlines()
    except OSError:
        return []
    try:
        return [(folder, pathspec.GitIgnoreSpec.from_lines(lines))]
    # A pattern pathspec rejects (ValueError) or `re` cannot compile: the whole file counts
    # for nothing and everything is listed (this child process has no log to write to).
    except (ValueError, re.error):
        return []


def _ignored(specs: Specs, path: Path, is_dir: bool) -> bool:
    ignored = False
    for base, spec in specs:
        relative = path.relative_to(base).as_posix() + ("/" if is_dir else "")
        result = spec.check_file(relative)
        if result.include is not None:
            ignored = bool(result.include)
    return ignored


def main(argv: list[str]) -> int:
    folder, limit = Path(argv[1]), int(argv[2])
    out = sys.stdout.buffer
    for count, path in enumerate(walk_entries(folder, []), 1):
        name = os.fsencode(path.relative_to(folder).as_posix())
        if b"\n" not in name:
            out.write(name + b"\n")
            out.flush()
        if count >= limit:
            return 0
    out.write(b"\0\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

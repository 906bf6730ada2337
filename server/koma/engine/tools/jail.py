"""The jail: every path a tool touches is resolved and checked before a single byte is read.

A model's path argument is untrusted text. It is resolved the way the kernel would resolve it
(`realpath`: `..` and every symlink followed) and must land inside one of the workspace
folders; the lexical path and the resolved one must both stay clear of `.git/` internals and of
the secret patterns (`.env`, `*.pem`, `id_*`, … from `tools.secretPatterns`), so neither a
symlink called `notes.txt` pointing at `.env` nor one called `.env` pointing anywhere gets
through. Only regular files are opened — device files, FIFOs and sockets are refused before
`open()` (opening a FIFO would block the server) — and they are opened with `O_NOFOLLOW`,
`O_NONBLOCK` and then `fstat`-checked again, so a file swapped for a symlink or a FIFO after the
check is refused too. Reads are capped: nothing ever reads a whole 1 GB file.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import unquote, urlparse

from koma.engine.tools.toolkit import ToolError

MAX_PATH_CHARS = 4096
# How much of a file decides whether it is binary (a NUL byte in it).
SNIFF_BYTES = 8192
Kind = Literal["file", "dir", "any", "new"]


class PathRefused(ToolError):
    """A path the jail does not allow; the message says why, for the model and the user."""


@dataclass(frozen=True)
class JailedPath:
    """A checked path: `real` for I/O; `lexical` is the same resolved file named under the
    workspace folder as the editor gave it (for URIs)."""

    real: Path
    lexical: Path
    root: Path
    shown: str
    exists: bool

    @property
    def uri(self) -> str:
        """The URI of the resolved file (what edits and open-buffer lookups use)."""
        return self.lexical.as_uri()


class Jail:
    """Paths inside the workspace folders only, minus `.git/` and secrets."""

    def __init__(
        self,
        roots: Sequence[Path | str],
        secret_patterns: Sequence[str] = (),
        max_read_bytes: int = 200_000,
    ) -> None:
        if not roots:
            raise ValueError("the jail needs at least one workspace folder")
        self.given = [Path(os.path.abspath(r)) for r in roots]
        self.roots = [Path(os.path.realpath(r)) for r in roots]
        self.secret_patterns = [p.casefold() for p in secret_patterns if p]
        self.max_read_bytes = max_read_bytes

    # -- checks -----------------------------------------------------------------------------

    def refusal(self, relative: PurePosixPath | Path) -> str | None:
        """Why a workspace-relative path is off limits (`.git/`, a secret), or None."""
        parts = [p for p in Path(relative).parts if p not in ("", ".")]
        # casefold, not lower: a case-insensitive file system (APFS) folds `ſ` to `s`, so
        # `credentialſ.json` opens `credentials.json` there.
        for part in parts:
            if part.casefold() == ".git":
                return "is inside .git/ (repository internals are never read)"
        lowered = [part.casefold() for part in parts]
        for pattern in self.secret_patterns:
            if "/" in pattern:
                # `.aws/credentials` hides that file in any folder; `/x/y` only at the top.
                anchored = pattern.startswith("/")
                body = pattern.lstrip("/")
                starts = [0] if anchored else range(len(lowered))
                if any(fnmatch.fnmatchcase("/".join(lowered[i:]), body) for i in starts):
                    return f"matches the secret pattern {pattern!r} (tools.secretPatterns)"
                continue
            for part in parts:
                if fnmatch.fnmatchcase(part.casefold(), pattern):
                    return f"matches the secret pattern {pattern!r} (tools.secretPatterns)"
        return None

    def _root_of(self, real: Path) -> int | None:
        for index, root in enumerate(self.roots):
            if real == root or root in real.parents:
                return index
        return None

    def _inside_given(self, lexical: Path) -> bool:
        return any(lexical == g or g in lexical.parents for g in self.given)

    def shown(self, real: Path) -> str:
        """How a resolved path is named to the model: relative to the first folder holding it."""
        index = self._root_of(real)
        if index is None:
            return str(real)
        relative = real.relative_to(self.roots[index]).as_posix()
        if index == 0 or relative == ".":
            return relative
        return str(real)

    def allowed(self, real: Path) -> bool:
        """True when a resolved path is inside a folder and clear of `.git/` and secrets."""
        index = self._root_of(real)
        return index is not None and self.refusal(real.relative_to(self.roots[index])) is None

    # -- resolution -------------------------------------------------------------------------

    def resolve(self, raw: object, kind: Kind = "file") -> JailedPath:
        """Check one path argument; `PathRefused` says why it is not allowed.

        `kind` is what the caller needs: an existing regular `file`, a `dir`, `any` existing
        entry, or a `new` path (a file that may not exist yet, for proposed edits). The path is
        resolved once (`realpath`, no lexical `..` first) and everything afterwards — the
        checks, the read, the edit's URI, the open-buffer lookup, a test selector — uses that
        one resolved path. A check that fails with `OSError` (a name too long, a race) is a
        refusal, never an exception that ends the turn.
        """
        text = _clean(raw, kind)
        try:
            chosen = self._resolve(text)
            self._check_names(text, chosen)
            self._check_kind(text, chosen, kind)
        except OSError as err:
            raise PathRefused(f"{text!r} cannot be checked: {err.strerror or err}") from None
        return chosen

    def _resolve(self, text: str) -> JailedPath:
        candidate = Path(text)
        bases = [candidate] if candidate.is_absolute() else [g / candidate for g in self.given]
        chosen: JailedPath | None = None
        for raw_path in bases:
            real = Path(os.path.realpath(raw_path))
            index = self._root_of(real)
            if index is None:
                continue
            found = JailedPath(
                real, self._named(real, index), self.roots[index], self.shown(real), _exists(real)
            )
            if found.exists or chosen is None:
                chosen = found
            if found.exists:
                break
        if chosen is None:
            lexically_inside = any(self._inside_given(Path(os.path.normpath(b))) for b in bases)
            why = "resolves (through a symlink) to a place" if lexically_inside else "is"
            raise PathRefused(
                f"{text!r} {why} outside the workspace; only files under "
                f"{', '.join(str(g) for g in self.given)} can be used"
            )
        return chosen

    def _named(self, real: Path, index: int) -> Path:
        """The resolved path under the workspace folder as the editor named it.

        Only the folder's own prefix is swapped (`/tmp/ws` for `/private/tmp/ws`); the part
        below it is the resolved one, so it names the very file that was checked.
        """
        return self.given[index] / real.relative_to(self.roots[index])

    def _check_names(self, text: str, path: JailedPath) -> None:
        reason = self.refusal(path.real.relative_to(path.root))
        if reason is None:
            # The names as written count too (a symlink called `.env`), taken as they are:
            # `..` is never collapsed lexically, so every name on the way is looked at.
            written = [p for p in _written_parts(text, self.given + self.roots) if p != ".."]
            reason = self.refusal(PurePosixPath(*written)) if written else None
        if reason is not None:
            raise PathRefused(f"{text!r} {reason}")

    def require(self, path: JailedPath, kind: Kind) -> JailedPath:
        """Check an already resolved path again for another `kind` (no second resolution)."""
        try:
            found = replace(path, exists=_exists(path.real))
            self._check_kind(path.shown, found, kind)
        except OSError as err:
            raise PathRefused(f"{path.shown!r} cannot be checked: {err.strerror or err}") from None
        return found

    def _check_kind(self, text: str, path: JailedPath, kind: Kind) -> None:
        if not path.exists:
            if kind == "new":
                parent = path.real.parent
                if not parent.is_dir():
                    raise PathRefused(f"{text!r}: the folder {self.shown(parent)!r} does not exist")
                return
            raise PathRefused(f"{text!r} does not exist in the workspace")
        try:
            mode = os.stat(path.real).st_mode
        except OSError as err:
            raise PathRefused(f"{text!r} cannot be read: {err.strerror or err}") from err
        if stat.S_ISDIR(mode):
            if kind in ("file", "new"):
                raise PathRefused(f"{text!r} is a folder, not a file (list_files shows folders)")
            return
        special = _special_kind(mode)
        if special:
            raise PathRefused(f"{text!r} is {special}; only regular files are read")
        if kind == "dir":
            raise PathRefused(f"{text!r} is a file, not a folder")

    # -- reading ----------------------------------------------------------------------------

    def open_regular(self, path: JailedPath) -> int:
        """A read-only descriptor of a regular file, re-checked after opening (no races)."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path.real, flags)
        except OSError as err:
            raise PathRefused(f"{path.shown!r} cannot be opened: {err.strerror or err}") from err
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise PathRefused(
                f"{path.shown!r} is {_special_kind(mode) or 'not a regular file'}; refused"
            )
        return fd

    def read_head(self, path: JailedPath, limit: int) -> tuple[bytes, int]:
        """Up to `limit` bytes from the start of the file, and the file's size."""
        fd = self.open_regular(path)
        try:
            size = os.fstat(fd).st_size
            chunks: list[bytes] = []
            left = limit
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 16))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks), size
        finally:
            os.close(fd)


def is_binary(head: bytes) -> bool:
    """Text files hold no NUL byte in their first few kilobytes; binary files almost always do."""
    return b"\x00" in head[:SNIFF_BYTES]


def _clean(raw: object, kind: Kind) -> str:
    if not isinstance(raw, str):
        raise PathRefused(f"a path must be a string, not {type(raw).__name__}")
    text = raw.strip()
    if text.startswith("file://"):
        text = unquote(urlparse(text).path)
    if not text:
        if kind in ("dir", "any"):
            return "."
        raise PathRefused("the path is empty")
    if "\x00" in text:
        raise PathRefused("a path cannot contain a NUL byte")
    if len(text) > MAX_PATH_CHARS:
        raise PathRefused(f"the path is longer than {MAX_PATH_CHARS} characters")
    return text


def _exists(path: Path) -> bool:
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    return True


def _written_parts(text: str, roots: Sequence[Path]) -> list[str]:
    """The names of a path argument below the workspace folder it starts with, unnormalised."""
    parts = [p for p in PurePosixPath(text).parts if p not in ("", ".")]
    if not PurePosixPath(text).is_absolute():
        return parts
    for root in roots:
        prefix = list(PurePosixPath(root).parts)
        if parts[: len(prefix)] == prefix:
            return parts[len(prefix) :]
    return parts[-1:]


def _special_kind(mode: int) -> str | None:
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "not a regular file"
    return None

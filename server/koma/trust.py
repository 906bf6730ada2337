"""Trust in project config files: which exact `.koma.toml` contents the user has approved.

A repository's `.koma.toml` is written by whoever wrote the repository, so its *sensitive*
settings (`koma.settings.sensitive_keys()`: where data goes, what runs) apply only once the
user trusted that exact file, as direnv and mise do. Trust lives in `trusted.json` next to the
user's own config file and maps the file's real path to the sha256 of its bytes, so any change
to the file — one byte — drops the trust until the user looks again.

The file is read here once, as bytes: what is hashed is exactly what is parsed. A file that is
not a regular file (a FIFO would block), is owned by another user, or is writable by the group
or everyone is never read at all, since someone other than the user could change it at will.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger("koma.trust")

STORE_FILE = "trusted.json"
# A config file is a few hundred bytes; a bigger one is a mistake or an attack, not settings.
MAX_PROJECT_FILE_BYTES = 256 * 1024

ProjectState = Literal["trusted", "untrusted", "restricted", "refused"]


class UnsafeConfigFile(Exception):
    """A project config file Koma will not read; the message says why and what to do."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


@dataclass(frozen=True)
class ProjectFile:
    """One project config file as read: its real path, its bytes and their sha256."""

    path: Path
    data: bytes

    @functools.cached_property
    def sha256(self) -> str:
        """Hashed once: the bytes never change, and trust, status and prompts all ask."""
        return hashlib.sha256(self.data).hexdigest()


def read_project_file(path: Path) -> ProjectFile:
    """Read `path` if it is safe to: a regular file of the user's, not writable by others,
    inside the folder it was found in.

    Raises `UnsafeConfigFile` otherwise. A symlink to a file elsewhere is refused because trust
    is keyed by the real path: a repository linking `.koma.toml` to a config the user trusted
    for another project would otherwise inherit that trust (its test command, its policies).
    Opening with O_NONBLOCK means a FIFO planted under the config name cannot block the caller;
    the checks run on the opened file (fstat), so a swap between check and read does not matter.
    """
    try:
        real = Path(os.path.realpath(path))
        folder = Path(os.path.realpath(Path(path).parent))
    except (OSError, ValueError) as exc:
        raise UnsafeConfigFile(f"cannot resolve {path}: {exc}", "check the file") from exc
    if folder not in real.parents:
        raise UnsafeConfigFile(
            f"{path} links to {real}, outside its folder",
            "replace the link with a copy of the file",
        )
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(real, flags)
    except OSError as exc:
        raise UnsafeConfigFile(
            f"cannot read {real}: {exc.strerror or exc}", "check that it exists and is readable"
        ) from exc
    try:
        info = os.fstat(fd)
        _check_owner_and_mode(real, info)
        if info.st_size > MAX_PROJECT_FILE_BYTES:
            raise UnsafeConfigFile(
                f"{real} is {info.st_size} bytes, over the {MAX_PROJECT_FILE_BYTES} byte limit "
                "for a config file",
                "shorten it",
            )
        chunks = []
        total = 0
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_PROJECT_FILE_BYTES:
                raise UnsafeConfigFile(f"{real} grew past the size limit while read", "retry")
        return ProjectFile(real, b"".join(chunks))
    except OSError as exc:
        raise UnsafeConfigFile(f"cannot read {real}: {exc.strerror or exc}", "check it") from exc
    finally:
        os.close(fd)


def _check_owner_and_mode(path: Path, info: os.stat_result) -> None:
    """Refuse anything but a regular file owned by this user and writable only by them."""
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeConfigFile(
            f"{path} is not a regular file", "replace it with a plain file or remove it"
        )
    getuid = getattr(os, "getuid", None)
    if getuid is not None and info.st_uid != getuid():
        raise UnsafeConfigFile(
            f"{path} is owned by another user (uid {info.st_uid})",
            "only config files you own are read; copy it and own the copy if you want it",
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeConfigFile(
            f"{path} is writable by other users (mode {stat.S_IMODE(info.st_mode):o})",
            f"chmod go-w {path}",
        )


def store_path(config_dir: Path) -> Path:
    """`trusted.json` in the folder of the user's config file."""
    return config_dir / STORE_FILE


class TrustStore:
    """`trusted.json`: real path -> sha256 of the bytes the user approved.

    A store that is unreadable, malformed, or writable by others counts as empty (logged):
    the safe failure is asking again, never trusting more.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, str]:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            return {}
        except OSError as exc:
            logger.warning("cannot read %s: %s; no project file is trusted", self.path, exc)
            return {}
        try:
            info = os.fstat(fd)
            try:
                _check_owner_and_mode(self.path, info)
            except UnsafeConfigFile as exc:
                logger.warning("%s; no project file is trusted (%s)", exc.reason, exc.fix)
                return {}
            with os.fdopen(os.dup(fd), "rb") as handle:
                raw = handle.read(4 * 1024 * 1024)
        except OSError as exc:
            logger.warning("cannot read %s: %s; no project file is trusted", self.path, exc)
            return {}
        finally:
            os.close(fd)
        try:
            data: Any = json.loads(raw)
        except ValueError:
            logger.warning("%s is not valid JSON; no project file is trusted", self.path)
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}

    def is_trusted(self, path: Path, sha256: str) -> bool:
        """True only for this exact real path with exactly these contents."""
        return self.load().get(str(path)) == sha256

    def trust(self, path: Path, sha256: str) -> None:
        """Record trust; written atomically with mode 0600. Raises OSError on failure."""
        entries = self.load()
        entries[str(path)] = sha256
        self._write(entries)

    def forget(self, path: Path) -> bool:
        """Drop any trust for `path`; True if there was some."""
        entries = self.load()
        if entries.pop(str(path), None) is None:
            return False
        self._write(entries)
        return True

    def _write(self, entries: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".trusted-", suffix=".json", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(entries, handle, indent=2, sort_keys=True)
                handle.write("\n")
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


@dataclass
class ProjectConfig:
    """What became of the project config file: for warnings, `koma doctor` and the editor.

    `state`: trusted (every key applied), untrusted (sensitive keys ignored until `koma trust`),
    restricted (the editor's workspace is not trusted: sensitive keys ignored whatever the
    store says), refused (the file was not read at all; `reason` says why).
    """

    path: Path
    state: ProjectState
    sha256: str | None = None
    sensitive: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    reason: str | None = None
    fix: str | None = None

    @property
    def needs_attention(self) -> bool:
        return bool(self.ignored) or self.state == "refused"

    def message(self) -> str | None:
        """One line naming the ignored keys and the fix, or None when nothing was ignored."""
        if self.state == "refused":
            return f"Koma: not reading {self.path}: {self.reason} ({self.fix})"
        if not self.ignored:
            return None
        keys = ", ".join(self.ignored)
        if self.state == "restricted":
            return (
                f"Koma: ignoring {keys} from {self.path}: the workspace is in Restricted Mode; "
                "trust the workspace to use them"
            )
        return (
            f"Koma: ignoring {keys} from untrusted {self.path} (these choose where your code "
            f"goes or what runs); review the file, then run `koma trust {self.path}` to apply "
            "them"
        )

    def summary(self) -> str:
        """The doctor row's detail."""
        if self.state == "refused":
            return f"{self.path}: not read, {self.reason}"
        if self.state == "trusted":
            applied = ", ".join(self.sensitive) or "no sensitive keys"
            return f"{self.path}: trusted ({applied})"
        if not self.ignored:
            return f"{self.path}: only safe keys"
        why = "Restricted Mode" if self.state == "restricted" else "untrusted"
        return f"{self.path}: {why}, ignored: {', '.join(self.ignored)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "uri": self.path.as_uri(),
            "state": self.state,
            "sha256": self.sha256,
            "sensitiveKeys": list(self.sensitive),
            "ignoredKeys": list(self.ignored),
            "reason": self.reason,
            "message": self.message(),
        }

"""Where Koma's settings files are, and how one is read.

The user config file is `config.toml` in the platform's config folder (or `KOMA_CONFIG`); the
project file `.koma.toml` is looked for only inside the project: from the start folder up to
the VCS root, never above the workspace folder, never from the home folder's own repository.
Both are TOML with the editor's camelCase keys (snake_case accepted); a top-level `[koma]` table
is read like the editor's `koma` section.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import platformdirs

from koma.errors import ConfigError
from koma.settings.keys import deep_merge, normalize_keys
from koma.settings.schema import KomaSettings
from koma.trust import ProjectFile, TrustStore, UnsafeConfigFile, read_project_file, store_path

PROJECT_FILE = ".koma.toml"
USER_FILE = "config.toml"
CONFIG_ENV = "KOMA_CONFIG"
# A folder holding one of these is a repository root: the project file search stops there.
VCS_MARKERS = (".git", ".hg", ".svn", ".jj")


def user_config_path(env: Mapping[str, str] | None = None) -> Path:
    """The user config file; `KOMA_CONFIG` points elsewhere (tests, several profiles).

    `KOMA_CONFIG` must be absolute (or start with `~`): a relative path would be resolved
    against the current folder, so in a repository that ships that file name the repository
    would become the user — its config trusted, its `trusted.json` beside it. `ConfigError`.
    """
    env = os.environ if env is None else env
    explicit = env.get(CONFIG_ENV)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_absolute():
            raise ConfigError(
                f"{CONFIG_ENV}={explicit!r} is a relative path; it would be read from whatever "
                "folder Koma runs in (a repository could supply it)",
                f"give an absolute path, e.g. {CONFIG_ENV}=~/{explicit}",
            )
        return path
    return Path(platformdirs.user_config_dir("koma")) / USER_FILE


def trust_store(env: Mapping[str, str] | None = None) -> TrustStore:
    """The user's trust store: `trusted.json` beside their config file."""
    return TrustStore(store_path(user_config_path(env).parent))


def vcs_root(start: Path) -> Path | None:
    """The nearest folder at or above `start` that is a repository root, if any.

    The home folder and the folders above it never count: many people keep their dotfiles in
    a git repository at `~` (or version `/etc`), and taking that as the root of
    `~/Downloads/project` would let `~/Downloads/.koma.toml` configure it. The search then
    behaves as without a repository — only `start` itself.
    """
    home = _home_folders()
    for folder in (start, *start.parents):
        if any(os.path.lexists(folder / marker) for marker in VCS_MARKERS):
            if folder in home or any(folder in h.parents for h in home):
                return None
            return folder
    return None


def _home_folders() -> set[Path]:
    """The home folder as written and as resolved (none when it cannot be known)."""
    try:
        home = Path.home()
    except (RuntimeError, KeyError):
        return set()
    return {Path(os.path.abspath(home)), Path(os.path.realpath(home))}


def find_project_config(cwd: Path | None = None, boundary: Path | None = None) -> Path | None:
    """The nearest `.koma.toml` from `cwd` up to `boundary` (inclusive), never above it.

    Without a boundary it is the repository root above `cwd`, or `cwd` itself when there is
    none — so a `.koma.toml` in `/tmp` or `~/Downloads` never applies to a folder below it.
    Anything under the name counts (a FIFO too), so that `read_project_file` can refuse it
    with a reason instead of it being silently skipped.
    """
    here = Path(os.path.abspath(cwd or Path.cwd()))
    if boundary is None:
        boundary = vcs_root(here) or here
    boundary = Path(os.path.abspath(boundary))
    if here != boundary and boundary not in here.parents:
        here = boundary  # the start lies outside the workspace: only the workspace itself
    for folder in (here, *here.parents):
        candidate = folder / PROJECT_FILE
        if os.path.lexists(candidate):
            return candidate
        if folder == boundary or any(os.path.lexists(folder / m) for m in VCS_MARKERS):
            return None
    return None


def read_toml(path: Path) -> dict[str, Any]:
    """Parse one config file; a top-level `[koma]` table is accepted like the editor section."""
    try:
        with path.open("rb") as handle:
            return parse_toml(handle.read(), path)
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path}: {exc.strerror or exc}", "check its permissions"
        ) from exc


def parse_toml(raw: bytes, path: Path) -> dict[str, Any]:
    """Parse config bytes read already (the project file is hashed and parsed from one read)."""
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", "fix the file's syntax") from exc
    except UnicodeDecodeError as exc:  # TOML must be UTF-8; tomllib lets this one through
        raise ConfigError(
            f"{path} is not valid TOML: not UTF-8 text ({exc.reason} at byte {exc.start})",
            "save the file as UTF-8",
        ) from exc
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively; a repository's file of
        # `[[[[…` (256 KiB allow 100,000 levels) would otherwise escape as an internal error.
        raise ConfigError(
            f"{path} is not valid TOML: values nested too deeply", "fix the file's syntax"
        ) from None
    inner = data.get("koma")
    if isinstance(inner, dict) and "koma" not in KomaSettings.model_fields:
        rest = {k: v for k, v in data.items() if k != "koma"}
        data = deep_merge(rest, inner)
    return data


def read_project(path: Path) -> tuple[ProjectFile, dict[str, Any]]:
    """The project file's bytes and camelCase values, for `koma trust` (raises ConfigError)."""
    try:
        read = read_project_file(path)
    except UnsafeConfigFile as exc:
        raise ConfigError(f"not reading {exc.reason}", exc.fix) from exc
    return read, normalize_keys(parse_toml(read.data, read.path))

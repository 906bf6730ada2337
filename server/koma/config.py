"""Where settings come from, and in which order they win.

Precedence (DESIGN.md): overrides (CLI flags, or what the editor sent) > `KOMA_*` environment
variables > the project's `.koma.toml` > the user's `config.toml` > defaults. Each layer is
validated on its own first, so an error names the exact file, variable or flag that holds the
bad value; then the layers are deep-merged and validated together.

Trust is separate from precedence. Everything but the project file is the user's own word; the
project file comes with the repository, so its sensitive keys (`sensitive_keys()`) apply only
once the user trusted that exact file (`koma.trust`), and it is looked for only inside the
project: from the start folder up to the VCS root, never above the workspace folder. An API key
is sent only to a base URL that came from a layer at least as trusted as the key's own layer.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import BaseModel, ValidationError

from koma.config_errors import config_error
from koma.errors import ConfigError
from koma.redaction import remember_secret
from koma.settings import KomaSettings, deep_merge, field_name, field_trust, leaf_fields
from koma.trust import (
    ProjectConfig,
    ProjectFile,
    TrustStore,
    UnsafeConfigFile,
    read_project_file,
    store_path,
)

logger = logging.getLogger("koma.config")

PROJECT_FILE = ".koma.toml"
USER_FILE = "config.toml"
# Environment variables that carry settings. KOMA_API_KEY becomes `apiKey`, a SecretStr that
# prints as asterisks, so the key is never shown in a log, an error or an editor.
ENV_KEYS: Mapping[str, str] = {
    "KOMA_PROVIDER": "provider",
    "KOMA_BASE_URL": "baseUrl",
    "KOMA_MODEL": "model",
    "KOMA_API_KEY": "apiKey",
}
CONFIG_ENV = "KOMA_CONFIG"
# A folder holding one of these is a repository root: the project file search stops there.
VCS_MARKERS = (".git", ".hg", ".svn", ".jj")
# Hosts that are the provider's own service: a key may always go there over https.
OFFICIAL_HOSTS = frozenset({"api.openai.com"})

LayerTrust = Literal["user", "project"]


@dataclass
class Layer:
    """One source of settings: its human-readable origin and its camelCase values.

    `trust` is "user" for everything the user said themselves (flags, editor settings,
    environment, their own config file) and "project" for the repository's `.koma.toml`.
    """

    source: str
    values: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    trust: LayerTrust = "user"


@dataclass
class Sources:
    """The layers in precedence order plus what became of the project file (None: none)."""

    layers: list[Layer]
    project: ProjectConfig | None = None


@dataclass
class Resolved:
    """Effective settings and every warning the user must see (one line each)."""

    settings: KomaSettings
    warnings: list[str] = field(default_factory=list)
    project: ProjectConfig | None = None


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


def normalize_keys(
    data: Mapping[str, Any], model: type[BaseModel] = KomaSettings
) -> dict[str, Any]:
    """Rename snake_case keys to the camelCase aliases, following the settings model's shape.

    Free-form mappings (such as `tools.policies`, keyed by tool name) keep their keys as they
    are; unknown keys are kept too so validation can report them.
    """
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = field_name(model, str(key))
        if name is None:
            out[str(key)] = value
            continue
        info = model.model_fields[name]
        alias = info.alias or name
        nested = info.annotation
        if (
            isinstance(value, Mapping)
            and isinstance(nested, type)
            and issubclass(nested, BaseModel)
        ):
            out[alias] = normalize_keys(value, nested)
        else:
            out[alias] = value
    return out


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
    inner = data.get("koma")
    if isinstance(inner, dict) and "koma" not in KomaSettings.model_fields:
        rest = {k: v for k, v in data.items() if k != "koma"}
        data = deep_merge(rest, inner)
    return data


def env_layer(env: Mapping[str, str]) -> Layer:
    """Settings from the `KOMA_*` variables in `ENV_KEYS`; empty values are unset."""
    values: dict[str, Any] = {}
    names: list[str] = []
    for var, key in ENV_KEYS.items():
        raw = env.get(var, "").strip()
        if raw:
            values[key] = raw.lower() if key == "provider" else raw
            names.append(var)
    return Layer(source="environment (" + ", ".join(names) + ")", values=values)


def gather_sources(
    overrides: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    workspace: Path | None = None,
    search_cwd: bool = True,
    workspace_trusted: bool = True,
) -> Sources:
    """All sources, lowest precedence first, with the project file filtered by trust.

    The project file is looked for from `cwd` up to its repository root (CLI), or, when
    `workspace` is given, in the workspace folder only (the language server). With neither
    (`search_cwd=False`, no workspace) there is no project file. `workspace_trusted=False`
    (VS Code's Restricted Mode) ignores its sensitive keys even if the file is trusted.
    """
    env = os.environ if env is None else env
    layers: list[Layer] = []
    user = user_config_path(env)
    user_layer: Layer | None = None
    if user.is_file():
        user_layer = Layer(str(user), normalize_keys(read_toml(user)), user)
        layers.append(user_layer)
    found: Path | None = None
    if workspace is not None:
        found = find_project_config(workspace, workspace)
    elif search_cwd:
        found = find_project_config(cwd)
    project: ProjectConfig | None = None
    if found is not None:
        layer, project = project_layer(found, env, user_layer, workspace_trusted=workspace_trusted)
        if layer is not None:
            layers.append(layer)
    from_env = env_layer(env)
    if from_env.values:
        layers.append(from_env)
    if overrides:
        layers.append(Layer("command-line flags", normalize_keys(drop_none(overrides))))
    return Sources(layers, project)


def project_layer(
    path: Path,
    env: Mapping[str, str],
    below: Layer | None = None,
    *,
    workspace_trusted: bool = True,
) -> tuple[Layer | None, ProjectConfig]:
    """Read a project file and keep only what its trust allows; also say what was ignored.

    `below` is the user's config layer: an untrusted `tools.secretPatterns` is added to the
    patterns in force there (or the defaults), never put in their place.
    """
    try:
        read = read_project_file(path)
    except UnsafeConfigFile as exc:
        shown = Path(os.path.abspath(path))
        return None, ProjectConfig(shown, "refused", reason=exc.reason, fix=exc.fix)
    values = normalize_keys(parse_toml(read.data, read.path))
    present = sensitive_keys_in(values)
    trusted = trust_store(env).is_trusted(read.path, read.sha256)
    state: Literal["trusted", "untrusted", "restricted"]
    if not workspace_trusted:
        state = "restricted"
    else:
        state = "trusted" if trusted else "untrusted"
    ignored: list[str] = []
    if state != "trusted":
        values, ignored = untrusted_values(values, below)
    info = ProjectConfig(read.path, state, read.sha256, present, ignored)
    return Layer(str(read.path), values, read.path, trust="project"), info


def read_project(path: Path) -> tuple[ProjectFile, dict[str, Any]]:
    """The project file's bytes and camelCase values, for `koma trust` (raises ConfigError)."""
    try:
        read = read_project_file(path)
    except UnsafeConfigFile as exc:
        raise ConfigError(f"not reading {exc.reason}", exc.fix) from exc
    return read, normalize_keys(parse_toml(read.data, read.path))


def sensitive_keys_in(values: Mapping[str, Any]) -> list[str]:
    """The sensitive dotted keys a layer sets, in schema order (plus risky values of safe ones)."""
    found = []
    for key, info in leaf_fields():
        value = _get(values, key)
        if value is _MISSING:
            continue
        if field_trust(info) == "sensitive" or _risky_value(key, value):
            found.append(key)
    return found


def untrusted_values(
    values: Mapping[str, Any], below: Layer | None = None
) -> tuple[dict[str, Any], list[str]]:
    """A project layer without its sensitive keys, and the keys it lost.

    `tools.secretPatterns` is kept as the patterns below plus the project's: more files
    hidden from the model is always allowed, fewer never. A `.gguf` path as a model (which the
    embedded runtime would load and parse) counts as sensitive: it is code-like content the
    repository ships, not a model name.
    """
    out = _copy(values)
    ignored: list[str] = []
    for key in sensitive_keys_in(values):
        value = _get(values, key)
        if key == "tools.secretPatterns" and _is_str_list(value):
            base = _get(below.values, key) if below is not None else _MISSING
            if not _is_str_list(base):
                base = KomaSettings().tools.secret_patterns
            merged = list(base) + [p for p in value if p not in base]
            _set(out, key, merged)
            continue
        _delete(out, key)
        ignored.append(key)
    return out, ignored


def _risky_value(key: str, value: Any) -> bool:
    return key in ("model", "completionModel") and str(value).lower().endswith(".gguf")


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


_MISSING: Any = object()


def _get(values: Mapping[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _set(values: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = values
    for part in parents:
        node = node[part]
    node[last] = value


def _delete(values: dict[str, Any], dotted: str) -> None:
    """Remove a key; a table left empty goes too, so it does not count as "set"."""
    *parents, last = dotted.split(".")
    chain = [values]
    for part in parents:
        chain.append(chain[-1][part])
    del chain[-1][last]
    for depth in range(len(parents), 0, -1):
        if chain[depth]:
            break
        del chain[depth - 1][parents[depth - 1]]


def _copy(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _copy(v) if isinstance(v, Mapping) else v for k, v in values.items()}


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> KomaSettings:
    """Resolve the effective settings; raises `ConfigError` naming the source of a bad value.

    Warnings (project keys ignored, an API key withheld) are logged; `resolve` returns them.
    """
    resolved = resolve(gather_sources(overrides, cwd, env))
    for warning in resolved.warnings:
        logger.warning(warning)
    return resolved.settings


def resolve(sources: Sources) -> Resolved:
    """Validate each layer alone (to blame the right source), then their merge; then keep the
    API key away from a base URL less trusted than the key. Raises `ConfigError`."""
    # Start from the defaults so a partial mapping (one tool policy) keeps the other entries.
    merged: dict[str, Any] = KomaSettings().model_dump(by_alias=True)
    for layer in sources.layers:
        try:
            KomaSettings.model_validate(layer.values)
        except ValidationError as err:
            raise config_error(err, layer.source) from err
        merged = deep_merge(merged, layer.values)
    try:
        settings = KomaSettings.model_validate(merged)
    except ValidationError as err:
        raise config_error(err, "the combined settings") from err
    warnings: list[str] = []
    if sources.project is not None:
        message = sources.project.message()
        if message:
            warnings.append(message)
    if settings.api_key is not None:
        # Withheld or not, the key is a secret: no error or log line may show it.
        remember_secret(settings.api_key.get_secret_value())
    withheld = withhold_key(settings, sources.layers)
    if withheld:
        settings = settings.model_copy(update={"api_key": None})
        warnings.append(withheld)
    return Resolved(settings, warnings, sources.project)


def withhold_key(settings: KomaSettings, layers: Sequence[Layer]) -> str | None:
    """Why the API key must not go to the base URL in force, or None when it may.

    The key may go to the URL when the URL came from a layer at least as trusted as the key's
    (the user's own layers outrank any project file, even a trusted one), when no layer set a
    URL (the provider's local default), or to the provider's official host over https.
    """
    if settings.api_key is None or settings.base_url is None:
        return None
    key_layer = _last_setting(layers, "apiKey")
    url_layer = _last_setting(layers, "baseUrl")
    if url_layer is None or url_layer.trust == "user":
        return None
    if key_layer is not None and key_layer.trust == "project":
        return None
    parts = urlsplit(settings.base_url)
    if parts.scheme == "https" and (parts.hostname or "") in OFFICIAL_HOSTS:
        return None
    origin = key_layer.source if key_layer is not None else "your settings"
    return (
        f"Koma: not sending the API key from {origin} to {settings.base_url}: that base URL "
        f"comes from {url_layer.source}, which is less trusted than the key; set baseUrl in your "
        "own config, editor settings or KOMA_BASE_URL to send the key there"
    )


def _last_setting(layers: Sequence[Layer], key: str) -> Layer | None:
    """The highest-precedence layer that sets `key` (it is the one whose value is in force)."""
    for layer in reversed(layers):
        if layer.values.get(key) not in (None, ""):
            return layer
    return None


def drop_none(data: Mapping[str, Any]) -> dict[str, Any]:
    """Drop `None` values at any depth: in CLI overrides and in what an editor sent, `None`
    (`null`) means "not given", so the key falls back to env, files and defaults (as for
    `deep_merge`)."""
    return {
        str(k): drop_none(v) if isinstance(v, Mapping) else v
        for k, v in data.items()
        if v is not None
    }

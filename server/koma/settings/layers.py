"""Where settings come from, and in which order they win.

Precedence (docs/protocol.md#settings): overrides (CLI flags, or what the editor sent) >
`KOMA_*` environment variables > the project's `.koma.toml` > the user's `config.toml` >
defaults. Each layer is validated on its own first, so an error names the exact file, variable
or flag that holds the bad value; then the layers are deep-merged and validated together.

Trust is separate from precedence. Everything but the project file is the user's own word; the
project file comes with the repository, so its sensitive keys (`sensitive_keys()`) apply only
once the user trusted that exact file (`koma.trust`); where it is looked for is in `files.py`.
An API key is sent only to a base URL that came from a layer at least as trusted as the key's
own layer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import ValidationError

from koma.errors import ConfigError
from koma.redaction import remember_secret
from koma.settings.errors import config_error
from koma.settings.files import (
    find_project_config,
    parse_toml,
    read_toml,
    trust_store,
    user_config_path,
)
from koma.settings.keys import (
    deep_merge,
    drop_none,
    leaf_fields,
    names_model_file,
    normalize_keys,
)
from koma.settings.markers import field_trust
from koma.settings.schema import KomaSettings
from koma.trust import ProjectConfig, UnsafeConfigFile, read_project_file

logger = logging.getLogger("koma.settings")

# Environment variables that carry settings. KOMA_API_KEY becomes `apiKey`, a SecretStr that
# prints as asterisks, so the key is never shown in a log, an error or an editor.
ENV_KEYS: Mapping[str, str] = {
    "KOMA_PROVIDER": "provider",
    "KOMA_BASE_URL": "baseUrl",
    "KOMA_MODEL": "model",
    "KOMA_API_KEY": "apiKey",
}
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


def sensitive_keys_in(values: Mapping[str, Any]) -> list[str]:
    """The sensitive dotted keys a layer sets, in schema order (plus risky values of safe ones)."""
    found = []
    for key, info in leaf_fields():
        value = _get(values, key)
        if value is _MISSING:
            continue
        if field_trust(info) == "sensitive" or names_model_file(key, value):
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


def valid_layers(layers: Sequence[Layer]) -> tuple[list[Layer], list[ConfigError]]:
    """The layers that validate on their own, and the error of each that does not.

    For a fallback where there are no settings yet to keep (a language server starting): a
    bad layer — a typo in a repository's `.koma.toml` — is left out and reported instead of
    taking the user's own layers down with it.
    """
    kept: list[Layer] = []
    errors: list[ConfigError] = []
    for layer in layers:
        try:
            KomaSettings.model_validate(layer.values)
        except ValidationError as err:
            errors.append(config_error(err, layer.source))
            continue
        kept.append(layer)
    return kept, errors


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

"""Where settings come from, and in which order they win.

Precedence (DESIGN.md): overrides (CLI flags, or what the editor sent) > `KOMA_*` environment
variables > the project's `.koma.toml` > the user's `config.toml` > defaults. Each layer is
validated on its own first, so an error names the exact file, variable or flag that holds the
bad value; then the layers are deep-merged and validated together.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel

from koma.errors import ConfigError
from koma.settings import KomaSettings, deep_merge

PROJECT_FILE = ".koma.toml"
USER_FILE = "config.toml"
# Environment variables that carry settings; KOMA_API_KEY is read by the provider itself so the
# key never sits in a settings object that might be logged or echoed back to an editor.
ENV_KEYS: Mapping[str, str] = {
    "KOMA_PROVIDER": "provider",
    "KOMA_BASE_URL": "baseUrl",
    "KOMA_MODEL": "model",
}
CONFIG_ENV = "KOMA_CONFIG"


@dataclass
class Layer:
    """One source of settings: its human-readable origin and its camelCase values."""

    source: str
    values: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def user_config_path(env: Mapping[str, str] | None = None) -> Path:
    """The user config file; `KOMA_CONFIG` points elsewhere (tests, several profiles)."""
    env = os.environ if env is None else env
    explicit = env.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    return Path(platformdirs.user_config_dir("koma")) / USER_FILE


def find_project_config(cwd: Path | None = None) -> Path | None:
    """The nearest `.koma.toml` from `cwd` upward, not crossing the repository root."""
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / PROJECT_FILE
        if candidate.is_file():
            return candidate
        if (folder / ".git").exists():
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
        name = _field_name(model, str(key))
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


def _field_name(model: type[BaseModel], key: str) -> str | None:
    """The model's field for `key`, whether it is written in camelCase or snake_case."""
    for name, info in model.model_fields.items():
        if key in (name, info.alias, to_camel(name)):
            return name
    return None


def read_toml(path: Path) -> dict[str, Any]:
    """Parse one config file; a top-level `[koma]` table is accepted like the editor section."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", "fix the file's syntax") from exc
    except UnicodeDecodeError as exc:  # TOML must be UTF-8; tomllib lets this one through
        raise ConfigError(
            f"{path} is not valid TOML: not UTF-8 text ({exc.reason} at byte {exc.start})",
            "save the file as UTF-8",
        ) from exc
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path}: {exc.strerror or exc}", "check its permissions"
        ) from exc
    inner = data.get("koma")
    if isinstance(inner, dict) and "koma" not in KomaSettings.model_fields:
        rest = {k: v for k, v in data.items() if k != "koma"}
        data = deep_merge(rest, inner)
    return data


def env_layer(env: Mapping[str, str]) -> Layer:
    """Settings from `KOMA_PROVIDER`, `KOMA_BASE_URL`, `KOMA_MODEL`; empty values are unset."""
    values: dict[str, Any] = {}
    names: list[str] = []
    for var, key in ENV_KEYS.items():
        raw = env.get(var, "").strip()
        if raw:
            values[key] = raw.lower() if key == "provider" else raw
            names.append(var)
    return Layer(source="environment (" + ", ".join(names) + ")", values=values)


def collect_layers(
    overrides: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> list[Layer]:
    """All sources, lowest precedence first; missing files simply contribute nothing."""
    env = os.environ if env is None else env
    layers: list[Layer] = []
    user = user_config_path(env)
    if user.is_file():
        layers.append(Layer(str(user), normalize_keys(read_toml(user)), user))
    project = find_project_config(cwd)
    if project is not None:
        layers.append(Layer(str(project), normalize_keys(read_toml(project)), project))
    from_env = env_layer(env)
    if from_env.values:
        layers.append(from_env)
    if overrides:
        layers.append(Layer("command-line flags", normalize_keys(_drop_none(overrides))))
    return layers


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> KomaSettings:
    """Resolve the effective settings; raises `ConfigError` naming the source of a bad value."""
    return load_layers(collect_layers(overrides, cwd, env))


def load_layers(layers: Sequence[Layer]) -> KomaSettings:
    """Validate each layer alone (to blame the right source), then their merge."""
    # Start from the defaults so a partial mapping (one tool policy) keeps the other entries.
    merged: dict[str, Any] = KomaSettings().model_dump(by_alias=True)
    for layer in layers:
        try:
            KomaSettings.model_validate(layer.values)
        except ValidationError as err:
            raise _config_error(err, layer.source) from err
        merged = deep_merge(merged, layer.values)
    try:
        return KomaSettings.model_validate(merged)
    except ValidationError as err:
        raise _config_error(err, "the combined settings") from err


def _drop_none(data: Mapping[str, Any]) -> dict[str, Any]:
    """`None` in overrides means "not given", as for `deep_merge`."""
    return {
        str(k): _drop_none(v) if isinstance(v, Mapping) else v
        for k, v in data.items()
        if v is not None
    }


def _config_error(err: ValidationError, source: str) -> ConfigError:
    problems = [_describe(e) for e in _dedupe(err)]
    if len(problems) == 1:
        message, hint = problems[0]
        return ConfigError(f"invalid setting in {source}: {message}", hint)
    listed = "; ".join(f"{m} ({h})" if h else m for m, h in problems)
    return ConfigError(f"{len(problems)} invalid settings in {source}: {listed}")


def format_validation_error(err: ValidationError, source: str) -> str:
    """One readable line per problem: source, camelCase key, value, and what is allowed."""
    lines = []
    for problem, hint in (_describe(e) for e in _dedupe(err)):
        lines.append(f"{source}: {problem}" + (f" — {hint}" if hint else ""))
    return "\n".join(lines)


def _dedupe(err: ValidationError) -> list[dict[str, Any]]:
    """Union types report one error per member; merge them into one error per setting key."""
    by_key: dict[str, dict[str, Any]] = {}
    for item in err.errors(include_url=False):
        key = _key_path(item["loc"])
        if key in by_key:
            first = by_key[key]
            first["msg"] = (
                f"{first['msg']} or {_lower(str(item['msg'])).replace('input should be ', '')}"
            )
            continue
        by_key[key] = {**item, "key": key}
    return list(by_key.values())


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]


def _key_path(loc: Sequence[int | str]) -> str:
    """Turn a pydantic location into the dotted camelCase key a user writes.

    Union member tags (`str`, `int`, …) that pydantic inserts are dropped by walking the model.
    """
    parts: list[str] = []
    model: type[BaseModel] | None = KomaSettings
    free_form = False
    for part in loc:
        if isinstance(part, int):
            parts[-1:] = [f"{parts[-1]}[{part}]"] if parts else [f"[{part}]"]
            continue
        if free_form:
            parts.append(part)
            free_form = False
            model = None
            continue
        if model is None:
            continue
        name = _field_name(model, part)
        if name is None:
            parts.append(part)
            model = None
            continue
        info = model.model_fields[name]
        parts.append(info.alias or name)
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            free_form = getattr(annotation, "__origin__", None) is dict
            model = None
    return ".".join(parts) or "(settings)"


def _describe(item: Mapping[str, Any]) -> tuple[str, str | None]:
    """A problem sentence and a hint that says what is allowed."""
    key = item["key"]
    kind = item["type"]
    value = item.get("input")
    ctx = item.get("ctx") or {}
    if kind == "extra_forbidden":
        return f"unknown key {key!r}", _suggest(item["loc"])
    if kind == "literal_error":
        return f"{key} = {value!r} is not allowed", f"use one of {ctx.get('expected')}"
    if kind in ("model_type", "dict_type"):
        return f"{key} must be a table of settings, not {value!r}", "see docs/protocol.md#settings"
    if kind == "value_error":
        message = str(ctx.get("error") or item["msg"])
        return f"{key} = {value!r}: {message}", None
    allowed = _lower(str(item["msg"])).replace("input should", "it should")
    return f"{key} = {value!r} is invalid", allowed


def _suggest(loc: Sequence[int | str]) -> str:
    """Point at the nearest known key, since unknown keys are usually typos."""
    model: type[BaseModel] = KomaSettings
    prefix = ""
    for part in loc[:-1]:
        name = _field_name(model, str(part))
        annotation = model.model_fields[name].annotation if name else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
        prefix += f"{part}."
    known = [info.alias or name for name, info in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f"did you mean {prefix + close[0]!r}?"
    return "known keys: " + ", ".join(prefix + k for k in known)

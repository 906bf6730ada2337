"""Pydantic validation errors as the one-line messages a user reads.

Each problem names the source (file, variable, flag or editor setting), the dotted camelCase key
the user wrote, the value (never an API key's) and what is allowed; an unknown key gets the
nearest known one, since it is usually a typo.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from koma.errors import ConfigError
from koma.settings.keys import field_name, leaf_fields
from koma.settings.schema import KomaSettings

# Problems described in one message: a repository's file may hold tens of thousands of bad keys,
# and each description searches for the nearest key — seconds of the language server's loop and
# megabytes of message for all of them.
_LISTED = 5


def config_error(err: ValidationError, source: str) -> ConfigError:
    """The error `resolve` raises for an invalid layer: one problem with its hint, or the first
    few listed with how many more there are."""
    found = _dedupe(err)
    problems = [_describe(e) for e in found[:_LISTED]]
    if len(found) == 1:
        message, hint = problems[0]
        return ConfigError(f"invalid setting in {source}: {message}", hint)
    listed = "; ".join(f"{m} ({h})" if h else m for m, h in problems)
    if len(found) > _LISTED:
        listed += f"; and {len(found) - _LISTED} more"
    return ConfigError(f"{len(found)} invalid settings in {source}: {listed}")


def format_validation_error(err: ValidationError, source: str) -> str:
    """One readable line per problem: source, camelCase key, value, and what is allowed."""
    lines = []
    found = _dedupe(err)
    for problem, hint in (_describe(e) for e in found[:_LISTED]):
        lines.append(f"{source}: {problem}" + (f" — {hint}" if hint else ""))
    if len(found) > _LISTED:
        lines.append(f"{source}: and {len(found) - _LISTED} more")
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
        name = field_name(model, part)
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
    # Never echo a key, even a malformed one.
    value = "'***'" if key.split(".")[-1] == "apiKey" else _shown(item.get("input"))
    ctx = item.get("ctx") or {}
    if kind == "extra_forbidden":
        return f"unknown key {_shown(key)}", _suggest(item["loc"])
    if kind == "literal_error":
        return f"{key} = {value} is not allowed", f"use one of {ctx.get('expected')}"
    if kind in ("model_type", "dict_type"):
        return f"{key} must be a table of settings, not {value}", "see docs/protocol.md#settings"
    if kind == "value_error":
        message = str(ctx.get("error") or item["msg"])
        return f"{key} = {value}: {message}", None
    allowed = _lower(str(item["msg"])).replace("input should", "it should")
    return f"{key} = {value} is invalid", allowed


# Longest value quoted in a message: a value is whatever a file or an editor sent (a workspace's
# settings.json, a repository's .koma.toml) and may be hundreds of kilobytes or nested deep.
_VALUE_CHARS = 60


# `scheme://user:password@`: a rejected URL is quoted without its password.
_URL_PASSWORD = re.compile(r"(://[^/:@\s]*:)[^@/\s]*@")


def _shown(value: Any) -> str:
    """The value as a message quotes it: its repr, a URL's password masked, cut to
    `_VALUE_CHARS`."""
    try:
        text = _URL_PASSWORD.sub(r"\1***@", repr(value))
    except RecursionError:
        text = f"<{type(value).__name__} nested too deeply>"
    if len(text) > _VALUE_CHARS:
        text = text[: _VALUE_CHARS - 1] + "…"
    return text


def _suggest(loc: Sequence[int | str]) -> str:
    """Point at the nearest known key, since unknown keys are usually typos."""
    model: type[BaseModel] = KomaSettings
    prefix = ""
    for part in loc[:-1]:
        name = field_name(model, str(part))
        annotation = model.model_fields[name].annotation if name else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
        prefix += f"{part}."
    known = [info.alias or name for name, info in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f"did you mean {prefix + close[0]!r}?"
    # A key put in the wrong table (`completion.model` for `completionModel`): compare the
    # whole dotted key with every key of the schema.
    written = ".".join(str(part) for part in loc)
    elsewhere = [key for key, _ in leaf_fields() if not key.startswith(prefix or "\0")]
    anywhere = difflib.get_close_matches(written, elsewhere, n=1, cutoff=0.8)
    if anywhere:
        return f"did you mean {anywhere[0]!r}?"
    return "known keys: " + ", ".join(prefix + k for k in known)

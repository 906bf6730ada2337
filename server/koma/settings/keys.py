"""The settings' key space: dotted camelCase keys, their fields, and nested value tables.

Users write keys in camelCase (the protocol) or snake_case (TOML habit, Lua); editors nest them
(`{"reasoningEffort": {"chat": "low"}}`). These helpers walk the schema so every layer speaks
the same dotted camelCase key (`reasoningEffort.chat`) in errors, trust lists and docs.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any, get_origin

from pydantic import BaseModel
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo

from koma.settings.markers import field_trust
from koma.settings.schema import KomaSettings


def nested_model(info: FieldInfo) -> type[BaseModel] | None:
    """The model of a table-valued field (`completion`, `tools`, …), else None."""
    annotation = info.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def field_name(model: type[BaseModel], key: str) -> str | None:
    """The model's field for `key`, whether it is written in camelCase or snake_case."""
    return _spellings(model).get(key)


@functools.cache
def _spellings(model: type[BaseModel]) -> dict[str, str]:
    """Every spelling of the model's keys → its field (worked out once: a file may hold tens
    of thousands of keys, each looked up)."""
    names: dict[str, str] = {}
    for name, info in model.model_fields.items():
        for spelling in (name, info.alias, to_camel(name)):
            if spelling is not None:
                names.setdefault(spelling, name)
    return names


def leaf_fields(
    model: type[BaseModel] = KomaSettings, prefix: str = ""
) -> Iterator[tuple[str, FieldInfo]]:
    """Every leaf setting as (dotted camelCase key, field); a nested table is not a leaf."""
    for name, info in model.model_fields.items():
        key = prefix + (info.alias or name)
        nested = nested_model(info)
        if nested is not None:
            yield from leaf_fields(nested, key + ".")
        else:
            yield key, info


# Keys whose value may name a model file instead of a model: a `.gguf` path, which the embedded
# runtime would load and parse. Safe keys otherwise, such a value counts as sensitive.
MODEL_FILE_KEYS = ("model", "completionModel")


def names_model_file(key: str, value: Any) -> bool:
    """True for a `.gguf` path in one of `MODEL_FILE_KEYS` (in any case, spaces around)."""
    return key in MODEL_FILE_KEYS and str(value).strip().lower().endswith(".gguf")


def sensitive_keys() -> list[str]:
    """Dotted camelCase keys a project file may set only once the user trusts it."""
    return [key for key, info in leaf_fields() if field_trust(info) == "sensitive"]


def unmarked_keys(model: type[BaseModel] = KomaSettings) -> list[str]:
    """Leaf keys without a valid trust marker; must be empty (tests/test_trust.py)."""
    return [key for key, info in leaf_fields(model) if field_trust(info) is None]


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
        nested = nested_model(info)
        if value == [] and (nested is not None or get_origin(info.annotation) is dict):
            # Lua has one empty table for `{}` and `[]`, and vim.json writes it as `[]`: where
            # the schema wants a table, an empty list is that empty table (Neovim's settings
            # reach the server as the user wrote them).
            value = {}
        if isinstance(value, Mapping) and nested is not None:
            out[alias] = normalize_keys(value, nested)
        else:
            out[alias] = value
    return out


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge nested dicts; `override` wins, `None` in `override` means "not set"."""
    out = dict(base)
    for key, value in override.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def drop_none(data: Mapping[str, Any]) -> dict[str, Any]:
    """Drop `None` values at any depth: in CLI overrides and in what an editor sent, `None`
    (`null`) means "not given", so the key falls back to env, files and defaults (as for
    `deep_merge`)."""
    return {
        str(k): drop_none(v) if isinstance(v, Mapping) else v
        for k, v in data.items()
        if v is not None
    }

"""From a Python signature and docstring to a validating pydantic model and a JSON schema.

The docstring's first paragraph describes the tool; an `Args:` section (Google style) or
`:param x:` lines (Sphinx style) describe the parameters, which the model sees in the schema.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

_SECTION_RE = re.compile(
    r"^(Arg|Argument|Parameter|Param|Return|Raise|Yield|Example|Note)s?:", re.IGNORECASE
)
_PARAM_RE = re.compile(r"^:param\s+(?:[\w\[\], ]+\s+)?(\w+):\s*(.*)$")
_ARG_LINE_RE = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The description (text before any section) and per-argument descriptions."""
    summary: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    arg_indent: int | None = None
    for raw in doc.splitlines():
        line = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        header = _SECTION_RE.match(line)
        param = _PARAM_RE.match(line)
        if param:
            current, section = param.group(1), "sphinx"
            args[current] = param.group(2).strip()
        elif header and indent == 0:
            section, current, arg_indent = header.group(1).lower(), None, None
        elif section is None:
            summary.append(line)
        elif section in ("arg", "argument", "parameter", "param") and line:
            found = _ARG_LINE_RE.match(line)
            if found and (arg_indent is None or indent <= arg_indent):
                arg_indent = indent
                current = found.group(1).lstrip("*")
                args[current] = found.group(2).strip()
            elif current:
                args[current] = (args[current] + " " + line).strip()
        elif section == "sphinx" and current and line and not line.startswith(":"):
            args[current] = (args[current] + " " + line).strip()
    text = "\n".join(summary).strip()
    return re.sub(r"\n{3,}", "\n\n", text), args


def arguments_model(
    fn: Callable[..., Any], name: str, arg_docs: dict[str, str]
) -> tuple[type[BaseModel], tuple[str, ...]]:
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as err:
        raise TypeError(f"the annotations of {name} cannot be resolved: {err}") from err
    fields: dict[str, Any] = {}
    positional: list[str] = []
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"{name}: *args / **kwargs cannot be described to a model")
        if param.kind == param.POSITIONAL_ONLY:
            positional.append(param.name)
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, Field(default, description=arg_docs.get(param.name)))
    model = create_model(
        f"{name}_arguments",
        __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=False),
        **fields,
    )
    return model, tuple(positional)


def drop_titles(schema: Any) -> Any:
    """Remove pydantic's generated `title`s, keeping properties that are *named* title."""
    if isinstance(schema, list):
        return [drop_titles(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            out[key] = {k: drop_titles(v) for k, v in value.items()}
        else:
            out[key] = drop_titles(value)
    return out

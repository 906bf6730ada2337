"""Ollama Modelfiles: parse, write, and turn into `/api/create`'s structured fields.

Ollama 0.5.5 removed the `modelfile` field of `/api/create`; a client now sends `from`,
`parameters`, `system`, `template`, `license`, `messages`, and for local files `files` /
`adapters` mapping file names to uploaded blob digests. Koma parses the Modelfile itself —
FROM, PARAMETER, TEMPLATE, SYSTEM, ADAPTER, LICENSE, MESSAGE, `#` comments and `\"\"\"`
multi-line strings, instructions in any case — and builds that request.

Lenient where Ollama's own parser is not: a `# comment` after an unquoted PARAMETER value
(`PARAMETER num_ctx 32768 # 32K`, as in the guide Modelfile docs/local-models.md quotes) is
dropped with a warning instead of failing as "invalid int value".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from koma.engine.lifecycle.options import OptionValueError, validate_ollama_options
from koma.errors import ConfigError

INSTRUCTIONS = ("FROM", "PARAMETER", "TEMPLATE", "SYSTEM", "ADAPTER", "LICENSE", "MESSAGE")
# Written by newer `ollama show --modelfile` (built-in prompt renderers and output parsers).
EXTRA_INSTRUCTIONS = ("RENDERER", "PARSER", "REQUIRES")
MESSAGE_ROLES = ("system", "user", "assistant")
_TRIPLE = '"""'
_TRAILING_COMMENT = re.compile(r"\s+#.*$")
_MODEL_FILE_SUFFIXES = (".gguf", ".bin", ".safetensors")


class ModelfileError(ConfigError):
    """The Modelfile cannot be read; the message names the line."""


@dataclass
class Modelfile:
    """A Modelfile's content; `parameters` keeps order and repeats (several `stop`s)."""

    from_: str = ""
    parameters: list[tuple[str, str]] = field(default_factory=list)
    template: str | None = None
    system: str | None = None
    adapters: list[str] = field(default_factory=list)
    license: list[str] = field(default_factory=list)
    messages: list[tuple[str, str]] = field(default_factory=list)
    # RENDERER / PARSER / REQUIRES, passed through as `renderer` / `parser` / `requires`.
    extras: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list, compare=False)

    def parameter(self, name: str) -> str | None:
        """The last value given for a parameter."""
        found = [v for k, v in self.parameters if k == name]
        return found[-1] if found else None


def parse_modelfile(text: str) -> Modelfile:
    """Parse Modelfile text; raises ModelfileError naming the line of any problem."""
    model = Modelfile()
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        number = index + 1
        line = lines[index].strip()
        index += 1
        if not line or line.startswith("#"):
            continue
        word, rest = _split(line)
        instruction = word.upper()
        if instruction in EXTRA_INSTRUCTIONS:
            value, index = _value(rest.strip(), lines, index, number)
            model.extras[instruction.lower()] = value
            continue
        if instruction not in INSTRUCTIONS:
            raise ModelfileError(
                f"line {number}: unknown instruction {word!r}",
                f"use one of {', '.join(INSTRUCTIONS)}",
            )
        rest = rest.strip()
        if instruction == "PARAMETER":
            name, raw = _split(rest)
            if not name or not raw.strip():
                raise ModelfileError(f"line {number}: PARAMETER needs a name and a value")
            value, index = _value(raw.strip(), lines, index, number)
            if not raw.strip().startswith('"'):
                stripped = _TRAILING_COMMENT.sub("", value)
                if stripped != value:
                    model.warnings.append(
                        f"line {number}: removed a trailing comment after PARAMETER {name} "
                        "(Ollama itself would reject this line)"
                    )
                    value = stripped
            model.parameters.append((name.lower(), value))
            continue
        if instruction == "MESSAGE":
            role, raw = _split(rest)
            if role.lower() not in MESSAGE_ROLES:
                raise ModelfileError(
                    f"line {number}: MESSAGE role must be one of {', '.join(MESSAGE_ROLES)}, "
                    f"not {role!r}"
                )
            content, index = _value(raw.strip(), lines, index, number)
            model.messages.append((role.lower(), content))
            continue
        value, index = _value(rest, lines, index, number)
        if instruction == "FROM":
            model.from_ = value
        elif instruction == "TEMPLATE":
            model.template = value
        elif instruction == "SYSTEM":
            model.system = value
        elif instruction == "ADAPTER":
            model.adapters.append(value)
        else:
            model.license.append(value)
    if not model.from_:
        raise ModelfileError("the Modelfile has no FROM line", "add e.g. FROM gpt-oss:20b")
    return model


def _split(text: str) -> tuple[str, str]:
    """The first word and the rest, split at any run of spaces or tabs."""
    parts = text.split(None, 1)
    if not parts:
        return "", ""
    return parts[0], parts[1] if len(parts) > 1 else ""


def _value(rest: str, lines: list[str], index: int, number: int) -> tuple[str, int]:
    """A value: `\"\"\"…\"\"\"` (may span lines), `"…"`, or the rest of the line."""
    if rest.startswith(_TRIPLE):
        body = rest[3:]
        end = body.find(_TRIPLE)
        if end >= 0:
            return body[:end], index
        parts = [body]
        while index < len(lines):
            line = lines[index]
            index += 1
            end = line.find(_TRIPLE)
            if end >= 0:
                parts.append(line[:end])
                return "\n".join(parts), index
            parts.append(line)
        raise ModelfileError(f'line {number}: the """ string is never closed')
    if rest.startswith('"') and len(rest) >= 2 and rest.endswith('"'):
        return rest[1:-1], index
    if not rest:
        raise ModelfileError(f"line {number}: the instruction has no value")
    return rest, index


def write_modelfile(model: Modelfile) -> str:
    """Modelfile text that `parse_modelfile` reads back to an equal `Modelfile`."""
    out = [f"FROM {_quote(model.from_)}"]
    for adapter in model.adapters:
        out.append(f"ADAPTER {_quote(adapter)}")
    for name, value in model.parameters:
        out.append(f"PARAMETER {name} {_quote(value, always=name == 'stop')}")
    if model.system is not None:
        out.append(f"SYSTEM {_quote(model.system, always=True)}")
    if model.template is not None:
        out.append(f"TEMPLATE {_quote(model.template, always=True)}")
    for role, content in model.messages:
        out.append(f"MESSAGE {role} {_quote(content, always=True)}")
    for text in model.license:
        out.append(f"LICENSE {_quote(text, always=True)}")
    for key, value in model.extras.items():
        out.append(f"{key.upper()} {_quote(value)}")
    return "\n".join(out) + "\n"


def _quote(value: str, *, always: bool = False) -> str:
    if _TRIPLE in value or (value.endswith('"') and "\n" in value):
        raise ModelfileError(f'a value with """ in it cannot be written: {value[:40]!r}')
    if "\n" in value or value != value.strip() or value.startswith('"') or value.endswith('"'):
        return f"{_TRIPLE}{value}{_TRIPLE}"
    if not value:
        return '""'
    if always or " #" in value or "\t" in value:
        return f'"{value}"'
    return value


def is_local_file(reference: str, base_dir: Path | None = None) -> bool:
    """FROM/ADAPTER pointing at a file (`./x.gguf`, `/abs`, `~/…`) rather than a model name."""
    if reference.startswith(("./", "../", "/", "~", ".\\")) or reference.lower().endswith(
        _MODEL_FILE_SUFFIXES
    ):
        return True
    return base_dir is not None and (base_dir / reference).is_file()


def resolve_path(reference: str, base_dir: Path | None) -> Path:
    path = Path(reference).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


@dataclass
class CreateRequest:
    """The `/api/create` body plus the local files whose blobs must be uploaded first."""

    body: dict[str, Any]
    # name in the body → local path; the caller uploads and fills in the digests.
    files: dict[str, Path] = field(default_factory=dict)
    adapters: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def to_create_request(
    model: Modelfile, name: str, base_dir: Path | None = None, quantize: str | None = None
) -> CreateRequest:
    """Structured `/api/create` fields; unsupported parameters become warnings, not fields."""
    body: dict[str, Any] = {"model": name}
    request = CreateRequest(body, warnings=list(model.warnings))
    if is_local_file(model.from_, base_dir):
        path = resolve_path(model.from_, base_dir)
        request.files[path.name] = path
    else:
        body["from"] = model.from_
    for adapter in model.adapters:
        if is_local_file(adapter, base_dir):
            path = resolve_path(adapter, base_dir)
            request.adapters[path.name] = path
        else:
            request.warnings.append(
                f"ADAPTER {adapter} is not a local file; Ollama only takes adapter files here"
            )
    params = _parameters(model.parameters, request.warnings)
    if params:
        body["parameters"] = params
    if model.system is not None:
        body["system"] = model.system
    if model.template is not None:
        body["template"] = model.template
    if model.license:
        body["license"] = model.license if len(model.license) > 1 else model.license[0]
    if model.messages:
        body["messages"] = [{"role": r, "content": c} for r, c in model.messages]
    body.update(model.extras)
    if quantize:
        body["quantize"] = quantize
    return request


def _parameters(pairs: list[tuple[str, str]], warnings: list[str]) -> dict[str, Any]:
    collected: dict[str, Any] = {}
    for key, value in pairs:
        if key == "stop":
            collected.setdefault("stop", []).append(value)
        else:
            if key in collected:
                warnings.append(f"PARAMETER {key} is given more than once; the last one counts")
            collected[key] = value
    try:
        accepted, problems = validate_ollama_options(collected)
    except OptionValueError as exc:
        raise ModelfileError(f"PARAMETER {exc}") from exc
    for problem in problems:
        warnings.append(f"PARAMETER {problem.key} is not sent: {problem.message}")
    return accepted


def variant_modelfile(
    base: str,
    *,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    repeat_penalty: float | None = None,
    num_ctx: int | None = None,
    system: str | None = None,
    adapter: str | None = None,
) -> Modelfile:
    """The Modelfile `koma model create NAME --from BASE [--temperature …]` stands for."""
    model = Modelfile(from_=base, system=system)
    for key, value in (
        ("temperature", temperature),
        ("top_p", top_p),
        ("top_k", top_k),
        ("repeat_penalty", repeat_penalty),
        ("num_ctx", num_ctx),
    ):
        if value is not None:
            model.parameters.append((key, f"{value:g}" if isinstance(value, float) else str(value)))
    if adapter:
        model.adapters.append(adapter)
    return model

"""Pydantic models of the two streamed wires, checked at the provider boundary.

A model server is untrusted input: a proxy, an old version or a bug can send `content: true`,
`choices: {}` or a count as text. Every streamed record is validated here before any value
reaches the engine, so a malformed one becomes a one-line `StreamError` naming the server, the
field and the offending piece instead of a `TypeError` deep inside the engine.

Parsing is lenient where it cannot hurt: unknown keys are ignored, `null` means absent, and
statistics (token counts, durations, timings) of the wrong type are dropped rather than
failing an otherwise good answer. Everything that carries text, tool calls or the end of the
answer must have the right type.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from koma.errors import StreamError

# How much of an offending value an error message quotes.
PIECE_CHARS = 60


def _number_or_none(value: Any) -> Any:
    """Statistics only: a value that is not a number is dropped, not an error."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _dict_or_none(value: Any) -> Any:
    return value if isinstance(value, dict) else None


Count = Annotated[int | None, BeforeValidator(lambda v: _int_or_none(_number_or_none(v)))]
Number = Annotated[float | None, BeforeValidator(_number_or_none)]
Stats = Annotated[dict[str, Any] | None, BeforeValidator(_dict_or_none)]


def _int_or_none(value: Any) -> int | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else None


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# -- Ollama NDJSON (`/api/chat`, `/api/generate`) -----------------------------------------------


class OllamaFunction(_Wire):
    name: str | None = None
    # An object on this wire; anything else is kept as text by `decode_arguments`.
    arguments: dict[str, Any] | list[Any] | str | None = None


class OllamaToolCall(_Wire):
    id: str | None = None
    function: OllamaFunction


class OllamaMessage(_Wire):
    content: str | None = None
    thinking: str | None = None
    tool_calls: list[OllamaToolCall] | None = None


class OllamaChunk(_Wire):
    message: OllamaMessage | None = None
    response: str | None = None
    thinking: str | None = None
    done: bool | None = None
    done_reason: str | None = None
    prompt_eval_count: Count = None
    eval_count: Count = None
    total_duration: Number = None
    load_duration: Number = None
    prompt_eval_duration: Number = None
    eval_duration: Number = None


# -- OpenAI-compatible SSE (`/chat/completions`, `/completions`) --------------------------------


class OpenAIFunction(_Wire):
    name: str | None = None
    arguments: str | dict[str, Any] | None = None


class OpenAIToolCall(_Wire):
    index: int | None = None
    id: str | None = None
    function: OpenAIFunction | None = None


class OpenAIDelta(_Wire):
    content: str | None = None
    reasoning: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[OpenAIToolCall] | None = None


class OpenAIChoice(_Wire):
    delta: OpenAIDelta | None = None
    # Servers that ignore `stream` send one whole answer under `message`.
    message: OpenAIDelta | None = None
    text: str | None = None
    finish_reason: str | None = None


class OpenAITokenDetails(_Wire):
    cached_tokens: Count = None


class OpenAIUsage(_Wire):
    prompt_tokens: Count = None
    completion_tokens: Count = None
    prompt_tokens_details: Annotated[OpenAITokenDetails | None, BeforeValidator(_dict_or_none)] = (
        None
    )


class OpenAIChunk(_Wire):
    choices: list[OpenAIChoice] | None = None
    usage: Annotated[OpenAIUsage | None, BeforeValidator(_dict_or_none)] = None
    # llama.cpp `timings` (milliseconds) and LM Studio `stats` (seconds); read number by number.
    timings: Stats = None
    stats: Stats = None


WireModel = TypeVar("WireModel", bound=_Wire)


def validate_record(model: type[WireModel], record: dict[str, Any], server: str) -> WireModel:
    """`record` as `model`, or a `StreamError` naming `server`, the field and the bad value."""
    try:
        return model.model_validate(record)
    except ValidationError as exc:
        raise StreamError(describe_invalid(exc, server)) from None


def describe_invalid(exc: ValidationError, server: str) -> str:
    """One line about the first wrong value: `choices[0].delta.content = true (expected …)`."""
    first = exc.errors(include_url=False)[0]
    where = _field_path(first.get("loc", ()))
    piece = cut(_as_json(first.get("input")), PIECE_CHARS)
    expected = str(first.get("msg", "invalid value")).removeprefix("Input should be ")
    if first.get("type") == "missing":
        return f"{server} sent a chunk without {where}"
    return f"{server} sent a chunk with a wrong value: {where} = {piece} (expected {expected})"


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "int", "float", "bool", "list", "dict") or "[" in part:
            # pydantic names the union member it tried (`list[...]`, `str`); not a field.
            continue
        else:
            out += f".{part}" if out else part
    return out or "the record"


def _as_json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def cut(text: str, limit: int) -> str:
    """`text` at most `limit` characters long, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"

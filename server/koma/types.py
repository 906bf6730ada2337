"""The vocabulary every layer shares: messages, settings, stream events and results.

This module imports nothing from Koma but `koma.choices` (which imports nothing), so providers,
the engine, the CLI and the language server can all speak it without depending on each other.
`Effort` is re-exported from there for the code that speaks of requests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from koma.choices import Effort

Channel = Literal["thinking", "analysis", "commentary", "final"]
CHANNELS: tuple[Channel, ...] = ("thinking", "analysis", "commentary", "final")
REASONING_CHANNELS: tuple[Channel, ...] = ("thinking", "analysis")
Role = Literal["system", "user", "assistant", "tool"]


@dataclass
class ToolCall:
    """One call the model asked for; `arguments` is already decoded when it was valid JSON."""

    name: str
    arguments: dict[str, Any] | str
    id: str | None = None

    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments, ensure_ascii=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


def decode_arguments(value: Any) -> dict[str, Any] | str:
    """Tool-call arguments as `ToolCall.arguments` holds them: the object when they are one.

    The inverse of `ToolCall.arguments_json`, for every place a call is read: a server's
    tool-call field (an object on Ollama's wire, JSON text on OpenAI's) and a Harmony call that
    leaked into the text. Missing or blank arguments are a call without any (`{}`); text that
    is not a JSON object is kept, without its surrounding whitespace, so the tool loop can
    show the model what it wrote; another JSON value is kept as its JSON text.
    """
    if isinstance(value, dict):
        return value
    if value is None:
        return {}
    if not isinstance(value, str):
        return json.dumps(value)
    text = value.strip()
    if not text:
        return {}
    try:
        decoded = json.loads(text)
    except ValueError:
        return text
    return decoded if isinstance(decoded, dict) else text


@dataclass
class Message:
    """A chat message; `thinking` carries the reasoning of an earlier assistant turn."""

    role: Role
    content: str = ""
    thinking: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_name: str | None = None
    tool_call_id: str | None = None

    @classmethod
    def system(cls, content: str) -> Message:
        return cls("system", content)

    @classmethod
    def user(cls, content: str) -> Message:
        return cls("user", content)

    @classmethod
    def assistant(cls, content: str, tool_calls: list[ToolCall] | None = None) -> Message:
        return cls("assistant", content, tool_calls=list(tool_calls or []))

    @classmethod
    def tool(cls, content: str, name: str, call_id: str | None = None) -> Message:
        return cls("tool", content, tool_name=name, tool_call_id=call_id)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.thinking:
            out["thinking"] = self.thinking
        if self.tool_calls:
            out["tool_calls"] = [c.to_dict() for c in self.tool_calls]
        if self.tool_name:
            out["tool_name"] = self.tool_name
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out


class GenerationSettings(BaseModel):
    """What a caller may set for one generation; `None` leaves the server's default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reasoning_effort: Effort | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, gt=0)
    repeat_penalty: float | None = Field(default=None, gt=0)
    seed: int | None = None
    stop: tuple[str, ...] = ()
    num_ctx: int | None = Field(default=None, gt=0)
    keep_alive: str | int | None = None
    streaming_buffer_size: int = Field(default=1, ge=1)
    # GPU / CPU placement (Ollama options); None lets the server decide.
    num_gpu: int | None = None
    num_thread: int | None = Field(default=None, gt=0)
    main_gpu: int | None = None
    use_mmap: bool | None = None

    def is_deterministic(self) -> bool:
        return self.temperature == 0 or self.seed is not None


@dataclass
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
        }


@dataclass
class Metrics:
    """Timings of one generation; server-reported values win over client measurements."""

    ttft_ms: float | None = None
    tokens_per_second: float | None = None
    total_ms: float | None = None
    load_ms: float | None = None
    prompt_ms: float | None = None
    source: Literal["server", "client"] = "client"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ttft_ms": self.ttft_ms,
            "tokens_per_second": self.tokens_per_second,
            "total_ms": self.total_ms,
            "load_ms": self.load_ms,
            "prompt_ms": self.prompt_ms,
            "source": self.source,
        }


@dataclass
class GenerationResult:
    text: str
    channels: dict[str, str] = field(default_factory=dict)
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    metrics: Metrics = field(default_factory=Metrics)
    model: str = ""
    provider: str = ""
    finish_reason: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def reasoning(self) -> str:
        return "\n".join(self.channels[c] for c in REASONING_CHANNELS if self.channels.get(c))

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "channels": dict(self.channels),
            "tool_calls": [c.to_dict() for c in self.tool_calls],
            "usage": self.usage.to_dict(),
            "metrics": self.metrics.to_dict(),
            "model": self.model,
            "provider": self.provider,
            "finish_reason": self.finish_reason,
            "warnings": list(self.warnings),
        }


# Stream events: channel_start, text_delta, channel_end, tool_call, done. A channel's start, deltas
# and end never interleave with another channel's, and a stream ends with one done: the sequence
# `koma/chat/event` carries to the editor (docs/protocol.md).


@dataclass
class ChannelStart:
    channel: Channel
    type: Literal["channel_start"] = "channel_start"


@dataclass
class TextDelta:
    channel: Channel
    text: str
    type: Literal["text_delta"] = "text_delta"


@dataclass
class ChannelEnd:
    channel: Channel
    type: Literal["channel_end"] = "channel_end"


@dataclass
class ToolCallEvent:
    call: ToolCall
    type: Literal["tool_call"] = "tool_call"


@dataclass
class Done:
    result: GenerationResult
    type: Literal["done"] = "done"


StreamEvent = ChannelStart | TextDelta | ChannelEnd | ToolCallEvent | Done


@dataclass
class ModelInfo:
    """A model as a server lists it; fields the server does not report stay None."""

    name: str
    loaded: bool | None = None
    size_bytes: int | None = None
    quantization: str | None = None
    family: str | None = None
    parameter_size: str | None = None
    context_length: int | None = None
    capabilities: list[str] = field(default_factory=list)
    size_vram_bytes: int | None = None
    expires_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "loaded": self.loaded,
            "size_bytes": self.size_bytes,
            "quantization": self.quantization,
            "family": self.family,
            "parameter_size": self.parameter_size,
            "context_length": self.context_length,
            "capabilities": list(self.capabilities),
            "size_vram_bytes": self.size_vram_bytes,
            "expires_at": self.expires_at,
        }


@dataclass
class ModelDetails:
    """What `/api/show` (or its equivalent) says about one model."""

    name: str
    capabilities: list[str] = field(default_factory=list)
    architecture: str | None = None
    context_length: int | None = None
    model_info: dict[str, Any] = field(default_factory=dict)
    quantization: str | None = None
    parameter_size: str | None = None
    template: str | None = None

"""The provider contract: wire formats in, `WireChunk`s out.

A provider only speaks one server's HTTP (or in-process) format. It does not split channels,
cache, or count tokens per channel: it reports what the wire said — content text (which may
still hold Harmony tokens or `<think>` tags), the server's separate reasoning field, tool calls,
and the server's own stats at the end. The engine turns that into channels and events.

Cancellation: `chat()` and `complete()` are async generators that hold the HTTP response open
while iterating. Closing the generator (`aclose()`, leaving an `async with aclosing(...)`, or
cancelling the task that iterates it) must close the response at once so the server stops
generating.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from koma.errors import CapabilityMissing
from koma.types import (
    GenerationSettings,
    Message,
    Metrics,
    ModelDetails,
    ModelInfo,
    ToolCall,
    Usage,
)

logger = logging.getLogger(__name__)


@dataclass
class ChatRequest:
    model: str
    messages: list[Message]
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    # OpenAI function tools: {"type": "function", "function": {name, description, parameters}}
    tools: list[dict[str, Any]] | None = None
    response_format: str | dict[str, Any] | None = None


@dataclass(frozen=True)
class InfillOptions:
    """llama.cpp `llama-server` `POST /infill` extras (its README documents each field).

    `extra` are (filename, text) chunks of other files, sent as `input_extra` ahead of the
    prefix so the server's prompt cache keeps them from one keystroke to the next; `n_indent`
    stops a new line indented less than the cursor; `t_max_predict_ms` caps generation time
    once a newline was produced.
    """

    extra: tuple[tuple[str, str], ...] = ()
    n_indent: int | None = None
    t_max_predict_ms: int | None = None
    cache_prompt: bool = True
    # Overrides the token limit; 0 evaluates the prompt only (a prompt-cache warm-up).
    n_predict: int | None = None


@dataclass
class CompletionRequest:
    """A raw or fill-in-the-middle completion (`/api/generate`, `/v1/completions`, `/infill`).

    With `infill` set the request goes to llama-server's `/infill`: `prompt` is the text before
    the cursor (the provider sends the lines above it as `input_prefix` and the cursor line as
    `prompt`, as llama.vim does; the server appends `prompt` to the prefix, before the suffix).
    """

    model: str
    prompt: str
    suffix: str | None = None
    system: str | None = None
    raw: bool = False
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    infill: InfillOptions | None = None


@dataclass(frozen=True)
class RouteSupport:
    """How a model on this server can be asked for inline completion, and how that was learnt.

    `fim`: it fills in the middle (`fim_endpoint` says where: Ollama `/api/generate` with
    `suffix`, llama-server `/infill`, `/v1/completions` with `suffix`). `raw`: a completion
    endpoint takes a raw prompt (`raw_endpoint`). Neither: only chat is left. `why` is shown
    to the user (doctor row, status details).
    """

    fim: bool
    raw: bool
    why: str
    fim_endpoint: str = ""
    raw_endpoint: str = ""
    infill: bool = False  # FIM goes through llama-server's /infill


@dataclass
class WireChunk:
    """One piece of a streamed answer, as the wire gave it."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    done: bool = False
    finish_reason: str | None = None
    usage: Usage | None = None
    # Server-reported timings (Ollama durations, LM Studio stats, llama.cpp timings).
    metrics: Metrics | None = None
    raw: dict[str, Any] | None = None


def llama_samplers(settings: GenerationSettings) -> dict[str, Any]:
    """The set sampler values under llama.cpp's names, shared by llama-cpp-python and llama-server.

    One list for both so a sampler added to one reaches the other; the length limit is left to
    the caller because the two name it differently (`max_tokens`, `n_predict`).
    """
    out: dict[str, Any] = {}
    for key in ("temperature", "top_p", "top_k", "repeat_penalty", "seed"):
        value = getattr(settings, key)
        if value is not None:
            out[key] = value
    if settings.stop:
        out["stop"] = list(settings.stop)
    return out


class Provider(ABC):
    """One model server. Instances are cheap and hold a pooled HTTP client."""

    name: str = "provider"
    base_url: str = ""

    @abstractmethod
    def chat(self, request: ChatRequest) -> AsyncIterator[WireChunk]:
        """Stream a chat answer."""

    @abstractmethod
    def complete(self, request: CompletionRequest) -> AsyncIterator[WireChunk]:
        """Stream a raw / FIM completion."""

    @abstractmethod
    async def list_models(self) -> list[ModelInfo]:
        """Installed (or served) models with what the server knows of each."""

    async def show(self, model: str) -> ModelDetails:
        """Capabilities and metadata of one model; servers without such an API guess little."""
        return ModelDetails(name=model, capabilities=["completion"])

    async def version(self) -> str | None:
        return None

    async def ping(self) -> bool:
        """True when the server answers; never raises."""
        try:
            await self.list_models()
        except Exception as exc:  # any implementation's failure means "not answering"
            logger.debug("%s does not answer: %s", self.name, exc)
            return False
        return True

    async def supports_fim(self, model: str) -> bool:
        """Whether `complete()` may be given a `suffix` for this model."""
        return False

    async def completion_routes(self, model: str) -> RouteSupport:
        """What inline completion may use for `model` here; a server that only chats: chat."""
        fim = await self.supports_fim(model)
        return RouteSupport(
            fim=fim,
            raw=False,
            why=f"{self.name} has no completion endpoint Koma knows; only chat",
            fim_endpoint="complete() with suffix" if fim else "",
        )

    async def loaded_models(self) -> list[ModelInfo]:
        """Models in memory right now (Ollama `/api/ps`, LM Studio state)."""
        return [m for m in await self.list_models() if m.loaded]

    async def load(self, model: str, keep_alive: str | int | None = None) -> str:
        raise CapabilityMissing(
            f"{self.name} manages its own model; Koma cannot load {model!r} there",
            "load the model in the server itself",
        )

    async def unload(self, model: str) -> str:
        raise CapabilityMissing(
            f"{self.name} manages its own model; Koma cannot unload {model!r} there",
            "stop or reconfigure the server itself",
        )

    async def aclose(self) -> None:
        """Release pooled connections; providers without a pool have nothing to release."""
        return None

"""Ollama's native API: `/api/chat` and `/api/generate` streamed as NDJSON.

Native rather than Ollama's `/v1` layer because only the native API can set `num_ctx` (Ollama
otherwise truncates long prompts silently), `keep_alive`, GPU placement and `think` levels.
Model management (tags, ps, load/unload, pull, create, delete) lives in
`koma.providers.ollama_admin`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from koma.errors import (
    KomaError,
    ModelNotFound,
    ProviderTimeout,
    ProviderUnreachable,
    StreamError,
)
from koma.providers.base import ChatRequest, CompletionRequest, Provider, RouteSupport, WireChunk
from koma.providers.errortext import ServerLabel
from koma.providers.http import DEFAULT_BACKOFF, DEFAULT_RETRIES
from koma.providers.http_provider import HttpProvider
from koma.providers.ollama_admin import OllamaAdmin
from koma.providers.stream_records import iter_ndjson
from koma.providers.wire import OllamaChunk, validate_record
from koma.types import (
    GenerationSettings,
    Message,
    Metrics,
    ModelDetails,
    ToolCall,
    Usage,
    decode_arguments,
)

logger = logging.getLogger("koma.providers.ollama")

DEFAULT_BASE_URL = "http://localhost:11434"
# Used when neither the request nor the provider sets num_ctx and the model allows more:
# big enough for code context, small enough not to blow up KV-cache memory.
FALLBACK_NUM_CTX = 8192

# GenerationSettings field → Ollama `options` key. Only keys Ollama still accepts; `use_mlock`,
# `low_vram`, `f16_kv` were removed (Ollama 0.7) and are never sent (docs/local-models.md).
_OPTION_KEYS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "repeat_penalty": "repeat_penalty",
    "seed": "seed",
    "max_tokens": "num_predict",
    "num_gpu": "num_gpu",
    "num_thread": "num_thread",
    "main_gpu": "main_gpu",
    "use_mmap": "use_mmap",
}

# Chooses num_ctx for a model when neither the request nor the provider fixes one; the engine
# supplies it (the largest context that fits free memory). None from it keeps the fallback.
ContextPolicy = Callable[[Provider, str, ModelDetails | None], Awaitable[int | None]]


class OllamaProvider(OllamaAdmin, HttpProvider):
    """Talks to one Ollama server; `show()` answers are cached per model."""

    name = "ollama"
    ping_path = "/api/version"

    def __init__(
        self,
        base_url: str | None = None,
        *,
        keep_alive: str | int | None = "10m",
        num_ctx: int | None = None,
        num_gpu: int | None = None,
        num_thread: int | None = None,
        main_gpu: int | None = None,
        use_mmap: bool | None = None,
        timeout: httpx.Timeout | float | None = None,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        context_policy: ContextPolicy | None = None,
    ) -> None:
        url = normalize_ollama_url(base_url or DEFAULT_BASE_URL)
        label = ServerLabel(
            "Ollama",
            url,
            "is Ollama running? `ollama serve`",
            lambda model: f"`ollama pull {model}`",
        )
        super().__init__(url, label, timeout=timeout, retries=retries, backoff=backoff)
        self.keep_alive = keep_alive
        self.num_ctx = num_ctx
        self.context_policy = context_policy
        self.gpu: dict[str, Any] = {
            "num_gpu": num_gpu,
            "num_thread": num_thread,
            "main_gpu": main_gpu,
            "use_mmap": use_mmap,
        }
        self._show_cache: dict[str, ModelDetails] = {}

    # -- generation ---------------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> AsyncIterator[WireChunk]:
        """Stream `/api/chat`; thinking comes in `message.thinking`, content passes through raw."""
        body = await self._common_body(request.model, request.settings)
        body["messages"] = [encode_message(m) for m in request.messages]
        if request.tools:
            body["tools"] = request.tools
        if request.response_format is not None:
            body["format"] = request.response_format
        async for chunk in self._stream("/api/chat", body, request.model):
            yield chunk

    async def complete(self, request: CompletionRequest) -> AsyncIterator[WireChunk]:
        """Stream `/api/generate`; `suffix` asks for fill-in-the-middle (needs `insert`)."""
        body = await self._common_body(request.model, request.settings)
        body["prompt"] = request.prompt
        if request.suffix is not None:
            body["suffix"] = request.suffix
        if request.system is not None:
            body["system"] = request.system
        if request.raw:
            body["raw"] = True
        async for chunk in self._stream("/api/generate", body, request.model):
            yield chunk

    async def _stream(
        self, path: str, body: dict[str, Any], model: str
    ) -> AsyncIterator[WireChunk]:
        num_ctx = body["options"]["num_ctx"]
        finished = False
        async with self._open_stream(path, body, model) as response:
            async for obj in iter_ndjson(response, self.label, model):
                record = validate_record(OllamaChunk, obj, f"Ollama at {self.base_url}")
                chunk = parse_chunk(record, num_ctx)
                finished = finished or chunk.done
                if chunk.done or chunk.content or chunk.reasoning or chunk.tool_calls:
                    yield chunk
                if finished:
                    break  # nothing after `done` belongs to this answer
        if not finished:
            raise StreamError(f"Ollama at {self.base_url} ended the stream before it was done")

    async def _common_body(self, model: str, settings: GenerationSettings) -> dict[str, Any]:
        details = await self._details_or_none(model)
        body: dict[str, Any] = {"model": model, "stream": True}
        body["options"] = await self.planned_options(model, settings, details)
        keep_alive = settings.keep_alive if settings.keep_alive is not None else self.keep_alive
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        think = think_value(model, details, settings.reasoning_effort)
        if think is not None:
            body["think"] = think
        return body

    def build_options(
        self, settings: GenerationSettings, details: ModelDetails | None
    ) -> dict[str, Any]:
        """Valid Ollama options only; `num_ctx` is always present so nothing is cut silently."""
        options: dict[str, Any] = {}
        for field, key in _OPTION_KEYS.items():
            value = getattr(settings, field)
            if value is None:
                value = self.gpu.get(field)
            if value is not None:
                options[key] = value
        if settings.stop:
            options["stop"] = list(settings.stop)
        options["num_ctx"] = self.resolve_num_ctx(settings, details)
        return options

    async def planned_options(
        self, model: str, settings: GenerationSettings, details: ModelDetails | None
    ) -> dict[str, Any]:
        """`build_options`, with num_ctx from the context policy when nothing fixes it."""
        options = self.build_options(settings, details)
        if settings.num_ctx or self.num_ctx or self.context_policy is None:
            return options
        try:
            planned = await self.context_policy(self, model, details)
        except Exception as exc:  # a policy failure must never block generation
            logger.info("context policy failed for %s: %s", model, exc)
            planned = None
        if planned:
            options["num_ctx"] = planned
        return options

    def resolve_num_ctx(self, settings: GenerationSettings, details: ModelDetails | None) -> int:
        if settings.num_ctx:
            return settings.num_ctx
        if self.num_ctx:
            return self.num_ctx
        trained = details.context_length if details else None
        return min(trained, FALLBACK_NUM_CTX) if trained else FALLBACK_NUM_CTX

    async def _details_or_none(self, model: str) -> ModelDetails | None:
        """`show()` for the think mapping and num_ctx; a missing model is reported right away."""
        try:
            return await self.show(model)
        except (ModelNotFound, ProviderUnreachable, ProviderTimeout):
            raise
        except KomaError:
            # Older servers or odd proxies: generate without the metadata rather than fail.
            return None

    # -- models -------------------------------------------------------------------------------

    async def show(self, model: str) -> ModelDetails:
        cached = self._show_cache.get(model)
        if cached is not None:
            return cached
        data = await self._json("POST", "/api/show", {"model": model}, model=model)
        details = parse_show(model, data if isinstance(data, dict) else {})
        self._show_cache[model] = details
        return details

    async def version(self) -> str | None:
        data = await self._json("GET", "/api/version")
        return str(data.get("version")) if isinstance(data, dict) and data.get("version") else None

    async def supports_fim(self, model: str) -> bool:
        return "insert" in (await self.show(model)).capabilities

    async def completion_routes(self, model: str) -> RouteSupport:
        """`/api/show` capabilities: `insert` means the template takes a suffix (FIM); every
        model takes a raw prompt on `/api/generate` with `raw: true`."""
        details = await self.show(model)
        if "insert" in details.capabilities:
            return RouteSupport(
                True,
                True,
                "/api/show lists 'insert': the template fills in the middle",
                fim_endpoint="/api/generate suffix",
                raw_endpoint="/api/generate raw",
            )
        return RouteSupport(
            False,
            True,
            "/api/show has no 'insert' capability; raw prompt to /api/generate",
            raw_endpoint="/api/generate raw",
        )


def normalize_ollama_url(url: str) -> str:
    """Accept `…:11434`, `…:11434/`, `…/api` or `…/v1` and keep only the server root."""
    url = url.rstrip("/")
    for tail in ("/api", "/v1"):
        if url.endswith(tail):
            url = url[: -len(tail)]
    return url


def is_gpt_oss(model: str, details: ModelDetails | None) -> bool:
    arch = (details.architecture or "") if details else ""
    return arch == "gptoss" or "gpt-oss" in model.lower()


def think_value(model: str, details: ModelDetails | None, effort: str | None) -> str | bool | None:
    """Ollama's `think`: levels for gpt-oss (it ignores booleans), `true` for other thinkers.

    None means "leave it out": the model's default applies (gpt-oss reasons at medium; models
    without the `thinking` capability would reject the flag).
    """
    if effort is None:
        return None
    if is_gpt_oss(model, details):
        return effort
    if details is not None and "thinking" in details.capabilities:
        return True
    return None


def encode_message(message: Message) -> dict[str, Any]:
    """A `Message` in Ollama's shape: tool arguments as objects, tool results with `tool_name`."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.thinking:
        out["thinking"] = message.thinking
    if message.tool_calls:
        out["tool_calls"] = [
            {"function": {"name": c.name, "arguments": _arguments_object(c)}}
            for c in message.tool_calls
        ]
    if message.role == "tool" and message.tool_name:
        out["tool_name"] = message.tool_name
    return out


def _arguments_object(call: ToolCall) -> dict[str, Any]:
    """Ollama only takes an object; text that is not one is kept under a `value` key."""
    decoded = decode_arguments(call.arguments)
    return decoded if isinstance(decoded, dict) else {"value": decoded}


def parse_chunk(record: OllamaChunk | dict[str, Any], num_ctx: int | None) -> WireChunk:
    """One NDJSON line of `/api/chat` or `/api/generate` as a `WireChunk`.

    A raw dict is validated first (raising `StreamError` on a wrong type); the stream hands
    over records it has already validated.
    """
    obj = (
        record
        if isinstance(record, OllamaChunk)
        else validate_record(OllamaChunk, record, "Ollama")
    )
    message = obj.message
    content = message.content if message else obj.response
    reasoning = message.thinking if message else obj.thinking
    calls = [
        ToolCall(
            name=tc.function.name or "",
            arguments=decode_arguments(tc.function.arguments),
            id=tc.id,
        )
        for tc in (message.tool_calls if message else None) or []
    ]
    chunk = WireChunk(content=content or "", reasoning=reasoning or "", tool_calls=calls)
    if obj.done:
        chunk.done = True
        chunk.finish_reason = obj.done_reason
        chunk.usage = Usage(obj.prompt_eval_count, obj.eval_count)
        chunk.metrics = parse_metrics(obj)
        # The engine compares these to spot a prompt Ollama truncated to fit num_ctx.
        chunk.raw = {
            "prompt_eval_count": obj.prompt_eval_count,
            "eval_count": obj.eval_count,
            "num_ctx": num_ctx,
            "done_reason": obj.done_reason,
        }
    return chunk


def parse_metrics(obj: OllamaChunk) -> Metrics | None:
    """Ollama's nanosecond durations as milliseconds; None when the server sent none."""

    def ms(value: float | None) -> float | None:
        return value / 1e6 if value is not None else None

    load, prompt = ms(obj.load_duration), ms(obj.prompt_eval_duration)
    total = ms(obj.total_duration)
    eval_count, eval_ns = obj.eval_count, obj.eval_duration
    tps = eval_count / eval_ns * 1e9 if eval_count and eval_ns else None
    if load is None and prompt is None and total is None and tps is None:
        return None
    ttft = (load or 0.0) + (prompt or 0.0) if load is not None or prompt is not None else None
    return Metrics(
        ttft_ms=ttft,
        tokens_per_second=tps,
        total_ms=total,
        load_ms=load,
        prompt_ms=prompt,
        source="server",
    )


def parse_show(model: str, data: dict[str, Any]) -> ModelDetails:
    """`/api/show`: capabilities, architecture, and the trained context length."""
    info = _dict(data.get("model_info"))
    details = _dict(data.get("details"))
    arch = info.get("general.architecture") or details.get("family")
    ctx = info.get(f"{arch}.context_length") if arch else None
    return ModelDetails(
        name=model,
        capabilities=[str(c) for c in data.get("capabilities") or []],
        architecture=str(arch) if arch else None,
        context_length=int(ctx) if isinstance(ctx, int | float) else None,
        model_info=info,
        quantization=details.get("quantization_level"),
        parameter_size=details.get("parameter_size"),
        template=data.get("template"),
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}

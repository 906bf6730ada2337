"""OpenAI-compatible servers over SSE: LM Studio, llama.cpp, vLLM, Ollama's `/v1`, OpenAI itself.

One provider with presets, because these servers share the wire and differ only in defaults and
a few extra keys (llama.cpp's `chat_template_kwargs` and `timings`, LM Studio's `stats`, local
samplers such as `top_k` that the OpenAI cloud rejects). Assembling the streamed events into
chunks is `openai_stream.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from koma.errors import ConfigError, KomaError, StreamError
from koma.providers.base import (
    ChatRequest,
    CompletionRequest,
    RouteSupport,
    WireChunk,
    llama_samplers,
)
from koma.providers.errortext import ServerLabel
from koma.providers.http import DEFAULT_BACKOFF, DEFAULT_RETRIES
from koma.providers.http_provider import HttpProvider
from koma.providers.openai_stream import StreamState
from koma.providers.stream_records import SSE_DONE, iter_sse
from koma.providers.wire import OpenAIChunk, validate_record
from koma.redaction import remember_secret
from koma.types import GenerationSettings, Message, ModelInfo

PRESETS: dict[str, str] = {
    "lmstudio": "http://localhost:1234/v1",
    "llamacpp": "http://localhost:8080/v1",
    "vllm": "http://localhost:8000/v1",
    "openai": "https://api.openai.com/v1",
    "ollama-openai": "http://localhost:11434/v1",
}
# Presets whose servers accept llama.cpp-style samplers next to the OpenAI ones.
_LOCAL_SAMPLERS = {"lmstudio", "llamacpp", "ollama-openai"}
# The field each server takes an earlier assistant message's reasoning back in (it renders it
# through the model's template again; gpt-oss keeps it inside a tool-calling turn). LM Studio
# and the OpenAI cloud document none, so nothing is sent there (docs/providers.md).
REASONING_FIELDS: dict[str, str] = {
    "llamacpp": "reasoning_content",
    "vllm": "reasoning",
    "ollama-openai": "reasoning",
}


def normalize_v1_url(url: str) -> str:
    """Append `/v1` to a bare server address (`http://host:1234`), leave any other path alone.

    A URL that already names a path (`…/v1`, or a proxy prefix such as `…/openai/v1`) is the
    user's deliberate choice and is kept as given, minus a trailing slash.
    """
    url = url.rstrip("/")
    if urlsplit(url).path in ("", "/"):
        return url + "/v1"
    return url


def server_root(base_url: str) -> str:
    """The server address without its `/v1`, for native endpoints next to the OpenAI ones."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


def _guess_preset(base_url: str) -> str | None:
    host = urlsplit(base_url).hostname or ""
    return "openai" if host == "api.openai.com" else None


class OpenAICompatProvider(HttpProvider):
    """Any `/v1/chat/completions` server; `preset` picks defaults and server-specific keys."""

    name = "openai"
    ping_path = "/models"

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        preset: str | None = None,
        *,
        fim: bool | None = None,
        timeout: httpx.Timeout | float | None = None,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
    ) -> None:
        if preset is not None and preset not in PRESETS:
            raise ConfigError(
                f"unknown OpenAI-compatible preset {preset!r}",
                f"use one of: {', '.join(PRESETS)}",
            )
        url = base_url or PRESETS.get(preset or "", PRESETS["lmstudio"])
        self.base_url = normalize_v1_url(url)
        self.preset = preset or _guess_preset(self.base_url)
        if self.preset and self.preset != "openai":
            self.name = self.preset
        # Only the key the caller passes: settings decide which URL may get which key
        # (`koma.settings.layers.withhold_key`); reading KOMA_API_KEY here would send it anywhere.
        self.api_key = api_key or None
        remember_secret(self.api_key)
        self.fim = fim
        self.reasoning_field: str | None = REASONING_FIELDS.get(self.preset or "")
        # A server without a preset may be llama.cpp: its `/props` says so (asked once).
        self._props_checked = self.preset is not None
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
        super().__init__(
            self.base_url,
            self._make_label(),
            headers=headers,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
        )

    def _make_label(self) -> ServerLabel:
        return ServerLabel(
            "OpenAI-compatible server",
            self.base_url,
            f"is the server running at {self.base_url}?",
            lambda model: "check the model name with `koma models`",
        )

    # -- generation ---------------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> AsyncIterator[WireChunk]:
        """Stream `/chat/completions`, assembling tool-call fragments by index."""
        settings = request.settings
        if not self._props_checked and any(m.thinking for m in request.messages):
            await self._learn_reasoning_field()
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [self.encode_message(m) for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        body.update(self.sampling(settings))
        if settings.reasoning_effort is not None:
            body["reasoning_effort"] = settings.reasoning_effort
            if self.preset == "llamacpp":
                body["chat_template_kwargs"] = {"reasoning_effort": settings.reasoning_effort}
        if request.tools:
            body["tools"] = request.tools
        if request.response_format is not None:
            body["response_format"] = encode_response_format(request.response_format)
        async for chunk in self._stream("/chat/completions", body, request.model):
            yield chunk

    async def complete(self, request: CompletionRequest) -> AsyncIterator[WireChunk]:
        """Stream `/completions`; a `system` text has no slot there, so it leads the prompt.

        A request with `infill` options goes to llama-server's `/infill` instead.
        """
        if request.infill is not None:
            from koma.providers.llamacpp import stream_infill

            async for piece in stream_infill(self, request):
                yield piece
            return
        prompt = request.prompt
        if request.system:
            prompt = f"{request.system}\n\n{prompt}"
        body: dict[str, Any] = {"model": request.model, "prompt": prompt, "stream": True}
        if request.suffix is not None:
            body["suffix"] = request.suffix
        body.update(self.sampling(request.settings))
        async for chunk in self._stream("/completions", body, request.model):
            yield chunk

    def sampling(self, settings: GenerationSettings) -> dict[str, Any]:
        """Sampler keys this server understands; unset values are left to the server."""
        out: dict[str, Any] = {}
        if settings.max_tokens is not None:
            # OpenAI's reasoning models only take max_completion_tokens.
            key = "max_completion_tokens" if self.preset == "openai" else "max_tokens"
            out[key] = settings.max_tokens
        if self.preset in _LOCAL_SAMPLERS:
            return out | llama_samplers(settings)
        for key in ("temperature", "top_p", "seed"):
            if getattr(settings, key) is not None:
                out[key] = getattr(settings, key)
        if settings.stop:
            out["stop"] = list(settings.stop)
        if self.preset == "vllm":
            if settings.top_k is not None:
                out["top_k"] = settings.top_k
            if settings.repeat_penalty is not None:
                out["repetition_penalty"] = settings.repeat_penalty
        return out

    def encode_message(self, message: Message) -> dict[str, Any]:
        """OpenAI's message shape: tool-call arguments as JSON text, results by `tool_call_id`."""
        out: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            out["tool_calls"] = [
                {
                    "id": c.id or f"call_{i}",
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments_json()},
                }
                for i, c in enumerate(message.tool_calls)
            ]
        if message.thinking and self.reasoning_field:
            out[self.reasoning_field] = message.thinking
        if message.role == "tool":
            if message.tool_call_id:
                out["tool_call_id"] = message.tool_call_id
            if message.tool_name and self.preset != "openai":
                out["name"] = message.tool_name
        return out

    async def _learn_reasoning_field(self) -> None:
        """llama.cpp answers `GET /props` with its chat template (and the template's
        capabilities) and takes reasoning back as `reasoning_content`; any other answer, or
        none, leaves reasoning out of the request, as for a server that drops it."""
        self._props_checked = True
        try:
            props = await self._json("GET", server_root(self.base_url) + "/props")
        except KomaError:
            return
        if isinstance(props, dict) and ("chat_template" in props or "chat_template_caps" in props):
            self.reasoning_field = "reasoning_content"

    async def _stream(
        self, path: str, body: dict[str, Any], model: str
    ) -> AsyncIterator[WireChunk]:
        state = StreamState()
        async with self._open_stream(path, body, model) as response:
            async for obj in iter_sse(response, self.label, model):
                if obj is SSE_DONE:
                    state.finished = True
                    continue
                record = validate_record(OpenAIChunk, obj, f"{self.label.name} at {self.base_url}")
                chunk = state.feed(record)
                if chunk is not None:
                    yield chunk
        if not state.finished:
            raise StreamError(f"{self.label.name} at {self.base_url} ended the stream early")
        yield state.final()

    # -- models -------------------------------------------------------------------------------

    async def list_models(self) -> list[ModelInfo]:
        data = await self._json("GET", "/models")
        entries = data.get("data") if isinstance(data, dict) else None
        out = []
        for entry in entries or []:
            if not isinstance(entry, dict) or not entry.get("id"):
                continue
            ctx = entry.get("max_model_len") or _dict(entry.get("meta")).get("n_ctx_train")
            out.append(
                ModelInfo(
                    name=str(entry["id"]),
                    context_length=ctx if isinstance(ctx, int) else None,
                )
            )
        return out

    async def supports_fim(self, model: str) -> bool:
        if self.fim is not None:
            return self.fim
        return self.preset == "llamacpp"

    async def completion_routes(self, model: str) -> RouteSupport:
        """llama-server (found by `/props`): FIM through `/infill` when a zero-token infill is
        accepted, else raw `/completions`; other local servers: raw `/completions`, FIM there
        only when configured; the OpenAI cloud: chat only (its current models have no
        completions endpoint)."""
        from koma.providers.llamacpp import is_llama_server, probe_infill

        if self.preset == "openai":
            return RouteSupport(False, False, "the OpenAI API serves current models by chat only")
        if await is_llama_server(self):
            ok, problem = await probe_infill(self, model)
            if ok:
                return RouteSupport(
                    True,
                    True,
                    "llama-server: /infill accepts the model (it has FIM tokens)",
                    fim_endpoint="/infill",
                    raw_endpoint="/v1/completions",
                    infill=True,
                )
            return RouteSupport(
                False,
                True,
                f"llama-server: /infill refused ({problem}); raw prompt to /v1/completions",
                raw_endpoint="/v1/completions",
            )
        if self.fim:
            return RouteSupport(
                True,
                True,
                "configured as fill-in-the-middle (/v1/completions with suffix)",
                fim_endpoint="/v1/completions suffix",
                raw_endpoint="/v1/completions",
            )
        return RouteSupport(
            False,
            True,
            f"{self.name} server: no FIM reported; raw prompt to /v1/completions",
            raw_endpoint="/v1/completions",
        )


def encode_response_format(value: str | dict[str, Any]) -> dict[str, Any]:
    """`"json"` or a bare JSON schema in OpenAI's `response_format` shape."""
    if isinstance(value, str):
        return {"type": "json_object"} if value == "json" else {"type": value}
    if value.get("type") in ("json_object", "json_schema", "text"):
        return value
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": value}}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}

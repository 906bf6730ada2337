"""LM Studio: the OpenAI-compatible wire plus its native model list, stats and load API.

LM Studio answers unknown paths with HTTP 200 and `{"error": "Unexpected endpoint…"}`; every
native call here treats such a body as an error (older versions lack the newer endpoints).
"""

from __future__ import annotations

from typing import Any

import httpx

from koma.errors import CapabilityMissing, KomaError, ModelNotFound, ProviderUnreachable
from koma.providers.errortext import ServerLabel
from koma.providers.http import DEFAULT_BACKOFF, DEFAULT_RETRIES
from koma.providers.openai_compat import PRESETS, OpenAICompatProvider, server_root
from koma.types import ModelDetails, ModelInfo

_NO_LOAD_API_HINT = "load it in LM Studio (My Models) or with `lms load MODEL`"


class LMStudioProvider(OpenAICompatProvider):
    """`/v1/*` for generation, `/api/v0/models` for state, `/api/v1/models/*` for load/unload."""

    name = "lmstudio"

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        context_length: int | None = None,
        timeout: httpx.Timeout | float | None = None,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
    ) -> None:
        super().__init__(
            base_url or PRESETS["lmstudio"],
            api_key,
            "lmstudio",
            timeout=timeout,
            retries=retries,
            backoff=backoff,
        )
        self.name = "lmstudio"
        self.context_length = context_length
        self.root = server_root(self.base_url)

    def _make_label(self) -> ServerLabel:
        return ServerLabel(
            "LM Studio",
            self.base_url,
            "start the server in LM Studio (Developer tab) or `lms server start`",
            lambda model: f"download {model} in LM Studio (or `lms get {model}`)",
        )

    async def list_models(self) -> list[ModelInfo]:
        """The native list knows loaded state and context; `/v1/models` is the fallback."""
        try:
            entries = await self._native_models()
        except (ProviderUnreachable, ModelNotFound):
            raise
        except KomaError:
            return await super().list_models()
        return [_info(e) for e in entries if e.get("type") not in ("embeddings", "embedding")]

    async def show(self, model: str) -> ModelDetails:
        """From the native list (ids may hold `/`, so no per-model path is used)."""
        try:
            entries = await self._native_models()
        except (ProviderUnreachable, ModelNotFound):
            raise
        except KomaError:
            return await super().show(model)
        entry = next((e for e in entries if e.get("id") == model), None)
        if entry is None:
            raise ModelNotFound(
                f"model {model!r} is not in LM Studio at {self.base_url}",
                self.label.model_hint(model),
            )
        info = _info(entry)
        return ModelDetails(
            name=model,
            capabilities=info.capabilities,
            architecture=entry.get("arch"),
            context_length=info.context_length,
            model_info=entry,
            quantization=info.quantization,
        )

    async def load(self, model: str, keep_alive: str | int | None = None) -> str:
        """`POST /api/v1/models/load`; LM Studio keeps the model until it is unloaded."""
        body: dict[str, Any] = {"model": model}
        if self.context_length:
            body["context_length"] = self.context_length
        data = await self._lifecycle("/api/v1/models/load", body, model)
        took = data.get("load_time_seconds") if isinstance(data, dict) else None
        suffix = f" in {took * 1000:.0f} ms" if isinstance(took, int | float) else ""
        return f"{model} loaded{suffix}"

    async def unload(self, model: str) -> str:
        """The instance id of a model loaded by key is the key itself."""
        await self._lifecycle("/api/v1/models/unload", {"instance_id": model}, model)
        return f"{model} unloaded"

    async def _lifecycle(self, path: str, body: dict[str, Any], model: str) -> Any:
        try:
            return await self._json("POST", self.root + path, body, model=model)
        except (ProviderUnreachable, ModelNotFound):
            raise
        except KomaError as exc:
            text = exc.message.lower()
            if "unexpected endpoint" in text or getattr(exc, "status", None) in (404, 405):
                raise CapabilityMissing(
                    f"this LM Studio version has no model load API ({path}): {exc.message}",
                    _NO_LOAD_API_HINT,
                ) from exc
            raise

    async def _native_models(self) -> list[dict[str, Any]]:
        data = await self._json("GET", self.root + "/api/v0/models")
        entries = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise KomaError("LM Studio's native model list has an unexpected shape")
        return [e for e in entries if isinstance(e, dict) and e.get("id")]


def _info(entry: dict[str, Any]) -> ModelInfo:
    state = entry.get("state")
    ctx = entry.get("loaded_context_length") or entry.get("max_context_length")
    caps = ["completion"]
    native = entry.get("capabilities")
    if isinstance(native, list) and "tool_use" in native:
        caps.append("tools")
    return ModelInfo(
        name=str(entry["id"]),
        loaded=state == "loaded" if isinstance(state, str) else None,
        quantization=entry.get("quantization"),
        family=entry.get("arch"),
        context_length=ctx if isinstance(ctx, int) else None,
        capabilities=caps,
    )

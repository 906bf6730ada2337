"""Ollama's model-management endpoints: list, load/unload, pull, create, blobs and delete.

Split from `koma.providers.ollama` (which keeps generation) so each stays readable. The mixin
only speaks the wire: it yields the server's own NDJSON status objects for pull and create and
leaves progress arithmetic, Modelfile conversion and memory policy to the engine
(`koma.engine.lifecycle`).

Cancellation: `pull()` and `create()` are async generators holding the response open; closing
them (or cancelling the task iterating them) drops the connection, which stops Ollama's work for
this client (a pull resumes where it left off next time).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from koma.errors import KomaError, ProviderError
from koma.providers.errortext import ServerLabel, transport_error
from koma.providers.http import open_stream
from koma.providers.http_provider import HttpProvider
from koma.providers.stream_records import iter_ndjson
from koma.types import GenerationSettings, ModelDetails, ModelInfo

BLOB_CHUNK_BYTES = 1 << 20


class OllamaAdmin(HttpProvider):
    """Model management for `OllamaProvider`; relies on the attributes that class defines."""

    base_url: str
    keep_alive: str | int | None
    label: ServerLabel
    _client: httpx.AsyncClient
    _show_cache: dict[str, ModelDetails]
    _details_or_none: Callable[[str], Awaitable[ModelDetails | None]]
    planned_options: Callable[
        [str, GenerationSettings, ModelDetails | None], Awaitable[dict[str, Any]]
    ]

    # -- what is installed and loaded ---------------------------------------------------------

    async def list_models(self) -> list[ModelInfo]:
        """Installed models (`/api/tags`) merged with what is in memory (`/api/ps`)."""
        tags, loaded = await asyncio.gather(self._json("GET", "/api/tags"), self._loaded_or_none())
        by_name = {m.name: m for m in loaded or []}
        out: list[ModelInfo] = []
        for entry in models_of(tags):
            info = info_from_entry(entry)
            running = by_name.get(info.name)
            info.loaded = None if loaded is None else running is not None
            if running is not None:
                info.size_vram_bytes = running.size_vram_bytes
                info.expires_at = running.expires_at
                info.context_length = running.context_length or info.context_length
            cached = self._show_cache.get(info.name)
            if cached is not None:
                info.capabilities = info.capabilities or list(cached.capabilities)
                info.context_length = info.context_length or cached.context_length
            out.append(info)
        return out

    async def _loaded_or_none(self) -> list[ModelInfo] | None:
        try:
            return await self.loaded_models()
        except KomaError:
            # Servers before /api/ps existed: installed models with an unknown loaded state.
            return None

    async def loaded_models(self) -> list[ModelInfo]:
        """`/api/ps`: size, size_vram, expiry and the context each model was loaded with."""
        data = await self._json("GET", "/api/ps")
        out = []
        for entry in models_of(data):
            info = info_from_entry(entry)
            info.loaded = True
            out.append(info)
        return out

    # -- load / unload ------------------------------------------------------------------------

    async def load(self, model: str, keep_alive: str | int | None = None) -> str:
        """A `/api/generate` with no prompt loads the model with the context we will use.

        The options (num_ctx above all) are the ones a later chat sends, otherwise Ollama would
        load the model a second time at the first request.
        """
        details = await self._details_or_none(model)
        ka = keep_alive if keep_alive is not None else self.keep_alive
        body: dict[str, Any] = {
            "model": model,
            "stream": False,
            "options": await self.planned_options(model, GenerationSettings(), details),
        }
        if ka is not None:
            body["keep_alive"] = ka
        data = await self._json("POST", "/api/generate", body, model=model)
        load_ns = data.get("load_duration") if isinstance(data, dict) else None
        took = f" in {load_ns / 1e6:.0f} ms" if isinstance(load_ns, int | float) and load_ns else ""
        return f"{model} loaded{took}"

    async def unload(self, model: str) -> str:
        await self._json(
            "POST", "/api/generate", {"model": model, "keep_alive": 0, "stream": False}, model=model
        )
        return f"{model} unloaded"

    # -- pull / create / delete ---------------------------------------------------------------

    async def pull(self, model: str, *, insecure: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Stream `/api/pull` status objects (`status`, `digest`, `total`, `completed`)."""
        body: dict[str, Any] = {"model": model, "stream": True}
        if insecure:
            body["insecure"] = True
        try:
            async for obj in self._status_stream("/api/pull", body, model):
                yield obj
        finally:
            # A newer version may have different capabilities or template: forget the old one.
            self._show_cache.pop(model, None)

    async def create(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Stream `/api/create` with structured fields (`from`, `parameters`, `system`, …)."""
        model = str(body.get("model") or "")
        try:
            async for obj in self._status_stream("/api/create", {**body, "stream": True}, model):
                yield obj
        finally:
            self._show_cache.pop(model, None)  # a re-created name may now be another model

    async def delete(self, model: str) -> None:
        await self._json("DELETE", "/api/delete", {"model": model}, model=model)
        self._show_cache.pop(model, None)

    async def push_blob(self, path: Path) -> str:
        """Upload a local file (GGUF weights or an adapter) once; returns its `sha256:` digest."""
        digest = "sha256:" + await asyncio.to_thread(file_sha256, path)
        try:
            head = await self._client.head(f"/api/blobs/{digest}")
        except httpx.TransportError as exc:
            raise transport_error(exc, self.label, started=False) from exc
        if head.status_code == 200:
            return digest
        try:
            response = await self._client.post(
                f"/api/blobs/{digest}", content=_file_chunks(path), timeout=None
            )
        except httpx.TransportError as exc:
            raise transport_error(exc, self.label, started=False) from exc
        if response.status_code >= 400:
            raise ProviderError(
                f"Ollama at {self.base_url} refused the upload of {path.name} "
                f"({response.status_code}): {response.text.strip()[:300]}",
                status=response.status_code,
            )
        return digest

    async def _status_stream(
        self, path: str, body: dict[str, Any], model: str
    ) -> AsyncIterator[dict[str, Any]]:
        """NDJSON status lines; an `{"error": …}` line is raised, not yielded.

        Not retried once the server has answered: a pull or create that started is never
        repeated behind the caller's back.
        """
        async with open_stream(
            self._client, "POST", path, self.label, json_body=body, model=model, retries=1
        ) as response:
            async for obj in iter_ndjson(response, self.label, model):
                yield obj


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks (weights can be tens of gigabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(BLOB_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, BLOB_CHUNK_BYTES):
            yield chunk


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def models_of(data: Any) -> list[dict[str, Any]]:
    models = data.get("models") if isinstance(data, dict) else None
    return [m for m in models or [] if isinstance(m, dict)]


def info_from_entry(entry: dict[str, Any]) -> ModelInfo:
    details = _dict(entry.get("details"))
    ctx = entry.get("context_length")
    caps = entry.get("capabilities")
    return ModelInfo(
        name=str(entry.get("name") or entry.get("model") or ""),
        size_bytes=entry.get("size"),
        quantization=details.get("quantization_level"),
        family=details.get("family"),
        parameter_size=details.get("parameter_size"),
        context_length=ctx if isinstance(ctx, int) else None,
        capabilities=[str(c) for c in caps] if isinstance(caps, list) else [],
        size_vram_bytes=entry.get("size_vram"),
        expires_at=entry.get("expires_at"),
    )

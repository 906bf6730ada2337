"""Replay answers the model already gave, for requests that would give the same answer again.

`ResponseCache.wrap(provider)` returns a provider that records the wire chunks of every complete
stream and replays them on a hit. The key covers everything that changes the output: provider,
base URL, model, every field of every message, every generation setting except
`streaming_buffer_size` and `keep_alive`, the tools and the response format. By default only
deterministic requests (temperature 0 or a fixed seed) are cached — a sampled answer is
supposed to differ; `mode="always"` caches them too, `mode="off"` nothing.

A stream that was cut short (the caller stopped reading, the server failed) is never stored,
so a hit always replays a whole answer. Entries live in an in-memory LRU and, with
`persistent=True`, in a small sqlite file under the user cache directory as well. The sqlite
file is read and written in a worker thread: a commit waits for the disk (and for another Koma
process holding the lock), which must not stall the editor's event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import platformdirs

from koma.engine.cache_store import SqliteStore, chunk_from_json, chunk_to_json
from koma.providers.base import ChatRequest, CompletionRequest, Provider, RouteSupport, WireChunk
from koma.types import GenerationSettings, ModelDetails, ModelInfo

CacheMode = Literal["off", "deterministic", "always"]
# Set in `WireChunk.raw` of replayed chunks, so timings are not read as the server's speed.
CACHE_HIT = "koma_cache_hit"
STORE_FILE = "responses.sqlite3"
# Settings that change how an answer is delivered or kept in memory, not what it says.
_DELIVERY_SETTINGS = frozenset({"streaming_buffer_size", "keep_alive"})

log = logging.getLogger(__name__)


@dataclasses.dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    entries: int = 0

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class ResponseCache:
    """In-memory LRU of complete answers, optionally backed by a persistent store."""

    _shared: ClassVar[ResponseCache | None] = None

    def __init__(
        self,
        max_entries: int = 512,
        persistent: bool = False,
        path: str | Path | None = None,
        mode: CacheMode = "deterministic",
    ) -> None:
        self.mode: CacheMode = mode
        self.max_entries = max_entries
        self._memory: OrderedDict[str, str] = OrderedDict()
        self._store: SqliteStore | None = None
        self._hits = 0
        self._misses = 0
        self._path = Path(path) if path is not None else None
        if persistent:
            self._store = SqliteStore(self._store_dir() / STORE_FILE)

    @classmethod
    def local_model_cache(cls) -> ResponseCache:
        """The process-wide cache for local models, shared by every caller in this process."""
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def configure(
        self,
        *,
        mode: CacheMode | None = None,
        max_entries: int | None = None,
        persistent: bool | None = None,
    ) -> None:
        """Apply changed settings (e.g. the editor's `cache` section) without losing entries."""
        if mode is not None:
            self.mode = mode
        if max_entries is not None:
            self.max_entries = max_entries
            self._evict()
        if persistent is True and self._store is None:
            self._store = SqliteStore(self._store_dir() / STORE_FILE)
        elif persistent is False and self._store is not None:
            self._store.close()
            self._store = None

    def wrap(self, provider: Provider) -> Provider:
        """A provider that answers from this cache when it can, and fills it otherwise."""
        return CachedProvider(provider, self)

    # -- keys --------------------------------------------------------------------------------

    def cacheable(self, settings: GenerationSettings) -> bool:
        if self.mode == "off" or self.max_entries <= 0:
            return False
        return self.mode == "always" or settings.is_deterministic()

    @staticmethod
    def chat_key(provider: Provider, request: ChatRequest) -> str:
        return _digest(
            "chat",
            provider,
            request.model,
            request.settings,
            messages=[dataclasses.asdict(m) for m in request.messages],
            tools=request.tools,
            response_format=request.response_format,
        )

    @staticmethod
    def completion_key(provider: Provider, request: CompletionRequest) -> str:
        return _digest(
            "completion",
            provider,
            request.model,
            request.settings,
            prompt=request.prompt,
            suffix=request.suffix,
            system=request.system,
            raw=request.raw,
        )

    # -- entries -----------------------------------------------------------------------------

    async def lookup(self, key: str) -> list[WireChunk] | None:
        """The recorded chunks for `key`, counting a hit or a miss."""
        blob = self._memory.get(key)
        store = self._store
        if blob is not None:
            self._memory.move_to_end(key)
        elif store is not None:
            blob = await asyncio.to_thread(store.get, key)
            if blob is not None:
                self._remember(key, blob)
        if blob is None:
            self._misses += 1
            return None
        try:
            chunks = [chunk_from_json(item) for item in json.loads(blob)]
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            # A store written by another Koma version (or damaged) is a miss, never a crash.
            log.warning("dropping an unreadable cache entry: %s", err)
            self._memory.pop(key, None)
            if store is not None:
                await asyncio.to_thread(store.delete, key)
            self._misses += 1
            return None
        self._hits += 1
        return chunks

    async def store(self, key: str, chunks: list[WireChunk]) -> None:
        blob = json.dumps([chunk_to_json(c) for c in chunks], ensure_ascii=False, default=str)
        self._remember(key, blob)
        store = self._store
        if store is not None:
            await asyncio.to_thread(store.put, key, blob, self.max_entries)

    def clear(self) -> int:
        """Drop every entry (memory and persistent); returns how many there were."""
        keys = set(self._memory)
        if self._store is not None:
            keys |= self._store.clear()
        self._memory.clear()
        return len(keys)

    @property
    def stats(self) -> CacheStats:
        entries = len(self._memory)
        if self._store is not None:
            entries = max(entries, self._store.count())
        return CacheStats(self._hits, self._misses, entries)

    def _remember(self, key: str, blob: str) -> None:
        self._memory[key] = blob
        self._memory.move_to_end(key)
        self._evict()

    def _evict(self) -> None:
        while len(self._memory) > max(self.max_entries, 0):
            self._memory.popitem(last=False)

    def _store_dir(self) -> Path:
        return self._path if self._path is not None else Path(platformdirs.user_cache_dir("koma"))


class CachedProvider(Provider):
    """Delegates to `inner`; `chat()` and `complete()` go through the cache."""

    def __init__(self, inner: Provider, cache: ResponseCache) -> None:
        self.inner = inner
        self.cache = cache
        self.name = inner.name
        self.base_url = inner.base_url

    def chat(self, request: ChatRequest) -> AsyncIterator[WireChunk]:
        cacheable = self.cache.cacheable(request.settings)
        key = self.cache.chat_key(self.inner, request) if cacheable else None
        return self._through(key, lambda: self.inner.chat(request))

    def complete(self, request: CompletionRequest) -> AsyncIterator[WireChunk]:
        cacheable = self.cache.cacheable(request.settings)
        key = self.cache.completion_key(self.inner, request) if cacheable else None
        return self._through(key, lambda: self.inner.complete(request))

    async def _through(
        self, key: str | None, open_wire: Callable[[], AsyncIterator[WireChunk]]
    ) -> AsyncGenerator[WireChunk, None]:
        replay = await self.cache.lookup(key) if key is not None else None
        if replay is not None:
            for chunk in replay:
                chunk.raw = {**(chunk.raw or {}), CACHE_HIT: True}
                yield chunk
            return
        recorded: list[WireChunk] = []
        wire = open_wire()
        try:
            async for chunk in wire:
                if key is not None:
                    recorded.append(chunk)
                yield chunk
        finally:
            # Closing this generator closes the provider's (and its HTTP response) at once.
            aclose = getattr(wire, "aclose", None)
            if aclose is not None:
                await aclose()
        # Reached only when the stream ran to its end: a cut-short answer is never stored.
        if key is not None:
            await self.cache.store(key, recorded)

    async def list_models(self) -> list[ModelInfo]:
        return await self.inner.list_models()

    async def show(self, model: str) -> ModelDetails:
        return await self.inner.show(model)

    async def version(self) -> str | None:
        return await self.inner.version()

    async def ping(self) -> bool:
        return await self.inner.ping()

    async def supports_fim(self, model: str) -> bool:
        return await self.inner.supports_fim(model)

    async def completion_routes(self, model: str) -> RouteSupport:
        return await self.inner.completion_routes(model)

    async def loaded_models(self) -> list[ModelInfo]:
        return await self.inner.loaded_models()

    async def load(self, model: str, keep_alive: str | int | None = None) -> str:
        return await self.inner.load(model, keep_alive)

    async def unload(self, model: str) -> str:
        return await self.inner.unload(model)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:
        # Provider-specific extras (e.g. LM Studio's native model list) stay reachable.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def _digest(
    kind: str, provider: Provider, model: str, settings: GenerationSettings, **fields: Any
) -> str:
    doc = {
        "kind": kind,
        "provider": provider.name,
        "base_url": provider.base_url,
        "model": model,
        "settings": settings.model_dump(mode="json", exclude=set(_DELIVERY_SETTINGS)),
        **fields,
    }
    blob = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=repr)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()

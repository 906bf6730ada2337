"""A provider that knows what is in flight on it, so a replaced one is closed once idle.

The language server's `Session` swaps its provider when the settings that shape it change
(`session.PROVIDER_KEYS`). The old one may still be streaming an answer, running a call or
serving a chat turn between two tool steps; closing it at once would cut those off, and
keeping it open until shutdown holds its connections for hours. So every call, every stream
while it is open and every `Session.use()` block counts, and a retired provider closes itself
when the count drops to zero. A call that starts on it once it is retired fails with
`ProviderRetired` instead of reaching the server the user moved away from — also while another
stream on it is still finishing — unless it belongs to work that held the provider before the
change (a `Session.use()` block: a chat turn's next tool step).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from koma.errors import KomaError
from koma.providers.base import (
    ChatRequest,
    CompletionRequest,
    Provider,
    RouteSupport,
    WireChunk,
)
from koma.types import ModelDetails, ModelInfo

logger = logging.getLogger(__name__)

# The providers the running task holds with `InFlightProvider.held()` (inherited by the tasks
# it starts): a retired one still serves them, and only them.
_HELD: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "koma_held_providers", default=frozenset()
)


class ProviderRetired(KomaError):
    """A request started on a provider that a settings change has replaced and closed."""


class InFlightProvider(Provider):
    """A provider that counts what is in flight on it, so a retired one closes when idle.

    Every call, every stream (while it is open) and every `Session.use()` block counts. Extras
    of a provider (`pull`, `create`, …) are reached through `__getattr__` and counted too.
    """

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.name = inner.name
        self.base_url = inner.base_url
        self.in_flight = 0
        self.retired = False
        self._closing: asyncio.Task[None] | None = None

    @property
    def closed(self) -> bool:
        return self._closing is not None and self._closing.done()

    def enter(self) -> None:
        if self._closing is not None or (self.retired and id(self) not in _HELD.get()):
            raise ProviderRetired(
                f"the connection to {self.name} at {self.base_url} was closed after a "
                "settings change",
                "try again: the next request uses the new settings",
            )
        self.in_flight += 1

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the provider for a block of work: counted as in flight, and its calls still
        reach this provider after it is retired (the rest of a chat turn ends where it began)."""
        self.enter()
        token = _HELD.set(_HELD.get() | {id(self)})
        try:
            yield
        finally:
            _HELD.reset(token)
            self.leave()

    def leave(self) -> None:
        self.in_flight -= 1
        if self.retired and self.in_flight == 0:
            self._schedule_close()

    def retire(self) -> None:
        self.retired = True
        if self.in_flight == 0:
            self._schedule_close()

    def _schedule_close(self) -> None:
        if self._closing is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a session dropped outside one): `aclose()` closes it
        self._closing = loop.create_task(self._close())

    async def _close(self) -> None:
        try:
            await self.inner.aclose()
        except Exception as err:
            logger.debug("closing a retired provider failed: %s", err)

    async def close_now(self) -> None:
        """Close now, whatever is in flight (the session's end); waits for a close begun."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await self._closing

    async def _call(self, method: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        self.enter()
        try:
            return await method(*args)
        finally:
            self.leave()

    async def _stream(
        self, open_stream: Callable[[], AsyncIterator[Any]]
    ) -> AsyncGenerator[Any, None]:
        self.enter()
        try:
            stream = open_stream()
            try:
                async for item in stream:
                    yield item
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()
        finally:
            self.leave()

    def chat(self, request: ChatRequest) -> AsyncIterator[WireChunk]:
        return self._stream(lambda: self.inner.chat(request))

    def complete(self, request: CompletionRequest) -> AsyncIterator[WireChunk]:
        return self._stream(lambda: self.inner.complete(request))

    async def list_models(self) -> list[ModelInfo]:
        result: list[ModelInfo] = await self._call(self.inner.list_models)
        return result

    async def show(self, model: str) -> ModelDetails:
        result: ModelDetails = await self._call(self.inner.show, model)
        return result

    async def version(self) -> str | None:
        result: str | None = await self._call(self.inner.version)
        return result

    async def ping(self) -> bool:
        try:
            return bool(await self._call(self.inner.ping))
        except ProviderRetired:
            return False

    async def supports_fim(self, model: str) -> bool:
        return bool(await self._call(self.inner.supports_fim, model))

    async def completion_routes(self, model: str) -> RouteSupport:
        result: RouteSupport = await self._call(self.inner.completion_routes, model)
        return result

    async def loaded_models(self) -> list[ModelInfo]:
        result: list[ModelInfo] = await self._call(self.inner.loaded_models)
        return result

    async def load(self, model: str, keep_alive: str | int | None = None) -> str:
        result: str = await self._call(self.inner.load, model, keep_alive)
        return result

    async def unload(self, model: str) -> str:
        result: str = await self._call(self.inner.unload, model)
        return result

    async def aclose(self) -> None:
        await self.close_now()

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        value = getattr(self.inner, name)
        if inspect.isasyncgenfunction(value):
            return lambda *args, **kwargs: self._stream(lambda: value(*args, **kwargs))
        if inspect.iscoroutinefunction(value):
            return lambda *args, **kwargs: self._call(lambda: value(*args, **kwargs))
        return value

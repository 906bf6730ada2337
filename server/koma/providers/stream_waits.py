"""The two waits that bound a streamed answer, and the "loading model…" signal between them.

A model server may take minutes before its first byte (loading a 120b model, reading a long
prompt) and must then keep the answer flowing; httpx knows only one read timeout, which is
either too short for the first case or far too long for the second. So a streamed request
waits `first_byte` seconds for its headers and first body byte, then at most `idle` seconds
between chunks, and each wait ends in its own typed error naming the setting that raises it
(`firstByteTimeoutSeconds`, `idleTimeoutSeconds`). Both hold wherever the stream is read:
editor, CLI and Python API alike. A first byte that is late is reported through
`first_byte_watch`, so the editor can say "loading model…" instead of looking stuck.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass

import httpx

from koma.errors import FirstByteTimeout, IdleTimeout
from koma.providers.errortext import ServerLabel, transport_error

logger = logging.getLogger("koma.providers.stream_waits")

# The two waits of a streamed answer (settings `firstByteTimeoutSeconds`, `idleTimeoutSeconds`).
# Idle: generous enough for Ollama, which holds back a gpt-oss tool call until it is complete.
DEFAULT_FIRST_BYTE_SECONDS = 600.0
DEFAULT_IDLE_SECONDS = 60.0


@dataclass(frozen=True)
class StreamTimeouts:
    """How long a streamed answer may keep the caller waiting, in seconds.

    `first_byte` runs from sending the request to the first byte of the body (it covers loading
    the model and reading the prompt); `idle` is the longest silence between two chunks after
    that. Both hold wherever the stream is read: editor, CLI and Python API alike.
    """

    first_byte: float = DEFAULT_FIRST_BYTE_SECONDS
    idle: float = DEFAULT_IDLE_SECONDS

    @classmethod
    def from_timeout(cls, timeout: httpx.Timeout | float | None) -> StreamTimeouts:
        """The waits implied by a provider's `timeout=` argument (its read timeout)."""
        read = timeout.read if isinstance(timeout, httpx.Timeout) else timeout
        if read is None:
            return cls()
        return cls(first_byte=float(read), idle=min(DEFAULT_IDLE_SECONDS, float(read)))


def _seconds(value: float) -> str:
    return f"{value:g}"


def first_byte_timeout(label: ServerLabel, seconds: float) -> FirstByteTimeout:
    """The server has not begun its answer within the model-loading allowance."""
    return FirstByteTimeout(
        f"{label.name} at {label.base_url} sent nothing for {_seconds(seconds)} s"
        " (waiting for the first byte, firstByteTimeoutSeconds)",
        "the model may still be loading: try again, or raise firstByteTimeoutSeconds",
    )


def idle_timeout(label: ServerLabel, seconds: float) -> IdleTimeout:
    """The answer began and then stopped flowing."""
    return IdleTimeout(
        f"{label.name} at {label.base_url} stalled mid-answer: nothing for {_seconds(seconds)} s"
        " (idleTimeoutSeconds)",
        "the server may be stuck or overloaded: try again, or raise idleTimeoutSeconds",
    )


# A caller that can show "loading model…" (the language server's status bar) sets this for the
# duration of a generation: it is called with True once the first byte is late, and with False
# when the wait is over (the answer started, or the request ended either way).
first_byte_watch: ContextVar[Callable[[bool], None] | None] = ContextVar(
    "koma_first_byte_watch", default=None
)
# A first byte later than this counts as "loading": quicker answers never flicker the status.
LOADING_AFTER_SECONDS = 1.0


class _LoadingSignal:
    """Tells `first_byte_watch` that the model seems to be loading, and when it no longer is."""

    def __init__(self) -> None:
        self._watch = first_byte_watch.get()
        self._shown = False
        self._timer: asyncio.TimerHandle | None = None
        if self._watch is not None:
            self._timer = asyncio.get_running_loop().call_later(LOADING_AFTER_SECONDS, self._show)

    def _show(self) -> None:
        self._shown = True
        self._call(True)

    def _call(self, loading: bool) -> None:
        try:
            if self._watch is not None:
                self._watch(loading)
        except Exception:  # a status bar must never break the stream
            logger.debug("first-byte watcher failed", exc_info=True)

    def over(self) -> None:
        """The first byte came, or the request ended: stop the timer, undo what was shown."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._shown:
            self._shown = False
            self._call(False)


class _TimedStream(httpx.AsyncByteStream):
    """A response body whose every read is bounded: by the first-byte deadline until the first
    byte arrives, by the idle timeout after that. Transport failures become typed errors here,
    where it is known whether the answer had started."""

    def __init__(
        self,
        inner: httpx.AsyncByteStream,
        label: ServerLabel,
        timeouts: StreamTimeouts,
        deadline: float,
        loading: _LoadingSignal,
    ) -> None:
        self._inner = inner
        self._label = label
        self._timeouts = timeouts
        self._deadline = deadline
        self._loading = loading

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._chunks():
                self._loading.over()
                yield chunk
        finally:
            self._loading.over()

    async def _chunks(self) -> AsyncIterator[bytes]:
        started = False
        chunks = self._inner.__aiter__()
        while True:
            try:
                if started:
                    async with asyncio.timeout(self._timeouts.idle):
                        chunk = await anext(chunks)
                else:
                    async with asyncio.timeout_at(self._deadline):
                        chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except (TimeoutError, httpx.TimeoutException) as exc:
                if started:
                    raise idle_timeout(self._label, self._timeouts.idle) from exc
                raise first_byte_timeout(self._label, self._timeouts.first_byte) from exc
            except httpx.TransportError as exc:
                raise transport_error(exc, self._label, started=True) from exc
            if chunk:
                started = True
                yield chunk

    async def aclose(self) -> None:
        self._loading.over()
        await self._inner.aclose()


def request_timeout(client: httpx.AsyncClient, timeouts: StreamTimeouts) -> httpx.Timeout:
    """httpx's own read timeout only as a backstop behind the two waits."""
    base = client.timeout
    read = max(timeouts.first_byte, timeouts.idle) + 1.0
    return httpx.Timeout(connect=base.connect, read=read, write=base.write, pool=base.pool)


async def send_timed(
    client: httpx.AsyncClient,
    request: httpx.Request,
    label: ServerLabel,
    timeouts: StreamTimeouts,
) -> httpx.Response:
    """Send a streamed request whose headers and first body byte must come within
    `timeouts.first_byte` seconds, and whose body may then fall silent for at most
    `timeouts.idle` seconds at a time; a wait that runs out raises its typed error."""
    deadline = asyncio.get_running_loop().time() + timeouts.first_byte
    loading = _LoadingSignal()
    try:
        async with asyncio.timeout_at(deadline):
            response = await client.send(request, stream=True)
    except TimeoutError as exc:
        loading.over()
        raise first_byte_timeout(label, timeouts.first_byte) from exc
    except BaseException:
        loading.over()
        raise
    if isinstance(response.stream, httpx.AsyncByteStream):
        response.stream = _TimedStream(response.stream, label, timeouts, deadline, loading)
    else:
        loading.over()
    return response

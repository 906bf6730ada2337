"""Shared HTTP plumbing for the providers: clients, error mapping, retries, stream readers.

Every provider talks to a server through the same few rules, kept here so they cannot drift:

- a client with a short connect timeout (a dead server is noticed fast) and a long read timeout
  (a 120b model may take minutes to load before its first token);
- server errors become typed, actionable `KomaError`s, whatever shape the server chose
  (HTTP status, `{"error": "…"}`, `{"error": {"message": …}}`, or an HTTP-200 error body);
- retries with backoff happen only *before* the first byte of an answer: a generation that has
  started is never repeated behind the caller's back;
- the response is closed as soon as the consumer stops iterating, so the server stops generating;
- two waits bound a streamed answer: a long one for its first byte (a model loading) and a short
  one between chunks once it flows (a stalled server); each ends in its own typed error;
- a server's error text reaches the user as one line (tags stripped, whitespace collapsed, cut
  short, the status kept; `errortext.py` reduces and classifies it); the whole body goes to the
  debug log.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpx

from koma.errors import (
    FirstByteTimeout,
    IdleTimeout,
    KomaError,
    ProviderError,
    ProviderTimeout,
    ProviderUnreachable,
    StreamError,
)
from koma.providers.errortext import classify_error, error_message, one_line, text_of
from koma.providers.wire import cut

logger = logging.getLogger("koma.providers.http")

# Connect fast, but wait long for the first token: loading a large model can take minutes.
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=600.0, write=60.0, pool=30.0)
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 0.2
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


@dataclass(frozen=True)
class ServerLabel:
    """How to name a server and what to tell the user when it misbehaves."""

    name: str
    base_url: str
    start_hint: str
    model_hint: Callable[[str], str]

    def unreachable(self, detail: str = "") -> ProviderUnreachable:
        suffix = f" ({detail})" if detail else ""
        return ProviderUnreachable(
            f"{self.name} is not reachable at {self.base_url}{suffix}", self.start_hint
        )


def make_client(
    base_url: str,
    *,
    headers: dict[str, str] | None = None,
    timeout: httpx.Timeout | float | None = None,
) -> httpx.AsyncClient:
    """A pooled client; environment proxies are ignored because the servers are local."""
    return httpx.AsyncClient(
        base_url=base_url,
        headers=headers,
        timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
        trust_env=False,
    )


def _is_loading(err: KomaError) -> bool:
    return isinstance(err, ProviderError) and err.status == 503


def transport_error(exc: httpx.TransportError, label: ServerLabel, started: bool) -> KomaError:
    """Map httpx's transport failures: refused/DNS → unreachable, timeouts → timeout."""
    if isinstance(exc, httpx.ConnectTimeout):
        return label.unreachable("connection timed out")
    if isinstance(exc, httpx.ConnectError):
        return label.unreachable(str(exc) or type(exc).__name__)
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeout(
            f"{label.name} at {label.base_url} stopped answering ({type(exc).__name__})",
            "the model may still be loading; try again or raise the timeout",
        )
    if started:
        return StreamError(f"{label.name} broke the stream: {_transport_detail(exc)}")
    return ProviderError(
        f"{label.name} closed the connection: {_transport_detail(exc)}", None, None, True
    )


def _transport_detail(exc: httpx.TransportError) -> str:
    """httpx's own words on one line; a reset often comes without any."""
    text = one_line(str(exc))
    return text or f"the connection was reset or closed ({type(exc).__name__})"


def _json_error(response: httpx.Response, raw: bytes) -> str | None:
    """The message of an HTTP-200 JSON body that is really an error (LM Studio's quirk)."""
    if "json" not in response.headers.get("content-type", "") and not raw.lstrip().startswith(b"{"):
        return None
    try:
        return error_message(json.loads(raw))
    except ValueError:
        return None


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


def _request_timeout(client: httpx.AsyncClient, timeouts: StreamTimeouts) -> httpx.Timeout:
    """httpx's own read timeout only as a backstop behind the two waits."""
    base = client.timeout
    read = max(timeouts.first_byte, timeouts.idle) + 1.0
    return httpx.Timeout(connect=base.connect, read=read, write=base.write, pool=base.pool)


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    label: ServerLabel,
    *,
    json_body: Any = None,
    model: str | None = None,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF,
    timeouts: StreamTimeouts | None = None,
) -> AsyncIterator[httpx.Response]:
    """Open a streamed request, retrying only until the server starts a successful answer.

    The response is closed when the `async with` block ends for any reason (including the
    consumer's `aclose()` or task cancellation), which drops the connection mid-body and so
    stops the server's generation. With `timeouts`, the headers and the first body byte must
    arrive within `first_byte` seconds of sending, and the body may then fall silent for at
    most `idle` seconds at a time.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            if timeouts is None:
                request = client.build_request(method, path, json=json_body)
                response = await client.send(request, stream=True)
            else:
                request = client.build_request(
                    method, path, json=json_body, timeout=_request_timeout(client, timeouts)
                )
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
                    response.stream = _TimedStream(
                        response.stream, label, timeouts, deadline, loading
                    )
                else:
                    loading.over()
        except httpx.TimeoutException as exc:
            if timeouts is not None and not isinstance(exc, httpx.ConnectTimeout):
                raise first_byte_timeout(label, timeouts.first_byte) from exc
            raise transport_error(exc, label, started=False) from exc
        except httpx.TransportError as exc:
            err = transport_error(exc, label, started=False)
            # Refused connections are retried (a server starting up); a connect timeout is not,
            # it already waited long enough.
            if attempt < retries and isinstance(exc, httpx.ConnectError):
                await asyncio.sleep(backoff * 2 ** (attempt - 1))
                continue
            raise err from exc
        if response.status_code >= 400:
            try:
                raw = await response.aread()
            except (httpx.HTTPError, KomaError):
                raw = b""
            finally:
                await response.aclose()
            logger.debug(
                "%s answered %s to %s %s: %s",
                label.name,
                response.status_code,
                method,
                path,
                raw.decode("utf-8", "replace"),
            )
            err = classify_error(text_of(raw), response.status_code, label, model)
            # A 503 means "still loading": worth asking again; any other status is final.
            if attempt < retries and _is_loading(err):
                await asyncio.sleep(backoff * 2 ** (attempt - 1))
                continue
            raise err
        break
    try:
        yield response
    except httpx.TransportError as exc:
        raise transport_error(exc, label, started=True) from exc
    except httpx.DecodingError as exc:  # a body that does not match its Content-Encoding
        raise StreamError(f"{label.name} sent a body that cannot be decoded: {exc}") from exc
    finally:
        await response.aclose()


async def request_json(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    label: ServerLabel,
    *,
    json_body: Any = None,
    model: str | None = None,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF,
) -> Any:
    """A small non-streamed JSON call; an HTTP-200 `{"error": …}` body is raised, not returned."""
    async with open_stream(
        client,
        method,
        path,
        label,
        json_body=json_body,
        model=model,
        retries=retries,
        backoff=backoff,
    ) as response:
        raw = await response.aread()
    found = _json_error(response, raw)
    if found is not None:
        raise classify_error(found, response.status_code, label, model)
    if not raw.strip():
        return None
    try:
        return json.loads(raw.removeprefix(codecs.BOM_UTF8))
    except ValueError as exc:
        raise ProviderError(
            f"{label.name} at {label.base_url} sent something that is not JSON for {path}: "
            f"{_quote(raw.decode('utf-8', 'replace'))}"
        ) from exc


def _stream_error(message: str, label: ServerLabel, model: str | None) -> StreamError:
    """An error inside an HTTP-200 stream; keeps the specific hint (context, capability…)."""
    message = one_line(message)
    specific = classify_error(message, None, label, model)
    return StreamError(f"{label.name} reported an error mid-stream: {message}", specific.hint)


async def _lines(response: httpx.Response) -> AsyncIterator[str]:
    """The body's lines, a UTF-8 byte-order mark before the first one dropped."""
    first = True
    async for line in response.aiter_lines():
        if first:
            line = line.lstrip("\ufeff")
            first = False
        yield line


def _quote(text: str) -> str:
    """A piece of a bad record for an error message: short, on one line, tags stripped."""
    if text.lstrip().startswith("<"):
        return repr(one_line(text, 120)) if one_line(text) else "an HTML page"
    return repr(cut(text, 120))


def _not_json(label: ServerLabel, response: httpx.Response, what: str, text: str) -> StreamError:
    """A record that does not parse: name the content type, which usually tells why."""
    content_type = response.headers.get("content-type", "").split(";")[0].strip() or "no type"
    return StreamError(
        f"{label.name} sent {what} that is not JSON ({content_type}): {_quote(text)}"
    )


async def iter_ndjson(
    response: httpx.Response, label: ServerLabel, model: str | None = None
) -> AsyncIterator[dict[str, Any]]:
    """One JSON object per line; an `{"error": …}` line is raised as `StreamError`."""
    async for line in _lines(response):
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise _not_json(label, response, "a line", line) from exc
        if not isinstance(obj, dict):
            raise StreamError(f"{label.name} sent an unexpected line: {_quote(line)}")
        found = error_message(obj)
        if found is not None:
            raise _stream_error(found, label, model)
        yield obj


# Yielded once when an SSE stream ends with `[DONE]`; compare by identity.
SSE_DONE: dict[str, Any] = {}


async def iter_sse(
    response: httpx.Response, label: ServerLabel, model: str | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Decoded `data:` payloads of a server-sent-event stream, then `SSE_DONE` at `[DONE]`.

    An `event: error`, a data payload holding `"error"`, or a bare JSON error body where events
    were expected (LM Studio answers unknown paths with HTTP 200 JSON) are all raised.
    """
    content_type = response.headers.get("content-type", "")
    if "json" in content_type and "event-stream" not in content_type:
        # Not a stream: an HTTP-200 error body, or a server that ignored `stream: true`.
        raw = (await response.aread()).removeprefix(codecs.BOM_UTF8)
        found = _json_error(response, raw)
        if found is not None:
            raise classify_error(found, response.status_code, label, model)
        try:
            whole = json.loads(raw)
        except ValueError as exc:
            text = raw.decode("utf-8", "replace")
            raise _not_json(label, response, "a body", text) from exc
        if isinstance(whole, dict):
            yield whole
        yield SSE_DONE
        return
    event = ""
    data: list[str] = []
    async for line in _lines(response):
        if line.startswith(":"):
            continue
        if line == "":
            if data:
                payload = "\n".join(data)
                if payload.strip() == "[DONE]":
                    yield SSE_DONE
                    return
                obj = _decode_event(payload, event, label, model)
                if obj is not None:
                    yield obj
            event, data = "", []
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value.strip()
        elif line.lstrip().startswith("{"):
            # A bare JSON line inside an event stream: some servers report errors this way.
            obj = _decode_event(line, event, label, model)
            if obj is not None:
                yield obj
    if data:
        payload = "\n".join(data)
        if payload.strip() == "[DONE]":
            yield SSE_DONE
            return
        obj = _decode_event(payload, event, label, model)
        if obj is not None:
            yield obj


def _decode_event(
    payload: str, event: str, label: ServerLabel, model: str | None
) -> dict[str, Any] | None:
    try:
        obj = json.loads(payload)
    except ValueError as exc:
        if event == "error":
            raise _stream_error(payload, label, model) from exc
        raise StreamError(
            f"{label.name} sent an event that is not JSON: {_quote(payload)}"
        ) from exc
    found = error_message(obj) if isinstance(obj, dict) else None
    if event == "error" and found is None:
        found = payload
    if found is not None:
        raise _stream_error(found, label, model)
    return obj if isinstance(obj, dict) else None


def decode_arguments(value: Any) -> dict[str, Any] | str:
    """Tool-call arguments as an object when they are a JSON object, else the raw text."""
    if isinstance(value, dict):
        return value
    if value is None:
        return {}
    if not isinstance(value, str):
        return json.dumps(value)
    if not value.strip():
        return {}
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    return decoded if isinstance(decoded, dict) else value

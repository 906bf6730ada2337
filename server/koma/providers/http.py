"""The HTTP client every provider uses: one client shape, retries, and the response's life.

Every provider talks to a server through the same few rules, kept here so they cannot drift:

- a client with a short connect timeout (a dead server is noticed fast) and a long read timeout
  (a 120b model may take minutes to load before its first token);
- retries with backoff happen only *before* the first byte of an answer: a generation that has
  started is never repeated behind the caller's back;
- the response is closed as soon as the consumer stops iterating, so the server stops generating;
- a server's error status or body becomes a typed, one-line `KomaError` (`errortext.py` words
  and classifies it); the whole body goes to the debug log.

The two waits that bound a streamed answer are in `stream_waits.py`; reading its body as NDJSON
or SSE records is in `stream_records.py`.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from koma.errors import KomaError, ProviderError, StreamError
from koma.providers.errortext import (
    ServerLabel,
    classify_error,
    json_error,
    quote,
    text_of,
    transport_error,
)
from koma.providers.stream_waits import (
    StreamTimeouts,
    first_byte_timeout,
    request_timeout,
    send_timed,
)

logger = logging.getLogger("koma.providers.http")

# Connect fast, but wait long for the first token: loading a large model can take minutes.
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=600.0, write=60.0, pool=30.0)
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 0.2


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
                    method, path, json=json_body, timeout=request_timeout(client, timeouts)
                )
                response = await send_timed(client, request, label, timeouts)
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
    found = json_error(response, raw)
    if found is not None:
        raise classify_error(found, response.status_code, label, model)
    if not raw.strip():
        return None
    try:
        return json.loads(raw.removeprefix(codecs.BOM_UTF8))
    except ValueError as exc:
        raise ProviderError(
            f"{label.name} at {label.base_url} sent something that is not JSON for {path}: "
            f"{quote(raw.decode('utf-8', 'replace'))}"
        ) from exc

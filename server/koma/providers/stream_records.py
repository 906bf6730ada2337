"""A streamed body read as records: NDJSON lines (Ollama) and server-sent events (OpenAI's wire).

Both wires can carry an error where an answer was expected — an `{"error": …}` line, an
`event: error`, a bare JSON error body where events were due, a record that is not JSON (a
proxy's HTML page) — and each becomes one `StreamError` naming the server and quoting a short
piece of what it sent, never text shown as the answer. Validating a record's fields is the
next step (`wire.py`); timing the body is the one before (`stream_waits.py`).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from koma.errors import StreamError
from koma.providers.errortext import (
    ServerLabel,
    classify_error,
    error_message,
    json_error,
    one_line,
    quote,
)


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


def _not_json(label: ServerLabel, response: httpx.Response, what: str, text: str) -> StreamError:
    """A record that does not parse: name the content type, which usually tells why."""
    content_type = response.headers.get("content-type", "").split(";")[0].strip() or "no type"
    return StreamError(f"{label.name} sent {what} that is not JSON ({content_type}): {quote(text)}")


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
            raise StreamError(f"{label.name} sent an unexpected line: {quote(line)}")
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
        found = json_error(response, raw)
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
                obj = _dispatch(data, event, label, model)
                if obj is not None:
                    yield obj
                if obj is SSE_DONE:
                    return
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
    if data:  # the stream ended without the blank line that closes its last event
        obj = _dispatch(data, event, label, model)
        if obj is not None:
            yield obj


def _dispatch(
    data: list[str], event: str, label: ServerLabel, model: str | None
) -> dict[str, Any] | None:
    """One event's `data:` lines joined: `SSE_DONE` at `[DONE]`, else the decoded payload."""
    payload = "\n".join(data)
    if payload.strip() == "[DONE]":
        return SSE_DONE
    return _decode_event(payload, event, label, model)


def _decode_event(
    payload: str, event: str, label: ServerLabel, model: str | None
) -> dict[str, Any] | None:
    try:
        obj = json.loads(payload)
    except ValueError as exc:
        if event == "error":
            raise _stream_error(payload, label, model) from exc
        raise StreamError(f"{label.name} sent an event that is not JSON: {quote(payload)}") from exc
    found = error_message(obj) if isinstance(obj, dict) else None
    if event == "error" and found is None:
        found = payload
    if found is not None:
        raise _stream_error(found, label, model)
    return obj if isinstance(obj, dict) else None

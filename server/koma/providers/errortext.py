"""A model server's failures as the user sees them: one line, the most specific typed error.

Servers say what went wrong in many shapes (`{"error": "…"}`, `{"error": {"message": …}}`,
`{"detail": …}`, a proxy's HTML page, a multi-line traceback, an HTTP-200 body that is really
an error) or not at all (a refused connection, a reset); the user gets one line (tags
stripped, whitespace collapsed, cut short, the status kept) naming the server (`ServerLabel`),
and a `KomaError` subclass the engine can act on (unreachable, timeout, context overflow,
missing capability, unknown model, bad key, retryable). `http.py` and the stream modules find
these failures; this module is the one place that words and types them.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from koma.errors import (
    CapabilityMissing,
    ContextOverflow,
    KomaError,
    ModelNotFound,
    ProviderError,
    ProviderTimeout,
    ProviderUnreachable,
    StreamError,
)
from koma.providers.wire import cut

# A server error as the user sees it: one line, at most this long.
ERROR_CHARS = 300

_CONTEXT_PATTERNS = (
    "exceeds the available context size",
    "exceed_context_size",
    "context length",
    "context_length_exceeded",
    "context size",
    "context window",
    "maximum context",
    "too many tokens",
    "prompt is too long",
)
_CAPABILITY_PATTERNS = ("does not support", "not support tools", "not supported by this model")


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


def json_error(response: httpx.Response, raw: bytes) -> str | None:
    """The message of an HTTP-200 JSON body that is really an error (LM Studio's quirk)."""
    if "json" not in response.headers.get("content-type", "") and not raw.lstrip().startswith(b"{"):
        return None
    try:
        return error_message(json.loads(raw))
    except ValueError:
        return None


def quote(text: str) -> str:
    """A piece of a bad record for an error message: short, on one line, tags stripped."""
    if text.lstrip().startswith("<"):
        return repr(one_line(text, 120)) if one_line(text) else "an HTML page"
    return repr(cut(text, 120))


def error_message(body: Any) -> str | None:
    """The human text of an error body, whatever its shape; None when it is no error."""
    if not isinstance(body, dict) or body.get("error") is None:
        return None
    err = body["error"]
    if isinstance(err, dict):
        found = err.get("message") or err.get("msg")
        text = found if isinstance(found, str) else json.dumps(err, ensure_ascii=False)
    else:
        text = err if isinstance(err, str) else json.dumps(err, ensure_ascii=False)
    return one_line(text)


_DROPPED_ELEMENTS = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def one_line(text: str, limit: int = ERROR_CHARS) -> str:
    """A server's error text fit for one line: HTML tags stripped, whitespace collapsed, cut.

    A proxy's 503 page or a multi-line traceback would otherwise fill the terminal or the
    editor's message box; the full text goes to the debug log where it is produced.
    """
    if "<" in text and ">" in text:
        text = _TAG.sub(" ", _DROPPED_ELEMENTS.sub(" ", text))
        text = html.unescape(text)
    return cut(_SPACE.sub(" ", text).strip(), limit)


def text_of(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").lstrip("\ufeff").strip()
    if not text:
        return "(no error text)"
    try:
        body = json.loads(text)
    except ValueError:
        return one_line(text)
    found = error_message(body)
    if found is not None:
        return found
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return one_line(str(body["message"]))
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return one_line(str(body["detail"]))
    return one_line(text)


def classify_error(
    message: str, status: int | None, label: ServerLabel, model: str | None = None
) -> KomaError:
    """Turn a server's error text and status into the most specific typed error."""
    message = one_line(message)
    low = message.lower()
    where = f"{label.name} at {label.base_url}"
    if status in (401, 403) or "invalid api key" in low or "incorrect api key" in low:
        return ProviderError(
            f"{where} rejected the request ({status}): {message}",
            "set KOMA_API_KEY to a valid key for this server",
            status=status,
        )
    if any(p in low for p in _CONTEXT_PATTERNS):
        return ContextOverflow(
            f"the prompt does not fit the model's context: {message}",
            "shorten the conversation or raise numCtx",
        )
    if any(p in low for p in _CAPABILITY_PATTERNS):
        return CapabilityMissing(message, "pick a model with that capability (see `koma models`)")
    # Only a message about a model: a bare 404 ("page not found") is a missing route.
    if "model" in low and ("not found" in low or "does not exist" in low):
        name = model or "the model"
        return ModelNotFound(
            f"model {name!r} not found on {where}: {message}", label.model_hint(name)
        )
    if "error parsing tool call" in low:
        return ProviderError(
            message, "the model wrote a malformed tool call; try again", status, True
        )
    retryable = status in (429, 502, 503) or "loading" in low
    return ProviderError(f"{where} answered {status}: {message}", None, status, retryable)

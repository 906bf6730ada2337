"""The base of every provider that talks HTTP to one server.

Ollama and the OpenAI-compatible servers differ only in their wire formats; the pooled client,
the server label used in error messages, retries with backoff and the request wrappers are the
same, so they live here once and each provider module keeps only its own wire.
"""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx

from koma.providers.base import Provider
from koma.providers.errortext import ServerLabel
from koma.providers.http import (
    DEFAULT_BACKOFF,
    DEFAULT_RETRIES,
    make_client,
    open_stream,
    request_json,
)
from koma.providers.stream_waits import StreamTimeouts

logger = logging.getLogger(__name__)


class HttpProvider(Provider):
    """Holds the pooled client and the label; subclasses set `ping_path` and speak their wire."""

    # A cheap GET that any healthy server of this kind answers.
    ping_path: str = "/"

    def __init__(
        self,
        base_url: str,
        label: ServerLabel,
        *,
        headers: dict[str, str] | None = None,
        timeout: httpx.Timeout | float | None = None,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
    ) -> None:
        self.base_url = base_url
        self.retries = retries
        self.backoff = backoff
        self.label = label
        # The two waits of every streamed answer; `create_provider` sets them from the
        # settings (`firstByteTimeoutSeconds`, `idleTimeoutSeconds`), Python callers may too.
        self.stream_timeouts = StreamTimeouts.from_timeout(timeout)
        self._client = make_client(base_url, headers=headers, timeout=timeout)

    async def ping(self) -> bool:
        """One try at `ping_path`: a health check must answer fast, so no retries."""
        try:
            await request_json(self._client, "GET", self.ping_path, self.label, retries=1)
        except Exception as exc:  # a health check never raises (`Provider.ping`)
            logger.debug("%s does not answer: %s", self.label.name, exc)
            return False
        return True

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _json(
        self, method: str, path: str, body: Any = None, *, model: str | None = None
    ) -> Any:
        """A small JSON call with this provider's retries; `path` may also be a full URL."""
        return await request_json(
            self._client,
            method,
            path,
            self.label,
            json_body=body,
            model=model,
            retries=self.retries,
            backoff=self.backoff,
        )

    def _open_stream(
        self, path: str, body: dict[str, Any], model: str
    ) -> AbstractAsyncContextManager[httpx.Response]:
        """A streamed POST, retried only until the server starts answering, its waits bounded."""
        return open_stream(
            self._client,
            "POST",
            path,
            self.label,
            json_body=body,
            model=model,
            retries=self.retries,
            backoff=self.backoff,
            timeouts=self.stream_timeouts,
        )

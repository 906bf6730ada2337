"""`koma/status`: what the model is doing right now, for the editors' status bars.

States are `idle | loading | generating | error` (protocol.md). Several generations may overlap
(a chat while completions run), so `generation()` counts them and only the last one to finish
returns the bar to `idle` — carrying its tokens/s and time to first token so the user sees the
speed of what just ran.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from lsprotocol import types

from koma.lsp import protocol

if TYPE_CHECKING:
    from koma.lsp.server import KomaLanguageServer
    from koma.types import Metrics

logger = logging.getLogger("koma.lsp.status")

State = protocol.ServerState


class StatusReporter:
    """Sends `koma/status` and remembers the last payload for the `koma.status` command."""

    def __init__(self, server: KomaLanguageServer) -> None:
        self._server = server
        self._active = 0
        self.last: protocol.StatusPayload = protocol.status_payload("idle")

    def set(
        self,
        state: State,
        model: str | None = None,
        tokens_per_second: float | None = None,
        ttft_ms: float | None = None,
        message: str | None = None,
    ) -> None:
        """Send one status notification; fields left `None` are omitted (except `model`)."""
        payload = protocol.status_payload(state, model, tokens_per_second, ttft_ms, message)
        self.last = payload
        try:
            self._server.protocol.notify(protocol.STATUS, payload)
        except Exception:
            # Before `initialize` or after the client went away there is nobody to tell.
            logger.debug("could not send koma/status", exc_info=True)

    @asynccontextmanager
    async def generation(self, model: str) -> AsyncIterator[_Generation]:
        """Mark a generation as running; on exit report idle with its metrics (or an error)."""
        from koma.providers.stream_waits import first_byte_watch  # lazy: keeps startup light

        self._active += 1
        self.set("generating", model=model)
        run = _Generation()

        def loading(waiting: bool) -> None:
            # The provider reports a late first byte: most often the model is being loaded.
            if waiting:
                self.set("loading", model=model, message="loading model…")
            else:
                self.set("generating", model=model)

        token = first_byte_watch.set(loading)
        try:
            yield run
        finally:
            try:
                first_byte_watch.reset(token)
            except ValueError:  # left in another context; the variable dies with it
                pass
            self._active -= 1
            if run.error:
                self.set("error", model=model, message=run.error)
            elif self._active == 0:
                metrics = run.metrics
                self.set(
                    "idle",
                    model=model,
                    tokens_per_second=metrics.tokens_per_second if metrics else None,
                    ttft_ms=metrics.ttft_ms if metrics else None,
                )


class _Generation:
    """What a finished generation tells the status bar."""

    def __init__(self) -> None:
        self.metrics: Metrics | None = None
        self.error: str | None = None


def register(server: KomaLanguageServer) -> None:
    """Tell the client the initial state once the connection is up (`initialized`)."""

    @server.feature(types.INITIALIZED)
    def on_initialized(ls: KomaLanguageServer, params: types.InitializedParams) -> None:
        ls.status.set("idle", model=ls.settings.model)

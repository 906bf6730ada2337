"""A pygls server whose document and connection notifications reach every module that listens.

Several features need the same notifications (the reasoning ledger follows `didChange`, inline
completion measures typing speed from it). pygls allows one handler per method, so
`FanoutLanguageServer.feature` registers a single dispatcher for those methods and calls every
listener in registration order. Commands get their raw JSON arguments (`f(ls, *args)`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from lsprotocol import types
from pygls.feature_manager import wrap_with_server
from pygls.lsp.server import LanguageServer

logger = logging.getLogger("koma.lsp")

# Notifications more than one feature module may listen to; the server calls each listener.
FANOUT_METHODS = frozenset(
    {
        types.INITIALIZE,
        types.INITIALIZED,
        types.SHUTDOWN,
        types.TEXT_DOCUMENT_DID_OPEN,
        types.TEXT_DOCUMENT_DID_CHANGE,
        types.TEXT_DOCUMENT_DID_CLOSE,
        types.TEXT_DOCUMENT_DID_SAVE,
        types.WORKSPACE_DID_CHANGE_CONFIGURATION,
    }
)


class FanoutLanguageServer(LanguageServer):
    """pygls' server with many listeners per notification and raw command arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listeners: dict[str, list[Callable[..., Any]]] = defaultdict(list)

    def feature(self, feature_name: str, options: Any | None = None) -> Callable[[Any], Any]:
        """Like pygls' `feature`, but connection and document notifications take many listeners."""
        if feature_name not in FANOUT_METHODS:
            return super().feature(feature_name, options)

        def decorator(f: Callable[..., Any]) -> Callable[..., Any]:
            first = not self._listeners[feature_name]
            self._listeners[feature_name].append(wrap_with_server(f, self))
            if first:
                super(FanoutLanguageServer, self).feature(feature_name, options)(
                    self._dispatcher(feature_name)
                )
            return f

        return decorator

    def command(self, command_name: str) -> Callable[[Any], Any]:
        """Like pygls' `command`, but the handler gets the raw JSON arguments: `f(ls, *args)`.

        pygls would otherwise convert arguments from the handler's annotations, which fails on
        annotations that only exist for type checking.
        """

        def decorator(f: Callable[..., Any]) -> Callable[..., Any]:
            handler: Callable[..., Any]
            if inspect.iscoroutinefunction(f):

                async def handler(*arguments: Any) -> Any:
                    return await f(self, *arguments)

            else:

                def handler(*arguments: Any) -> Any:
                    return f(self, *arguments)

            super(FanoutLanguageServer, self).command(command_name)(handler)
            return f

        return decorator

    def _dispatcher(self, method: str) -> Callable[[Any], Awaitable[None]]:
        async def dispatch(params: Any) -> None:
            # Every listener starts in registration order; synchronous ones finish at once, and
            # a slow coroutine (e.g. one waiting on the client) never holds up the others.
            pending: list[Awaitable[Any]] = []
            for listener in list(self._listeners[method]):
                try:
                    result = listener(params)
                except Exception:
                    # One feature failing must not stop the others from seeing the event.
                    logger.exception("listener for %s failed", method)
                    continue
                if inspect.isawaitable(result):
                    pending.append(result)
            for outcome in await asyncio.gather(*pending, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    logger.error("listener for %s failed: %r", method, outcome)

        return dispatch

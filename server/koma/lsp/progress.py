"""`$/progress` from the server: a token it creates, begin, reports, end.

Shown only to clients that declare `window.workDoneProgress`; for any other the helpers do
nothing and the work runs the same. Shared by the features that report long work (loading and
pulling models).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from lsprotocol import types

if TYPE_CHECKING:
    from koma.lsp.server import KomaLanguageServer

logger = logging.getLogger("koma.lsp.progress")

T = TypeVar("T")


def supports_progress(ls: KomaLanguageServer) -> bool:
    window = ls.client_capabilities.window
    return bool(window is not None and window.work_done_progress)


async def begin_progress(ls: KomaLanguageServer, begin: types.WorkDoneProgressBegin) -> str | None:
    """Start a `$/progress` when the client shows progress; its token, or None without one."""
    if not supports_progress(ls):
        return None
    token = f"koma-{uuid.uuid4().hex[:8]}"
    try:
        await ls.work_done_progress.create_async(token)
        ls.work_done_progress.begin(token, begin)
    except Exception as err:  # a client that refuses the token: run the work without it
        logger.info("progress not available: %s", err)
        return None
    return token


def end_progress(ls: KomaLanguageServer, token: str | None, *, forget: bool = False) -> None:
    """End the progress `token` (nothing without one); `forget` drops pygls' cancel future too."""
    if token is None:
        return
    ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message="done"))
    if forget:
        ls.work_done_progress.tokens.pop(token, None)


async def with_progress(ls: KomaLanguageServer, title: str, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work` inside a `$/progress` begin/end pair when the client shows progress."""
    token = await begin_progress(ls, types.WorkDoneProgressBegin(title=title))
    try:
        return await work()
    finally:
        end_progress(ls, token)

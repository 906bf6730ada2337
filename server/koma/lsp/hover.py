"""`textDocument/hover`: why the model changed this code.

Over a range that a resolved (and applied) code action changed since the editor connected, hover
shows the action, the model, and its reasoning as Markdown. Anywhere else it returns `null` at
once — no model call, so hovering stays free. The ledger follows every document change (this
module feeds it `didChange`), so the reasoning stays attached to the code it explains.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lsprotocol import types

if TYPE_CHECKING:
    from koma.engine.ledger import LedgerEntry, Pos
    from koma.lsp.server import KomaLanguageServer

logger = logging.getLogger("koma.lsp.hover")

# Longer reasoning is cut in the hover (editors render hovers in a small popup).
MAX_REASONING_CHARS = 6_000


def hover_markdown(entry: LedgerEntry) -> str:
    """The hover text for one AI edit."""
    model = entry.model or "unknown model"
    head = f"**{entry.action}** · model `{model}`"
    reasoning = entry.reasoning.strip()
    if not reasoning:
        return f"{head}\n\n_The model returned no reasoning for this change._"
    if len(reasoning) > MAX_REASONING_CHARS:
        reasoning = reasoning[:MAX_REASONING_CHARS].rstrip() + " …"
    return f"{head}\n\n**Reasoning**\n\n{reasoning}"


def register(server: KomaLanguageServer) -> None:
    """Hover over AI edits, and keep the ledger in step with the documents."""

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def hover(ls: KomaLanguageServer, params: types.HoverParams) -> types.Hover | None:
        pos = (params.position.line, params.position.character)
        entry = ls.ledger.at(params.text_document.uri, pos)
        if entry is None:
            return None
        return types.Hover(
            contents=types.MarkupContent(
                kind=types.MarkupKind.Markdown, value=hover_markdown(entry)
            ),
            range=types.Range(
                start=types.Position(line=entry.start[0], character=entry.start[1]),
                end=types.Position(line=entry.end[0], character=entry.end[1]),
            ),
        )

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: KomaLanguageServer, params: types.DidChangeTextDocumentParams) -> None:
        uri = params.text_document.uri
        if not ls.ledger.entries(uri):
            return
        document = ls.workspace.get_text_document(uri)
        codec = ls.workspace.position_codec

        def text_in(start: Pos, end: Pos) -> str | None:
            try:
                return document.text_in_client_range(
                    types.Range(
                        start=types.Position(line=start[0], character=start[1]),
                        end=types.Position(line=end[0], character=end[1]),
                    )
                )
            except (OSError, ValueError):  # a document read from disk, unreadable or not UTF-8
                return None

        for change in params.content_changes:
            if isinstance(change, types.TextDocumentContentChangePartial):
                r = change.range
                ls.ledger.change(
                    uri,
                    (r.start.line, r.start.character),
                    (r.end.line, r.end.character),
                    change.text,
                    text_in,
                    units=codec.client_num_units,
                )
            else:
                ls.ledger.change(uri, None, None, change.text, text_in)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: KomaLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.ledger.forget(params.text_document.uri)

"""`textDocument/completion` fallback for editors without inline completion.

The same pipeline as inline completion serves it, and the suggestion comes back as a single
`CompletionItem` (`kind: Text`, plain text, a `textEdit` from the cursor). The list is marked
incomplete so the editor asks again as the user types instead of filtering a stale answer.

`completionProvider` is only declared to clients that do not declare
`textDocument.inlineCompletion` (the server drops this feature for them at `initialize`), so
nobody sees a suggestion twice. Should such a client still ask, it gets an empty list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from koma.lsp.inline_completion import serve

if TYPE_CHECKING:
    from koma.lsp.server import KomaLanguageServer

TRIGGER_CHARACTERS = [".", "(", "[", "{", ",", "=", ":", " "]
LABEL_CHARS = 60


def _label(text: str) -> str:
    first = text.strip().split("\n", 1)[0]
    if len(first) > LABEL_CHARS:
        first = first[: LABEL_CHARS - 1] + "…"
    return first + (" …" if "\n" in text.strip() else "")


def register(server: KomaLanguageServer) -> None:
    """Attach the completion fallback feature to `server`."""

    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION,
        types.CompletionOptions(trigger_characters=TRIGGER_CHARACTERS),
    )
    async def completion(
        ls: KomaLanguageServer, params: types.CompletionParams
    ) -> types.CompletionList:
        empty = types.CompletionList(is_incomplete=True, items=[])
        if ls.client_supports_inline_completion:
            return empty
        # Clients send `Invoked` for every identifier keystroke too, so it says nothing about
        # the user explicitly asking: the fallback is always debounced.
        result, span = await serve(ls, params.text_document.uri, params.position, False)
        if result.text is None or span is None:
            return empty
        item = types.CompletionItem(
            label=_label(result.text),
            kind=types.CompletionItemKind.Text,
            detail="Koma",
            insert_text_format=types.InsertTextFormat.PlainText,
            text_edit=types.TextEdit(range=span, new_text=result.text),
            filter_text=result.text,
            sort_text="0",
            preselect=True,
        )
        return types.CompletionList(is_incomplete=True, items=[item])

"""Reading what a client sent: command arguments, ranges, and how to name a document.

A client's parameters are untrusted JSON: every helper here accepts any shape and answers with
an empty or `None` value instead of raising, so a malformed request gets a clear reply from its
feature rather than a JSON-RPC error. Shared by every feature module; imports nothing heavy (it
is loaded before the `initialize` reply).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from pygls.uris import to_fs_path

if TYPE_CHECKING:
    from koma.lsp.server import KomaLanguageServer

# A position as (line, character), and a range as two of them.
Pos = tuple[int, int]
Span = tuple[Pos, Pos]


def first_argument(args: tuple[Any, ...]) -> dict[str, Any]:
    """Commands take one object argument; anything else counts as an empty one."""
    return dict(args[0]) if args and isinstance(args[0], Mapping) else {}


def parse_range(raw: Any) -> Span | None:
    """An LSP range object as position pairs; None when absent or malformed."""
    try:
        start, end = raw["start"], raw["end"]
        return (int(start["line"]), int(start["character"])), (
            int(end["line"]),
            int(end["character"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def display_path(ls: KomaLanguageServer, uri: str) -> str:
    """The document's path as the user knows it: relative to the workspace root when inside."""
    path = to_fs_path(uri) or uri
    root = ls.workspace_root
    if root is not None:
        try:
            return str(PurePath(path).relative_to(root))
        except ValueError:
            pass
    return path


def language_of(ls: KomaLanguageServer, uri: str) -> str:
    """The editor's language id for an open document, else the file's extension."""
    try:
        language = ls.workspace.get_text_document(uri).language_id
    except RuntimeError:  # no workspace before `initialize`: the file suffix will do
        language = None
    return language or PurePath(uri).suffix.lstrip(".")

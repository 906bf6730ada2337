"""What of the editor's text may reach the model, outside the tools' own checks.

The tools read files through the jail and redact their results (`lsp.tools`). The other ways
text reaches the model are held to the same rules here:

- a document a client names (chat's `uri`, Explain, a code action's data) is read through the
  same jail and secret patterns as a model's path, off the event loop (`read_document`);

- the file or selection attached to `koma.chat` / `koma.explain` is redacted with the same
  `Redactor` as tool results (`redactor`);
- inline completion adds snippets of other open documents ("neighbours") and chunks of places
  the user worked (the context ring): only files inside a workspace folder, clear of `.git/`
  and `tools.secretPatterns` (the jail's checks on the path as written and as resolved) are
  used — a `.env` or `~/.aws/credentials` open in another tab never is, nor a buffer with no
  file behind it (`completion_neighbours`, `ring_text`);
- the document being typed in is the user's own action, but a file matching the secret
  patterns (`.env`, `id_rsa`, …) gets no completion: sending a credentials file to the model
  server keystroke by keystroke is what the patterns exist to prevent
  (`completion_refusal`). Known secret values left in any of that text are redacted.

The engine is imported inside the functions: this module is loaded before the `initialize`
reply, and the checks run on the keystroke path, so they do no I/O beyond `realpath`.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from pygls.uris import to_fs_path

if TYPE_CHECKING:
    from collections.abc import Callable

    from koma.engine.tools.childenv import Redactor
    from koma.lsp.server import KomaLanguageServer


def workspace_folders(ls: KomaLanguageServer) -> list[Path]:
    """The folders tools may touch: the workspace folders, else the root the client named."""
    folders: list[Path] = []
    try:
        uris = [folder.uri for folder in ls.workspace.folders.values()]
    except RuntimeError:  # no workspace yet (before initialize)
        uris = []
    for uri in uris:
        path = to_fs_path(uri)
        if path and Path(path).is_dir() and Path(path) not in folders:
            folders.append(Path(path))
    if not folders and ls.workspace_root is not None and ls.workspace_root.is_dir():
        folders.append(ls.workspace_root)
    return folders


def api_keys(ls: KomaLanguageServer) -> dict[str, str | None]:
    """The provider's key, wherever it came from, so no text sent to the model can show it."""
    keys: dict[str, str | None] = {}
    configured = getattr(ls.settings, "api_key", None)
    if configured is not None:
        reveal = getattr(configured, "get_secret_value", None)
        keys["apiKey"] = reveal() if callable(reveal) else str(configured)
    provider = ls.current_provider
    key = getattr(provider, "api_key", None)
    if isinstance(key, str):
        keys["the provider's API key"] = key
    return keys


def redactor(ls: KomaLanguageServer) -> Redactor:
    """The one redactor for everything the model is given from this server (tool results, the
    attached file, the completion prompt), so a secret cut from one is not sent through another."""
    from koma.engine.tools.childenv import Redactor

    return Redactor.from_environ(extra=api_keys(ls))


def cached_redactor(ls: KomaLanguageServer) -> Callable[[str], str]:
    """`redactor(ls)`, built again only when the settings or the provider change: completion
    asks on every keystroke, and the environment is read once per configuration."""
    key = (id(ls.settings), id(ls.current_provider))
    cache = ls.state.exposure
    if cache.redactor is None or cache.key != key:
        cache.key, cache.redactor = key, redactor(ls)
    return cache.redactor


def completion_refusal(ls: KomaLanguageServer, uri: str) -> str | None:
    """Why the document being typed in gets no completion (its name matches a secret
    pattern, as written or resolved), or None."""
    path = to_fs_path(uri) if uri.startswith("file:") else None
    if not path:
        return None
    from koma.engine.tools.jail import Jail

    jail = Jail([os.path.dirname(path) or "/"], list(ls.settings.tools.secret_patterns))
    for name in (path, os.path.realpath(path)):
        # `.git/` is a tools rule; a commit message being written there is the user's text.
        parts = [part for part in PurePosixPath(name).parts[1:] if part.lower() != ".git"]
        reason = jail.refusal(PurePosixPath(*parts)) if parts else None
        if reason is not None:
            return reason
    return None


def completion_source_allowed(ls: KomaLanguageServer, uri: str) -> bool:
    """Whether text of the document at `uri` may enter a completion prompt from elsewhere (a
    neighbour, a remembered chunk): a file inside a workspace folder that the jail allows."""
    from koma.engine.tools.jail import Jail

    folders = workspace_folders(ls)
    if not folders:
        return False
    return _allowed(Jail(folders, list(ls.settings.tools.secret_patterns)), uri)


def _allowed(jail: Any, uri: str) -> bool:
    from koma.engine.tools.jail import PathRefused

    path = to_fs_path(uri) if uri.startswith("file:") else None
    if not path:
        return False  # a buffer with no file behind it (`untitled:`): nothing to check
    try:
        jail.resolve(path, "new")
    except (PathRefused, OSError):
        return False
    return True


def ring_text(
    ls: KomaLanguageServer, uri: str, text: str, *, chosen_by_user: bool = False
) -> str | None:
    """What the completion's context ring may keep of `text` from the document `uri`, redacted;
    None when it may keep nothing.

    A document opened, saved or edited is taken without the user choosing it, so it must pass
    the jail (inside the workspace, no `.git/`, no secret pattern). Text the user yanked or
    copied (`chosen_by_user`, `uri` possibly empty) is their deliberate pick — like the code at
    the cursor — so only the secret patterns (the ring's own check) and redaction apply."""
    if uri and not chosen_by_user and not completion_source_allowed(ls, uri):
        return None
    return cached_redactor(ls)(text)


def completion_neighbours(
    ls: KomaLanguageServer, uri: str, documents: dict[str, Any], limit: int
) -> list[tuple[str, str]]:
    """At most `limit` other open documents (uri, text) that completion may show the model:
    files inside a workspace folder that the jail allows, redacted."""
    from koma.engine.tools.jail import Jail

    folders = workspace_folders(ls)
    if not folders or limit <= 0:
        return []
    jail = Jail(folders, list(ls.settings.tools.secret_patterns))
    redact = cached_redactor(ls)
    chosen: list[tuple[str, str]] = []
    for other_uri, other in list(documents.items()):
        if other_uri == uri or not _allowed(jail, other_uri):
            continue
        text = other.source
        if "\x00" in text[:8192]:
            continue
        chosen.append((other_uri, redact(text)))
        if len(chosen) >= limit:
            break
    return chosen


class DocumentRefused(Exception):
    """A document a client or model named that Koma will not read; the message says why."""


async def read_document(ls: KomaLanguageServer, uri: object, limit: int) -> str:
    """The text of the document at `uri` for chat, Explain and code actions.

    Every URI a client sends is checked like a model's path: it must be inside a workspace
    folder and clear of `.git/` and `tools.secretPatterns`, and only a regular file is read.
    The editor's buffer is used when that resolved file is open (unsaved edits included), else
    at most `limit` bytes of the file. The checks and the read run in a worker thread, so a
    slow disk or a hostile path never holds the event loop. `DocumentRefused` says why not.
    """
    if not isinstance(uri, str) or not uri:
        raise DocumentRefused("no document was named")
    if not uri.startswith("file:"):
        # An editor buffer with no file behind it (VS Code's `untitled:`): its text is what
        # the editor sent; nothing on disk is read.
        document = ls.workspace.text_documents.get(uri)
        if document is None:
            raise DocumentRefused(f"{uri} is not an open document or a file")
        return _text_or_refuse(document.source, uri)
    folders = workspace_folders(ls)
    patterns = list(ls.settings.tools.secret_patterns)
    return await asyncio.to_thread(_read_file_document, ls, uri, folders, patterns, limit)


def _read_file_document(
    ls: KomaLanguageServer, uri: str, folders: list[Path], patterns: list[str], limit: int
) -> str:
    from koma.engine.tools.jail import Jail, PathRefused, is_binary

    path = to_fs_path(uri)
    if not path:
        raise DocumentRefused(f"{uri} is not a file path")
    if not folders:
        raise DocumentRefused(f"{path} cannot be read: there is no workspace folder")
    jail = Jail(folders, patterns)
    try:
        target = jail.resolve(path, "new")
        text = open_text(ls, target.uri)
        if text is not None:
            return _text_or_refuse(text, target.shown)
        target = jail.require(target, "file")
        data, _ = jail.read_head(target, limit)
    except PathRefused as err:
        raise DocumentRefused(str(err)) from None
    if is_binary(data):
        raise DocumentRefused(f"{target.shown} is a binary file")
    return data.decode("utf-8", "replace")


def _text_or_refuse(text: str, name: str) -> str:
    if "\x00" in text:
        raise DocumentRefused(f"{name} is binary")
    return text


def open_text(ls: KomaLanguageServer, uri: str) -> str | None:
    """The editor's text of an open document (unsaved edits included); None when not open.

    `uri` names a path the jail resolved; an open document matches when *its* path resolves to
    the same file, so `S/../../x` through a symlink `S` can never pick the buffer of a file
    outside the workspace. Called from worker threads (it resolves paths).
    """
    wanted = to_fs_path(uri)
    if not wanted:
        return None
    wanted = os.path.realpath(wanted)
    for doc_uri, document in _open_documents(ls):
        path = to_fs_path(doc_uri)
        if path and os.path.realpath(path) == wanted:
            text = document.source
            return None if "\x00" in text else text
    return None


def _open_documents(ls: KomaLanguageServer) -> list[tuple[str, Any]]:
    try:
        # One C-level copy: safe against the event loop opening a document meanwhile.
        return list(ls.workspace.text_documents.items())
    except RuntimeError:  # no workspace yet
        return []

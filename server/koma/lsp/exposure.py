"""What of the editor's text may reach the model, outside the tools' own checks.

The tools read files through the jail and redact their results (`lsp.tools`). Three other ways
text reaches the model are held to the same rules here:

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

import os
import weakref
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


_CACHED: weakref.WeakKeyDictionary[Any, tuple[tuple[object, ...], Redactor]] = (
    weakref.WeakKeyDictionary()
)


def cached_redactor(ls: KomaLanguageServer) -> Callable[[str], str]:
    """`redactor(ls)`, built again only when the settings or the provider change: completion
    asks on every keystroke, and the environment is read once per configuration."""
    key = (id(ls.settings), id(ls.current_provider))
    hit = _CACHED.get(ls)
    if hit is None or hit[0] != key:
        hit = (key, redactor(ls))
        _CACHED[ls] = hit
    return hit[1]


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

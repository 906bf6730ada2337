"""Tools in chat: the engine's workspace tools, wired to this editor.

The tool loop runs in the server (engine.tools); consent and edits belong to the editor:

- a tool whose policy is `ask` sends `window/showMessageRequest` with the actions `Allow`,
  `Allow for this chat` and `Deny` — no answer (or `null`) is Deny; "for this chat" is remembered
  per chat id;
- `propose_edit` sends `workspace/applyEdit`; the editor shows the edit and the user accepts or
  rejects it, and that answer goes back to the model. Clients without `workspace.applyEdit` do
  not get the tool at all;
- the jail's folders are the workspace folders; files open in the editor are read as the editor
  has them (unsaved changes included); edit ranges use the negotiated position encoding;
- a model without native tool calling switches to the text protocol once per model and session,
  and the user is told with `window/showMessage`.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.uris import to_fs_path

from koma.engine.chat import CHARS_PER_TOKEN
from koma.engine.tools.loop import ToolLoop
from koma.engine.tools.policy import Decision, PolicyGate
from koma.engine.tools.workspace import WorkspaceConfig, WorkspaceTools

if TYPE_CHECKING:
    from koma.lsp.server import KomaLanguageServer

logger = logging.getLogger("koma.lsp.tools")

ALLOW, ALLOW_CHAT, DENY = "Allow", "Allow for this chat", "Deny"
_DECISIONS: dict[str, Decision] = {ALLOW: "allow", ALLOW_CHAT: "allow_chat", DENY: "deny"}
MAX_REMEMBERED_CHATS = 100
# Shares of the context window (in characters) for one result / all of a turn's.
RESULT_SHARE, RESULTS_SHARE = 0.25, 0.5


class ToolState:
    """What outlives one turn: tools allowed per chat, models that need the text protocol."""

    def __init__(self) -> None:
        self.allowed: OrderedDict[str, set[str]] = OrderedDict()
        self.text_models: set[str] = set()

    def allowed_for(self, chat_id: str) -> set[str]:
        allowed = self.allowed.setdefault(chat_id, set())
        self.allowed.move_to_end(chat_id)
        while len(self.allowed) > MAX_REMEMBERED_CHATS:
            self.allowed.popitem(last=False)
        return allowed


_STATES: weakref.WeakKeyDictionary[KomaLanguageServer, ToolState] = weakref.WeakKeyDictionary()


def state_of(ls: KomaLanguageServer) -> ToolState:
    state = _STATES.get(ls)
    if state is None:
        state = _STATES[ls] = ToolState()
    return state


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


def position_encoding(ls: KomaLanguageServer) -> str:
    try:
        encoding = ls.workspace.position_encoding
    except RuntimeError:
        return "utf-16"
    value = getattr(encoding, "value", encoding)
    return value if value in ("utf-8", "utf-16", "utf-32") else "utf-16"


def client_applies_edits(ls: KomaLanguageServer) -> bool:
    workspace = ls.client_capabilities.workspace if ls.client_capabilities else None
    return bool(workspace and workspace.apply_edit)


def tool_loop(ls: KomaLanguageServer, chat_id: str, context_tokens: int) -> ToolLoop | None:
    """The tools for one chat turn, or None when there is no workspace folder to work in."""
    roots = workspace_folders(ls)
    if not roots:
        return None
    settings = ls.settings.tools
    state = state_of(ls)
    config = WorkspaceConfig.from_settings(
        roots,
        settings,
        open_text=lambda uri: _open_text(ls, uri),
        apply_edit=(lambda label, edit: _apply_edit(ls, label, edit))
        if client_applies_edits(ls)
        else None,
        position_encoding=position_encoding(ls),
    )
    gate = PolicyGate(
        settings.policies,
        confirm=lambda tool, message: _confirm(ls, message),
        remembered=state.allowed_for(chat_id),
    )
    chars = context_tokens * CHARS_PER_TOKEN
    return ToolLoop(
        WorkspaceTools(config).toolkit(),
        gate=gate,
        max_steps=settings.max_steps,
        text_protocol_models=state.text_models,
        on_notice=lambda text: _notice(ls, text),
        max_result_chars=max(2000, int(chars * RESULT_SHARE)),
        results_budget_chars=max(4000, int(chars * RESULTS_SHARE)),
    )


def _open_text(ls: KomaLanguageServer, uri: str) -> str | None:
    """The editor's text of an open document (unsaved edits included); None when not open."""
    wanted = to_fs_path(uri)
    if not wanted:
        return None
    wanted = os.path.normpath(wanted)
    for doc_uri, document in list(ls.workspace.text_documents.items()):
        path = to_fs_path(doc_uri)
        if path and os.path.normpath(path) == wanted:
            text = document.source
            return None if "\x00" in text else text
    return None


async def _confirm(ls: KomaLanguageServer, message: str) -> Decision | None:
    params = types.ShowMessageRequestParams(
        type=types.MessageType.Warning,
        message=message,
        actions=[types.MessageActionItem(title=title) for title in (ALLOW, ALLOW_CHAT, DENY)],
    )
    answer = await ls.window_show_message_request_async(params)
    title = getattr(answer, "title", None)
    return _DECISIONS.get(title) if isinstance(title, str) else None


async def _apply_edit(
    ls: KomaLanguageServer, label: str, edit: dict[str, Any]
) -> tuple[bool, str | None]:
    structured = ls.protocol._converter.structure(edit, types.WorkspaceEdit)
    params = types.ApplyWorkspaceEditParams(edit=structured, label=label)
    result = await ls.workspace_apply_edit_async(params)
    if result is None:
        return False, "the editor did not answer"
    return bool(result.applied), result.failure_reason


def _notice(ls: KomaLanguageServer, text: str) -> None:
    ls.window_show_message(
        types.ShowMessageParams(type=types.MessageType.Warning, message=f"Koma: {text}")
    )

"""Tools in chat: the engine's workspace tools, wired to this editor.

The tool loop runs in the server (engine.tools); consent and edits belong to the editor:

- a tool whose policy is `ask` sends `window/showMessageRequest` with the actions `Allow`,
  `Allow for this chat` and `Deny` — no answer (or `null`) is Deny; "for this chat" is remembered
  per chat id;
- `propose_edit` sends `workspace/applyEdit`; the editor shows the edit and the user accepts or
  rejects it, and that answer goes back to the model. Clients without `workspace.applyEdit` do
  not get the tool at all;
- the jail's folders are the workspace folders; files open in the editor are read as the editor
  has them (unsaved changes included), matched by the resolved path; edit ranges use the
  negotiated position encoding; an edit the tool marks sensitive is asked with Allow / Deny only;
- `read_document` is how chat, Explain and code actions read a URI a client sent: the same jail
  and secret patterns, off the event loop;
- known secret values (credential variables, the API key) are cut from every tool result, with
  the same redactor as the text the editor attaches (`lsp.exposure`);
- a model without native tool calling switches to the text protocol once per model and session,
  and the user is told with `window/showMessage`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.uris import to_fs_path

from koma.engine.tokens import tool_result_budgets
from koma.engine.tools.jail import Jail, PathRefused, is_binary
from koma.engine.tools.loop import ToolLoop
from koma.engine.tools.policy import Decision, PolicyGate
from koma.engine.tools.toolkit import Tool
from koma.engine.tools.workspace import WorkspaceConfig, WorkspaceTools
from koma.lsp.exposure import redactor, workspace_folders
from koma.lsp.settings import restricted_reason

if TYPE_CHECKING:
    from koma.lsp.server import KomaLanguageServer

logger = logging.getLogger("koma.lsp.tools")

ALLOW, ALLOW_CHAT, DENY = "Allow", "Allow for this chat", "Deny"
_DECISIONS: dict[str, Decision] = {ALLOW: "allow", ALLOW_CHAT: "allow_chat", DENY: "deny"}
MAX_REMEMBERED_CHATS = 100


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
        confirm_sensitive=lambda tool, message: _confirm(ls, message, (ALLOW, DENY)),
        refuse=lambda tool: _restricted(ls, tool),
    )
    result_chars, results_chars = tool_result_budgets(context_tokens)
    return ToolLoop(
        WorkspaceTools(config).toolkit(),
        gate=gate,
        max_steps=settings.max_steps,
        text_protocol_models=state.text_models,
        on_notice=lambda text: _notice(ls, text),
        max_result_chars=result_chars,
        results_budget_chars=results_chars,
        redact=redactor(ls),
    )


def _restricted(ls: KomaLanguageServer, tool: Tool) -> str | None:
    """In Restricted Mode, every tool that runs or writes (not `allow` by default) is refused."""
    reason = restricted_reason(ls)
    if reason is None or tool.policy == "allow":
        return None
    return f"{tool.name} was not run: {reason}"


def _open_text(ls: KomaLanguageServer, uri: str) -> str | None:
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
    path = to_fs_path(uri)
    if not path:
        raise DocumentRefused(f"{uri} is not a file path")
    if not folders:
        raise DocumentRefused(f"{path} cannot be read: there is no workspace folder")
    jail = Jail(folders, patterns)
    try:
        target = jail.resolve(path, "new")
        text = _open_text(ls, target.uri)
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


async def _confirm(
    ls: KomaLanguageServer, message: str, choices: tuple[str, ...] = (ALLOW, ALLOW_CHAT, DENY)
) -> Decision | None:
    """Ask the editor; a sensitive call is offered only Allow / Deny (nothing is remembered)."""
    params = types.ShowMessageRequestParams(
        type=types.MessageType.Warning,
        message=message,
        actions=[types.MessageActionItem(title=title) for title in choices],
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

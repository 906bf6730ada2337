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
- chat, Explain and code actions read a URI a client sent with `lsp.exposure.read_document`:
  the same jail and secret patterns, off the event loop;
- known secret values (credential variables, the API key) are cut from every tool result, with
  the same redactor as the text the editor attaches (`lsp.exposure`);
- a model without native tool calling switches to the text protocol once per model and connection,
  and the user is told with `window/showMessage`.

`register` installs `tool_loop` on the server, which chat asks for each turn's tools. The engine's
tools are imported when a turn first needs them (the server preloads them after `initialized`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from koma.lsp.exposure import open_text, redactor, workspace_folders
from koma.lsp.settings import restricted_reason

if TYPE_CHECKING:
    from koma.engine.tools.loop import ToolLoop
    from koma.engine.tools.policy import Decision
    from koma.engine.tools.toolkit import Tool
    from koma.lsp.server import KomaLanguageServer

logger = logging.getLogger("koma.lsp.tools")

ALLOW, ALLOW_CHAT, DENY = "Allow", "Allow for this chat", "Deny"
_DECISIONS: dict[str, Decision] = {ALLOW: "allow", ALLOW_CHAT: "allow_chat", DENY: "deny"}


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
    from koma.engine.tokens import tool_result_budgets
    from koma.engine.tools.loop import ToolLoop
    from koma.engine.tools.policy import PolicyGate
    from koma.engine.tools.workspace import WorkspaceConfig, WorkspaceTools

    roots = workspace_folders(ls)
    if not roots:
        return None
    settings = ls.settings.tools
    state = ls.state.tools
    config = WorkspaceConfig.from_settings(
        roots,
        settings,
        open_text=lambda uri: open_text(ls, uri),
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


def register(server: KomaLanguageServer) -> None:
    """Give chat turns their tools."""
    server.provide_tool_loop(tool_loop)

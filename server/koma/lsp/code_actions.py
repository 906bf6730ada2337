"""`textDocument/codeAction` + `codeAction/resolve`: Explain, Refactor, Add docstring, Tests, Fix.

Listing is instant and never calls the model — editors ask for code actions on every cursor
move — so each action carries only `data` describing what to do. `codeAction/resolve` does the
work: it asks the model (effort `reasoningEffort.actions`), takes the code from the final answer
only, and returns a `WorkspaceEdit`. Explain resolves to the `koma.explain` command, whose answer
streams as chat events. Each edit's reasoning goes into the ledger so hover can show why the
code changed. A failure leaves the action without an edit and tells the user why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from lsprotocol import types

from koma.errors import KomaError
from koma.lsp import protocol
from koma.lsp.exposure import DocumentRefused, read_document
from koma.lsp.params import display_path, language_of, parse_range

# The engine is imported by the handlers, not before the `initialize` reply (cold start).
if TYPE_CHECKING:
    from koma.engine.actions import ActionKind
    from koma.lsp.server import KomaLanguageServer

logger = logging.getLogger("koma.lsp.code_actions")

KINDS: dict[ActionKind, str] = {
    "explain": types.CodeActionKind.RefactorRewrite,
    "refactor": types.CodeActionKind.RefactorRewrite,
    "docstring": types.CodeActionKind.RefactorRewrite,
    "tests": types.CodeActionKind.Source,
    "fix": types.CodeActionKind.QuickFix,
}
SELECTION_ACTIONS: tuple[ActionKind, ...] = ("explain", "refactor", "docstring", "tests")
MAX_TITLE_MESSAGE = 60
ACTION_MAX_BYTES = 2_000_000


def _wanted(kind: str, only: list[str] | None) -> bool:
    """LSP `context.only`: a kind matches its own prefix hierarchy (`refactor` ⊃ `refactor.x`)."""
    if not only:
        return True
    return any(kind == o or kind.startswith(o + ".") for o in only)


def fix_title(message: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else "diagnostic"
    if len(first) > MAX_TITLE_MESSAGE:
        first = first[: MAX_TITLE_MESSAGE - 1] + "…"
    return f'Koma: Fix "{first}"'


def list_actions(ls: KomaLanguageServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    """The Koma actions for a range — pure bookkeeping, no model call."""
    from koma.engine.actions import TITLES, widen_to_lines

    uri = params.text_document.uri
    # Listing runs on every cursor move: only an open buffer is looked at, never the disk.
    document = ls.workspace.text_documents.get(uri)
    text = document.source if document is not None else None
    if text is None or "\x00" in text or not text.strip():
        return []
    lines = text.split("\n")
    only = [str(k) for k in params.context.only] if params.context.only else None
    start = (params.range.start.line, params.range.start.character)
    end = (params.range.end.line, params.range.end.character)
    actions: list[types.CodeAction] = []
    if widen_to_lines(lines, start, end) is not None:
        for kind in SELECTION_ACTIONS:
            if _wanted(KINDS[kind], only):
                data = protocol.action_data(kind, uri, params.range)
                actions.append(types.CodeAction(title=TITLES[kind], kind=KINDS[kind], data=data))
    if _wanted(KINDS["fix"], only):
        for diagnostic in params.context.diagnostics:
            data = protocol.action_data("fix", uri, diagnostic.range, diagnostic.message)
            actions.append(
                types.CodeAction(
                    title=fix_title(diagnostic.message),
                    kind=KINDS["fix"],
                    diagnostics=[diagnostic],
                    data=data,
                )
            )
    return actions


def _units(ls: KomaLanguageServer) -> Callable[[str], int]:
    codec = ls.workspace.position_codec
    return lambda s: int(codec.client_num_units(s))


def _report(ls: KomaLanguageServer, message: str) -> None:
    ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Error, message=message))


async def resolve_action(ls: KomaLanguageServer, action: types.CodeAction) -> types.CodeAction:
    """Fill in the edit (or the Explain command) for a listed action."""
    from koma.engine.actions import (
        ACTION_KINDS,
        TITLES,
        generate_edit,
        make_target,
        widen_to_lines,
    )

    data = action.data if isinstance(action.data, dict) else {}
    kind = data.get("action")
    uri = data.get("uri")
    span = parse_range(data.get("range"))
    if kind not in ACTION_KINDS or not isinstance(uri, str) or span is None:
        return action  # not one of ours, or mangled by the client: nothing to do
    if kind == "explain":
        action.command = types.Command(
            title=TITLES["explain"],
            command="koma.explain",
            arguments=[{"uri": uri, "range": data["range"]}],
        )
        return action
    session = await ls.session()  # the engine is imported off the event loop
    try:
        # The action's data came back from the client: the URI is checked again (jail, secret
        # patterns, regular file) before anything is read and sent to the model.
        text = await read_document(ls, uri, ACTION_MAX_BYTES)
    except DocumentRefused as err:
        _report(ls, f"Koma: {action.title} cannot read {display_path(ls, uri)}: {err}")
        return action
    lines = [line.rstrip("\r") for line in text.split("\n")]
    if kind == "fix":
        last = len(lines) - 1
        lines_span: tuple[int, int] | None = (
            min(max(span[0][0], 0), last),
            min(max(span[1][0], span[0][0], 0), last),
        )
    else:
        lines_span = widen_to_lines(lines, span[0], span[1])
    if lines_span is None:
        return action
    model = ""
    try:
        target = make_target(lines, lines_span, language_of(ls, uri), display_path(ls, uri))
        async with session.use(cached=True) as provider:
            # Actions run on the chat model with its output budget and temperature.
            model = await session.model("actions")
            settings = session.request_settings("actions")
            async with ls.status.generation(model) as run:
                try:
                    outcome = await generate_edit(
                        provider, model, kind, target, settings, diagnostic=data.get("diagnostic")
                    )
                except KomaError as err:
                    run.error = str(err)
                    raise
                run.metrics = outcome.result.metrics
    except KomaError as err:
        if not model:
            ls.status.set("error", message=str(err))
        _report(ls, f"Koma: {action.title} failed: {err}")
        return action
    units = _units(ls)
    end_line = target.end_line
    line_end = (end_line, units(lines[end_line]))
    if kind == "tests":
        start, end, new_text = line_end, line_end, "\n\n" + outcome.new_text
    else:
        start, end, new_text = (target.start_line, 0), line_end, outcome.new_text
    edit_range = types.Range(
        start=types.Position(line=start[0], character=start[1]),
        end=types.Position(line=end[0], character=end[1]),
    )
    action.edit = types.WorkspaceEdit(changes={uri: [types.TextEdit(edit_range, new_text)]})
    ls.ledger.record(
        uri,
        start,
        end,
        new_text,
        action=action.title,
        model=outcome.result.model or model,
        reasoning=outcome.result.reasoning,
    )
    return action


def register(server: KomaLanguageServer) -> None:
    """Register listing and resolving of Koma's code actions."""
    options = types.CodeActionOptions(
        code_action_kinds=[
            types.CodeActionKind.QuickFix,
            types.CodeActionKind.RefactorRewrite,
            types.CodeActionKind.Source,
        ],
        resolve_provider=True,
    )

    @server.feature(types.TEXT_DOCUMENT_CODE_ACTION, options)
    def code_action(
        ls: KomaLanguageServer, params: types.CodeActionParams
    ) -> list[types.CodeAction] | None:
        return list_actions(ls, params) or None

    @server.feature(types.CODE_ACTION_RESOLVE)
    async def resolve(ls: KomaLanguageServer, action: types.CodeAction) -> types.CodeAction:
        return await resolve_action(ls, action)

"""The management commands: models, model choice, status, cache, doctor.

Chat commands live in `koma.lsp.chat`; loading, unloading and pulling models in
`koma.lsp.local_models`. These answer every call with a result object — a failure is a clear
`message`/`error` field, never a JSON-RPC error the editor would show as a stack trace — and
none of them touches the provider unless its job is about the provider.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from koma.errors import KomaError
from koma.lsp import protocol
from koma.lsp.params import first_argument
from koma.lsp.settings import (
    EDITOR_SOURCE,
    PICKED_SOURCE,
    apply_editor_settings,
    trust_state,
)

if TYPE_CHECKING:
    from koma.lsp.server import KomaLanguageServer

logger = logging.getLogger("koma.lsp.commands")


def current_models(ls: KomaLanguageServer) -> protocol.CurrentModels:
    return {"model": ls.settings.model, "completionModel": ls.settings.completion_model}


async def list_models(ls: KomaLanguageServer) -> protocol.ModelsReply:
    try:
        provider = await ls.provider()
        models = await provider.list_models()
    except KomaError as err:
        return {"models": [], "current": current_models(ls), "error": str(err)}
    return {"models": [protocol.model_entry(m) for m in models], "current": current_models(ls)}


def select_model(ls: KomaLanguageServer, params: dict[str, Any]) -> protocol.SelectModelReply:
    """Switch the chat (or completion) model for this connection; the editor's settings stay."""
    model = params.get("model")
    kind = params.get("kind") or "chat"
    if not isinstance(model, str) or not model.strip():
        return {**current_models(ls), "error": "koma.selectModel needs a `model` name"}
    if kind not in ("chat", "completion"):
        return {**current_models(ls), "error": f"kind {kind!r} is not chat or completion"}
    key = "model" if kind == "chat" else "completionModel"
    ls.state.settings.picked_section[key] = model.strip()
    apply_editor_settings(ls, None)
    return {**current_models(ls)}


async def status(ls: KomaLanguageServer) -> protocol.StatusReply:
    """The last status plus where the provider is — without probing for it."""
    provider = ls.current_provider
    name = provider.name if provider is not None else ls.settings.provider
    base_url = provider.base_url if provider is not None else ls.settings.base_url
    project = trust_state(ls).project
    return {
        **ls.status.last,
        "provider": name,
        "baseUrl": base_url,
        "projectConfig": project.to_dict() if project is not None else None,
        "completionRoute": ls.state.completion.route(),
    }


async def clear_cache(ls: KomaLanguageServer) -> protocol.ClearCacheReply:
    return {"cleared": ls.clear_caches()}


async def doctor(ls: KomaLanguageServer) -> dict[str, Any]:
    """The `koma doctor --json` report for the server's current settings (the engine's shape)."""
    from koma.engine.doctor import run_doctor
    from koma.settings.layers import gather_sources

    # engine.lifecycle.checks registers the local-model rows (memory, quantization, …) on import,
    # as `koma doctor` does, so both reports match.
    importlib.import_module("koma.engine.lifecycle.checks")
    provider = None
    problem: KomaError | None = None
    try:
        provider = await ls.provider()
    except KomaError as err:
        problem = err
    state = trust_state(ls)
    try:
        found = gather_sources(
            None,
            workspace=ls.workspace_root,
            search_cwd=False,
            workspace_trusted=state.workspace_trusted,
        )
        sources = [layer.source for layer in found.layers]
    except KomaError:
        sources = []
    if ls.state.settings.editor_section:
        sources.append(EDITOR_SOURCE)
    if ls.state.settings.picked_section:
        sources.append(PICKED_SOURCE)
    report = await run_doctor(
        ls.settings,
        provider,
        provider_error=problem,
        sources=sources,
        project=state.project,
        warnings=state.warnings,
    )
    return report.to_dict()


def register(server: KomaLanguageServer) -> None:
    """Register the management commands."""

    @server.command("koma.models")
    async def models_command(ls: KomaLanguageServer, *args: Any) -> protocol.ModelsReply:
        return await list_models(ls)

    @server.command("koma.selectModel")
    def select_model_command(ls: KomaLanguageServer, *args: Any) -> protocol.SelectModelReply:
        return select_model(ls, first_argument(args))

    @server.command("koma.status")
    async def status_command(ls: KomaLanguageServer, *args: Any) -> protocol.StatusReply:
        return await status(ls)

    @server.command("koma.clearCache")
    async def clear_cache_command(ls: KomaLanguageServer, *args: Any) -> protocol.ClearCacheReply:
        return await clear_cache(ls)

    @server.command("koma.doctor")
    async def doctor_command(ls: KomaLanguageServer, *args: Any) -> dict[str, Any]:
        return await doctor(ls)

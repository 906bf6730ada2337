"""The management commands: models, model choice, status, cache, preload/unload, doctor.

Chat commands live in `koma.lsp.chat`. These answer every call with a result object — a
failure is a clear `message`/`error` field, never a JSON-RPC error the editor would show as a
stack trace — and none of them touches the provider unless its job is about the provider.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from koma.errors import KomaError
from koma.lsp.chat import first_argument
from koma.lsp.settings import (
    EDITOR_SOURCE,
    SESSION_SOURCE,
    apply_editor_settings,
    trust_state,
)

if TYPE_CHECKING:
    from koma.lsp.server import KomaLanguageServer
    from koma.types import ModelInfo

logger = logging.getLogger("koma.lsp.commands")


def model_payload(model: ModelInfo) -> dict[str, Any]:
    return {
        "name": model.name,
        "loaded": model.loaded,
        "sizeBytes": model.size_bytes,
        "quantization": model.quantization,
        "capabilities": list(model.capabilities),
        "contextLength": model.context_length,
    }


def current_models(ls: KomaLanguageServer) -> dict[str, Any]:
    return {"model": ls.settings.model, "completionModel": ls.settings.completion_model}


async def list_models(ls: KomaLanguageServer) -> dict[str, Any]:
    try:
        provider = await ls.provider()
        models = await provider.list_models()
    except KomaError as err:
        return {"models": [], "current": current_models(ls), "error": str(err)}
    return {"models": [model_payload(m) for m in models], "current": current_models(ls)}


def select_model(ls: KomaLanguageServer, params: dict[str, Any]) -> dict[str, Any]:
    """Switch the chat (or completion) model for this session; the editor's settings stay."""
    model = params.get("model")
    kind = params.get("kind") or "chat"
    if not isinstance(model, str) or not model.strip():
        return {**current_models(ls), "error": "koma.selectModel needs a `model` name"}
    if kind not in ("chat", "completion"):
        return {**current_models(ls), "error": f"kind {kind!r} is not chat or completion"}
    key = "model" if kind == "chat" else "completionModel"
    ls.session_section[key] = model.strip()
    apply_editor_settings(ls, None)
    return current_models(ls)


async def status(ls: KomaLanguageServer) -> dict[str, Any]:
    """The last status plus where the provider is — without probing for it."""
    provider = ls.current_provider
    name = provider.name if provider is not None else ls.settings.provider
    base_url = provider.base_url if provider is not None else ls.settings.base_url
    project = trust_state(ls).project
    from koma.lsp.inline_completion import route_status

    return {
        **ls.status.last,
        "provider": name,
        "baseUrl": base_url,
        "projectConfig": project.to_dict() if project is not None else None,
        "completionRoute": route_status(ls),
    }


async def clear_cache(ls: KomaLanguageServer) -> dict[str, Any]:
    return {"cleared": ls.clear_caches()}


def _supports_progress(ls: KomaLanguageServer) -> bool:
    window = ls.client_capabilities.window
    return bool(window is not None and window.work_done_progress)


async def begin_progress(ls: KomaLanguageServer, begin: types.WorkDoneProgressBegin) -> str | None:
    """Start a `$/progress` when the client shows progress; its token, or None without one."""
    if not _supports_progress(ls):
        return None
    token = f"koma-{uuid.uuid4().hex[:8]}"
    try:
        await ls.work_done_progress.create_async(token)
        ls.work_done_progress.begin(token, begin)
    except Exception as err:  # any client failure: the command still runs, without a bar
        logger.info("progress not available: %s", err)
        return None
    return token


async def _with_progress(
    ls: KomaLanguageServer, title: str, work: Callable[[], Awaitable[str]]
) -> str:
    """Run `work` inside a `$/progress` begin/end pair when the client shows progress."""
    token = await begin_progress(ls, types.WorkDoneProgressBegin(title=title))
    try:
        return await work()
    finally:
        if token is not None:
            ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message="done"))


async def lifecycle(ls: KomaLanguageServer, params: dict[str, Any], load: bool) -> dict[str, Any]:
    """`koma.preload` / `koma.unload`: ask the provider; say plainly when it cannot."""
    verb = "load" if load else "unload"
    model: str | None = params.get("model") if isinstance(params.get("model"), str) else None
    try:
        provider = await ls.provider()
        model = model or await ls.resolve_model("chat")
        chosen = model

        async def work() -> str:
            if load:
                return await provider.load(chosen, keep_alive=ls.settings.keep_alive)
            return await provider.unload(chosen)

        if load:
            ls.status.set("loading", model=model, message=f"loading {model}")
        message = await _with_progress(ls, f"Koma: {verb}ing {model}", work)
    except KomaError as err:
        if load:
            ls.status.set("idle", model=model)
        return {"ok": False, "message": str(err)}
    if load:
        ls.status.set("idle", model=model)
    return {"ok": True, "message": message or f"{model} {verb}ed"}


async def doctor(ls: KomaLanguageServer) -> dict[str, Any]:
    """The `koma doctor --json` report for the server's current settings."""
    from koma.engine.doctor import run_doctor
    from koma.settings.layers import gather_sources

    # The lifecycle module registers the local-model rows (memory, quantization, …) on import,
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
    if ls.editor_section:
        sources.append(EDITOR_SOURCE)
    if ls.session_section:
        sources.append(SESSION_SOURCE)
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
    """Register the management commands and `preloadOnOpen`."""

    @server.command("koma.models")
    async def models_command(ls: KomaLanguageServer, *args: Any) -> dict[str, Any]:
        return await list_models(ls)

    @server.command("koma.selectModel")
    def select_model_command(ls: KomaLanguageServer, *args: Any) -> dict[str, Any]:
        return select_model(ls, first_argument(args))

    @server.command("koma.status")
    async def status_command(ls: KomaLanguageServer, *args: Any) -> dict[str, Any]:
        return await status(ls)

    @server.command("koma.clearCache")
    async def clear_cache_command(ls: KomaLanguageServer, *args: Any) -> dict[str, Any]:
        return await clear_cache(ls)

    @server.command("koma.preload")
    async def preload_command(ls: KomaLanguageServer, *args: Any) -> dict[str, Any]:
        return await lifecycle(ls, first_argument(args), load=True)

    @server.command("koma.unload")
    async def unload_command(ls: KomaLanguageServer, *args: Any) -> dict[str, Any]:
        return await lifecycle(ls, first_argument(args), load=False)

    @server.command("koma.doctor")
    async def doctor_command(ls: KomaLanguageServer, *args: Any) -> dict[str, Any]:
        return await doctor(ls)

    preloaded = False

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: KomaLanguageServer, params: types.DidOpenTextDocumentParams) -> None:
        nonlocal preloaded
        if preloaded or not ls.settings.preload_on_open:
            return
        preloaded = True
        task = asyncio.ensure_future(lifecycle(ls, {}, load=True))
        _background.add(task)
        task.add_done_callback(_background.discard)


# Strong references to fire-and-forget tasks so they are not collected mid-flight.
_background: set[asyncio.Task[Any]] = set()

"""The models the user runs locally, seen from the editor: loading, unloading, pulling, memory.

- **`koma.preload` / `koma.unload`** `[{"model"?}]` ask the provider to load (with `keepAlive`
  and `$/progress`) or unload a model, the chat model by default; servers that manage their own
  models say plainly that they cannot. `preloadOnOpen` loads the chat model when the first
  document opens.
- **Auto-unload.** With `memory.autoUnloadMinutes` or `memory.maxMemoryGb` set, a timer asks
  the server what is loaded (Ollama `/api/ps`, LM Studio's model state) and unloads models idle
  that long, then the least recently used ones while more than `maxMemoryGb` is loaded; the
  configured chat and completion models are the last to go for the budget. Each unload is
  logged with `window/logMessage`.
- **`koma.pull`** `[{"model"}]` downloads a model (Ollama) and reports `$/progress` — percentage,
  bytes, speed and time left — with a cancellable progress; `window/workDoneProgress/cancel` or
  `koma.pull.cancel` `[{"model"?}]` stop it (Ollama resumes it next time). Returns
  `{"ok", "message", "cancelled"?}`.
- **Eviction warning.** When the chat model and the completion model cannot both stay loaded,
  `window/showMessage` says so once per pair: they would evict each other at every switch.

What this keeps between requests is `ls.state.local_models`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from koma.errors import KomaError
from koma.lsp import protocol
from koma.lsp.params import first_argument
from koma.lsp.progress import begin_progress, end_progress, with_progress

# engine.lifecycle (psutil, the memory manager, pulls) is imported on first use, after the
# `initialize` reply (docs/performance.md, cold start).
if TYPE_CHECKING:
    from koma.engine.lifecycle.memory import MemoryManager
    from koma.engine.lifecycle.pull import PullSnapshot
    from koma.lsp.server import KomaLanguageServer
    from koma.settings import KomaSettings

logger = logging.getLogger("koma.lsp.local_models")

MIN_TICK_SECONDS = 0.5
MAX_TICK_SECONDS = 30.0
BUDGET_ONLY_TICK_SECONDS = 15.0


def tick_seconds(settings: KomaSettings) -> float:
    """Check four times per idle period (bounded), so a model goes within 25 % of the limit."""
    minutes = settings.memory.auto_unload_minutes
    if minutes is None:
        return BUDGET_ONLY_TICK_SECONDS
    return max(MIN_TICK_SECONDS, min(MAX_TICK_SECONDS, minutes * 60 / 4))


# -- load and unload -------------------------------------------------------------------------


async def load_or_unload(
    ls: KomaLanguageServer, params: dict[str, Any], load: bool
) -> protocol.ModelJobReply:
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
        message = await with_progress(ls, f"Koma: {verb}ing {model}", work)
    except KomaError as err:
        if load:
            ls.status.set("idle", model=model)
        return {"ok": False, "message": str(err)}
    if load:
        ls.status.set("idle", model=model)
    return {"ok": True, "message": message or f"{model} {verb}ed"}


# -- memory ----------------------------------------------------------------------------------


def manager(ls: KomaLanguageServer) -> MemoryManager:
    """The memory manager, made when settings first arrive."""
    state = ls.state.local_models
    if state.manager is None:
        from koma.engine.lifecycle.memory import MemoryManager

        state.manager = MemoryManager()
    return state.manager


def configure(ls: KomaLanguageServer, settings: KomaSettings) -> None:
    """Apply `memory.*` and `keepAlive`; (re)start or stop the timer accordingly."""
    state = ls.state.local_models
    memory = settings.memory
    manager(ls).configure(
        max_memory_gb=memory.max_memory_gb,
        auto_unload_minutes=memory.auto_unload_minutes,
        keep_alive=settings.keep_alive,
    )
    if state.timer is not None:
        state.timer.cancel()
        state.timer = None
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return  # settings applied before the server runs; `initialized` starts the timer
    if manager(ls).enabled:
        state.timer = asyncio.ensure_future(_watch(ls, tick_seconds(settings)))
    state.spawn(check_pair(ls, settings))


async def _watch(ls: KomaLanguageServer, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        await tick(ls)


async def tick(ls: KomaLanguageServer) -> None:
    keep = [m for m in (ls.settings.model, ls.settings.completion_model) if m]
    try:
        actions = await manager(ls).tick(await ls.provider(), keep=keep)
    except KomaError as err:
        logger.info("memory check skipped: %s", err)
        return
    for action in actions:
        kind = types.MessageType.Info if action.ok else types.MessageType.Warning
        _log(ls, kind, f"Koma: {action.message}")


async def check_pair(ls: KomaLanguageServer, settings: KomaSettings) -> None:
    """Warn once when the chat and completion models would evict each other."""
    warned = ls.state.local_models.warned
    chat, completion = settings.model, settings.completion_model
    if not chat or not completion or chat == completion or (chat, completion) in warned:
        return
    warned.add((chat, completion))  # checked once per pair, even when it fits
    try:
        models = await (await ls.provider()).list_models()
    except KomaError as err:
        logger.info("pair check skipped: %s", err)
        warned.discard((chat, completion))  # try again at the next settings change
        return
    from koma.engine.lifecycle.hardware import probe_memory
    from koma.engine.lifecycle.memory import pair_warning

    by_name = {m.name: m for m in models}
    warning = pair_warning(
        by_name.get(chat),
        by_name.get(completion),
        max_memory_gb=settings.memory.max_memory_gb,
        memory=await asyncio.to_thread(probe_memory),
    )
    if warning is None:
        return
    ls.window_show_message(
        types.ShowMessageParams(type=types.MessageType.Warning, message=f"Koma: {warning}")
    )


# -- pull ------------------------------------------------------------------------------------


async def pull(ls: KomaLanguageServer, params: dict[str, Any]) -> protocol.ModelJobReply:
    pulls = ls.state.local_models.pulls
    model = params.get("model")
    if not isinstance(model, str) or not model.strip():
        return {"ok": False, "message": "koma.pull needs a `model` name, e.g. gpt-oss:20b"}
    model = model.strip()
    if model in pulls:
        return {"ok": False, "message": f"{model} is already being pulled"}
    try:
        provider = await ls.provider()
    except KomaError as err:
        return {"ok": False, "message": str(err)}
    from koma.engine.lifecycle.hardware import gb
    from koma.engine.lifecycle.pull import pull_model

    token = await begin_progress(
        ls,
        types.WorkDoneProgressBegin(title=f"Koma: pulling {model}", cancellable=True, percentage=0),
    )
    task = asyncio.ensure_future(pull_model(provider, model, _reporter(ls, token)))
    pulls[model] = task
    if token is not None:
        _on_progress_cancel(ls, token, task)
    try:
        final = await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # the request itself was cancelled: let pygls answer it
        message = f"pull of {model} cancelled; koma.pull again resumes it"
        return {"ok": False, "cancelled": True, "message": message}
    except KomaError as err:
        return {"ok": False, "message": str(err)}
    finally:
        pulls.pop(model, None)
        end_progress(ls, token, forget=True)
    size = f" ({gb(final.total)})" if final.total else ""
    return {"ok": True, "message": f"pulled {model}{size}"}


def cancel_pull(ls: KomaLanguageServer, params: dict[str, Any]) -> protocol.PullCancelReply:
    pulls = ls.state.local_models.pulls
    model = params.get("model")
    targets = [model] if isinstance(model, str) else list(pulls)
    cancelled = [name for name in targets if name in pulls and pulls[name].cancel()]
    return {"cancelled": bool(cancelled), "models": cancelled}


def _reporter(ls: KomaLanguageServer, token: str | None) -> Callable[[PullSnapshot], None]:
    last: list[tuple[str, int | None]] = [("", None)]

    def report(snapshot: PullSnapshot) -> None:
        if token is None:
            return
        fraction = snapshot.fraction
        percentage = int(fraction * 100) if fraction is not None else None
        if (snapshot.status, percentage) == last[0]:
            return
        last[0] = (snapshot.status, percentage)
        ls.work_done_progress.report(
            token,
            types.WorkDoneProgressReport(
                message=describe(snapshot), percentage=percentage, cancellable=True
            ),
        )

    return report


def _on_progress_cancel(
    ls: KomaLanguageServer, token: str, task: asyncio.Task[PullSnapshot]
) -> None:
    future: Future[Any] | None = ls.work_done_progress.tokens.get(token)
    if future is None:
        return
    loop = asyncio.get_running_loop()

    def cancelled(done: Future[Any]) -> None:
        if done.cancelled():
            loop.call_soon_threadsafe(task.cancel)

    future.add_done_callback(cancelled)


def describe(snapshot: PullSnapshot) -> str:
    """`12.3 GB / 65.4 GB · 210.0 MB/s · 4:10 left` (or just the status before sizes exist)."""
    from koma.engine.lifecycle.hardware import gb
    from koma.engine.lifecycle.pull import format_eta

    if snapshot.total is None or snapshot.completed is None:
        return snapshot.status
    parts = [f"{gb(snapshot.completed)} / {gb(snapshot.total)}"]
    if snapshot.bytes_per_second:
        parts.append(f"{snapshot.bytes_per_second / 1e6:.1f} MB/s")
    if snapshot.eta_seconds is not None and not snapshot.done:
        parts.append(f"{format_eta(snapshot.eta_seconds)} left")
    return " · ".join(parts)


def _log(ls: KomaLanguageServer, kind: types.MessageType, message: str) -> None:
    try:
        ls.window_log_message(types.LogMessageParams(type=kind, message=message))
    except Exception:  # a lost log line must never fail the operation it reports on
        logger.debug("could not send a log message", exc_info=True)


def register(server: KomaLanguageServer) -> None:
    """Load, unload and pull commands, `preloadOnOpen`, auto-unload and the eviction warning."""

    @server.feature(types.INITIALIZED)
    def on_initialized(ls: KomaLanguageServer, params: types.InitializedParams) -> None:
        configure(ls, ls.settings)

    server.on_settings_changed(lambda new: configure(server, new))

    @server.feature(types.SHUTDOWN)
    def on_shutdown(ls: KomaLanguageServer, params: Any) -> None:
        ls.state.local_models.stop()

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: KomaLanguageServer, params: types.DidOpenTextDocumentParams) -> None:
        state = ls.state.local_models
        if state.preloaded or not ls.settings.preload_on_open:
            return
        state.preloaded = True
        state.spawn(load_or_unload(ls, {}, load=True))

    @server.command("koma.preload")
    async def preload_command(ls: KomaLanguageServer, *args: Any) -> protocol.ModelJobReply:
        return await load_or_unload(ls, first_argument(args), load=True)

    @server.command("koma.unload")
    async def unload_command(ls: KomaLanguageServer, *args: Any) -> protocol.ModelJobReply:
        return await load_or_unload(ls, first_argument(args), load=False)

    @server.command("koma.pull")
    async def pull_command(ls: KomaLanguageServer, *args: Any) -> protocol.ModelJobReply:
        return await pull(ls, first_argument(args))

    @server.command("koma.pull.cancel")
    def cancel_command(ls: KomaLanguageServer, *args: Any) -> protocol.PullCancelReply:
        return cancel_pull(ls, first_argument(args))

"""Model lifecycle in the editor: idle unloading, pulls with `$/progress`, eviction warnings.

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

Preloading when the first document opens (`preloadOnOpen`) and `koma.preload` / `koma.unload`
live in `koma.lsp.commands`; they load with the same computed context as chat does.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from koma.errors import KomaError
from koma.lsp.chat import first_argument
from koma.lsp.commands import begin_progress

# engine.lifecycle (psutil, the memory manager, pulls) is imported on first use, after the
# `initialize` reply (docs/performance.md, cold start).
if TYPE_CHECKING:
    from koma.engine.lifecycle.memory import MemoryManager
    from koma.engine.lifecycle.pull import PullSnapshot
    from koma.lsp.server import KomaLanguageServer
    from koma.settings import KomaSettings

logger = logging.getLogger("koma.lsp.lifecycle")

MIN_TICK_SECONDS = 0.5
MAX_TICK_SECONDS = 30.0
BUDGET_ONLY_TICK_SECONDS = 15.0


def tick_seconds(settings: KomaSettings) -> float:
    """Check four times per idle period (bounded), so a model goes within 25 % of the limit."""
    minutes = settings.memory.auto_unload_minutes
    if minutes is None:
        return BUDGET_ONLY_TICK_SECONDS
    return max(MIN_TICK_SECONDS, min(MAX_TICK_SECONDS, minutes * 60 / 4))


class Lifecycle:
    """Per-server state: the memory manager, its timer, pulls in flight, warned pairs."""

    def __init__(self, server: KomaLanguageServer) -> None:
        self.server = server
        self._manager: MemoryManager | None = None
        self.timer: asyncio.Task[None] | None = None
        self.pulls: dict[str, asyncio.Task[PullSnapshot]] = {}
        self.warned: set[tuple[str, str]] = set()  # (chat, completion) pairs already checked
        self.background: set[asyncio.Task[Any]] = set()

    @property
    def manager(self) -> MemoryManager:
        """The memory manager, made when settings first arrive."""
        if self._manager is None:
            from koma.engine.lifecycle.memory import MemoryManager

            self._manager = MemoryManager()
        return self._manager

    # -- memory ------------------------------------------------------------------------------

    def configure(self, settings: KomaSettings) -> None:
        """Apply `memory.*` and `keepAlive`; (re)start or stop the timer accordingly."""
        memory = settings.memory
        self.manager.configure(
            max_memory_gb=memory.max_memory_gb,
            auto_unload_minutes=memory.auto_unload_minutes,
            keep_alive=settings.keep_alive,
        )
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # settings applied before the server runs; `initialized` starts the timer
        if self.manager.enabled:
            self.timer = asyncio.ensure_future(self._watch(tick_seconds(settings)))
        self.spawn(self.check_pair(settings))

    async def _watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.tick()

    async def tick(self) -> None:
        ls = self.server
        keep = [m for m in (ls.settings.model, ls.settings.completion_model) if m]
        try:
            actions = await self.manager.tick(await ls.provider(), keep=keep)
        except KomaError as err:
            logger.info("memory check skipped: %s", err)
            return
        for action in actions:
            kind = types.MessageType.Info if action.ok else types.MessageType.Warning
            self._log(kind, f"Koma: {action.message}")

    async def check_pair(self, settings: KomaSettings) -> None:
        """Warn once when the chat and completion models would evict each other."""
        chat, completion = settings.model, settings.completion_model
        if not chat or not completion or chat == completion or (chat, completion) in self.warned:
            return
        self.warned.add((chat, completion))  # checked once per pair, even when it fits
        try:
            models = await (await self.server.provider()).list_models()
        except KomaError as err:
            logger.info("pair check skipped: %s", err)
            self.warned.discard((chat, completion))  # try again at the next settings change
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
        self.server.window_show_message(
            types.ShowMessageParams(type=types.MessageType.Warning, message=f"Koma: {warning}")
        )

    # -- pull --------------------------------------------------------------------------------

    async def pull(self, params: dict[str, Any]) -> dict[str, Any]:
        model = params.get("model")
        if not isinstance(model, str) or not model.strip():
            return {"ok": False, "message": "koma.pull needs a `model` name, e.g. gpt-oss:20b"}
        model = model.strip()
        if model in self.pulls:
            return {"ok": False, "message": f"{model} is already being pulled"}
        try:
            provider = await self.server.provider()
        except KomaError as err:
            return {"ok": False, "message": str(err)}
        from koma.engine.lifecycle.hardware import gb
        from koma.engine.lifecycle.pull import pull_model

        token = await begin_progress(
            self.server,
            types.WorkDoneProgressBegin(
                title=f"Koma: pulling {model}", cancellable=True, percentage=0
            ),
        )
        task = asyncio.ensure_future(pull_model(provider, model, self._reporter(token)))
        self.pulls[model] = task
        if token is not None:
            self._on_progress_cancel(token, task)
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
            self.pulls.pop(model, None)
            self._end(token)
        size = f" ({gb(final.total)})" if final.total else ""
        return {"ok": True, "message": f"pulled {model}{size}"}

    def cancel_pull(self, params: dict[str, Any]) -> dict[str, Any]:
        model = params.get("model")
        targets = [model] if isinstance(model, str) else list(self.pulls)
        cancelled = [name for name in targets if name in self.pulls and self.pulls[name].cancel()]
        return {"cancelled": bool(cancelled), "models": cancelled}

    def _reporter(self, token: str | None) -> Any:
        last: list[tuple[str, int | None]] = [("", None)]

        def report(snapshot: PullSnapshot) -> None:
            if token is None:
                return
            fraction = snapshot.fraction
            percentage = int(fraction * 100) if fraction is not None else None
            if (snapshot.status, percentage) == last[0]:
                return
            last[0] = (snapshot.status, percentage)
            self.server.work_done_progress.report(
                token,
                types.WorkDoneProgressReport(
                    message=describe(snapshot), percentage=percentage, cancellable=True
                ),
            )

        return report

    def _on_progress_cancel(self, token: str, task: asyncio.Task[PullSnapshot]) -> None:
        future: Future[Any] | None = self.server.work_done_progress.tokens.get(token)
        if future is None:
            return
        loop = asyncio.get_running_loop()

        def cancelled(done: Future[Any]) -> None:
            if done.cancelled():
                loop.call_soon_threadsafe(task.cancel)

        future.add_done_callback(cancelled)

    def _end(self, token: str | None) -> None:
        if token is None:
            return
        self.server.work_done_progress.end(token, types.WorkDoneProgressEnd(message="done"))
        self.server.work_done_progress.tokens.pop(token, None)

    # -- plumbing ----------------------------------------------------------------------------

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def _log(self, kind: types.MessageType, message: str) -> None:
        try:
            self.server.window_log_message(types.LogMessageParams(type=kind, message=message))
        except Exception:  # a lost log line must never fail the operation it reports on
            logger.debug("could not send a log message", exc_info=True)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for task in list(self.pulls.values()) + list(self.background):
            task.cancel()


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


def register(server: KomaLanguageServer) -> None:
    """`koma.pull`, `koma.pull.cancel`, the auto-unload timer and the eviction warning."""
    state = Lifecycle(server)

    @server.feature(types.INITIALIZED)
    def on_initialized(ls: KomaLanguageServer, params: types.InitializedParams) -> None:
        state.configure(ls.settings)

    def on_settings(new: KomaSettings) -> None:
        state.configure(new)

    server.on_settings_changed(on_settings)

    @server.feature(types.SHUTDOWN)
    def on_shutdown(ls: KomaLanguageServer, params: Any) -> None:
        state.stop()

    @server.command("koma.pull")
    async def pull_command(ls: KomaLanguageServer, *args: Any) -> dict[str, Any]:
        return await state.pull(first_argument(args))

    @server.command("koma.pull.cancel")
    def cancel_command(ls: KomaLanguageServer, *args: Any) -> dict[str, Any]:
        return state.cancel_pull(first_argument(args))

"""What each feature keeps between requests, held one way: a typed object per feature, owned by
the server instance (`ls.state.chat`, `ls.state.completion`, …).

State that outlives a request lives here and nowhere else — not in module globals (which two
servers in one process, as in the tests, would share), not in closures (which nothing else can
inspect or stop), not as loose server attributes. A feature module reads and writes its own
object; the server reaches in only to end things at shutdown. Nothing here imports the engine
at run time, and the classes are plain (no dataclass code generation): the server makes these
objects before the `initialize` reply.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from koma.lsp import protocol

if TYPE_CHECKING:
    from koma.engine.completion.pipeline import CompletionPipeline
    from koma.engine.lifecycle.memory import MemoryManager
    from koma.engine.lifecycle.pull import PullSnapshot
    from koma.trust import ProjectConfig

# Chats whose "Allow for this chat" answers are remembered.
MAX_REMEMBERED_CHATS = 100


class SettingsState:
    """The editor's settings sections as they arrived (`lsp/settings.py`)."""

    def __init__(self) -> None:
        # The `koma` section from initializationOptions, and the editor's section in force
        # (initializationOptions overlaid by the latest workspace/configuration answer).
        self.initial_section: dict[str, Any] = {}
        self.editor_section: dict[str, Any] = {}
        # Choices made with `koma.selectModel` on this connection; they sit above the editor's
        # settings.
        self.picked_section: dict[str, Any] = {}


class TrustState:
    """What the client said about trust, and what became of the project file."""

    def __init__(self) -> None:
        # The client shows `koma/untrustedConfig` as a prompt (else: window/showMessage).
        self.trust_prompt: bool = False
        # False: VS Code's Restricted Mode.
        self.workspace_trusted: bool = True
        self.project: ProjectConfig | None = None
        self.warnings: list[str] = []
        # Warnings already shown this run: (path, sha256) for a project file, the text otherwise.
        self.shown: set[tuple[str, str]] = set()
        # Until `initialized`, notifications wait (a client may not listen before it).
        self.ready: bool = False


class ChatState:
    """Running turns by chat id, so they can be cancelled and do not interleave."""

    def __init__(self) -> None:
        self.running: dict[str, asyncio.Task[Any]] = {}
        self.locks: dict[str, asyncio.Lock] = {}

    def cancel(self, chat_id: str) -> bool:
        task = self.running.get(chat_id)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    async def stop(self, grace_seconds: float) -> None:
        """Cancel every running turn and give each `grace_seconds` to reply as cancelled.

        At shutdown the providers are closed next; a turn still streaming would otherwise fail
        with the HTTP client's "client has been closed" instead of ending as cancelled, and
        pygls would then cancel the request itself while it walks its table of running requests.
        """
        tasks = [task for task in self.running.values() if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=grace_seconds)
            for _ in range(3):  # let each command handler send its "cancelled" reply
                await asyncio.sleep(0)


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


class CompletionState:
    """The completion pipeline (made on first use, after `initialize`) and the settings it was
    configured for."""

    def __init__(self) -> None:
        self.pipeline: CompletionPipeline | None = None
        self.settings_key: tuple[object, ...] | None = None

    def route(self) -> protocol.CompletionRoute | None:
        """The route of the latest completion (`koma.status`), None before the first."""
        if self.pipeline is None or self.pipeline.last_route is None:
            return None
        model, choice = self.pipeline.last_route
        return protocol.completion_route(model, choice)


class LocalModelsState:
    """The memory manager, its timer, pulls in flight, warned pairs, the preload on open."""

    def __init__(self) -> None:
        self.manager: MemoryManager | None = None
        self.timer: asyncio.Task[None] | None = None
        self.pulls: dict[str, asyncio.Task[PullSnapshot]] = {}
        self.warned: set[tuple[str, str]] = set()  # (chat, completion) pairs checked
        self.preloaded: bool = False  # `preloadOnOpen` ran for the first document
        # Strong references to fire-and-forget tasks so they are not collected mid-flight.
        self.background: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for task in list(self.pulls.values()) + list(self.background):
            task.cancel()


class ExposureState:
    """The redactor built for the settings and provider identified by `key` (`lsp/exposure.py`)."""

    def __init__(self) -> None:
        self.key: tuple[object, ...] | None = None
        self.redactor: Callable[[str], str] | None = None


class FeatureState:
    """Every feature's state; one per server (`KomaLanguageServer.state`)."""

    def __init__(self) -> None:
        self.settings: SettingsState = SettingsState()
        self.trust: TrustState = TrustState()
        self.chat: ChatState = ChatState()
        self.tools: ToolState = ToolState()
        self.completion: CompletionState = CompletionState()
        self.local_models: LocalModelsState = LocalModelsState()
        self.exposure: ExposureState = ExposureState()

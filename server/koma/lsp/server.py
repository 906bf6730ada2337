"""The Koma language server: shared state, provider access, and the builder that wires features.

Every LSP feature lives in its own module under `koma.lsp` with a `register(server)` function;
this module only holds what they share — the current valid settings, the engine `Session`
that turns them into provider, model and request settings (`koma.engine.session`, made on first
use and reconfigured on every settings change), the status reporter — and the entry point
`main()` that `koma lsp` calls.

Startup must stay fast (an editor waits for the `initialize` reply), so nothing here touches the
network or imports the engine, pydantic or the providers before that reply: the settings sent
with `initialize` are validated when first read (at the latest on `initialized`), the
conversation store, ledger and session are made on first use, and the provider is resolved
the first time a feature needs it. Right after `initialized`, a worker thread imports the
engine and the providers (`preload_engine`); chat, actions and the provider wait for that
without holding the event loop, so `koma.status` keeps answering during the first chat.
`benchmarks/cold_start.py` measures what is left.

Several features need the same document and connection notifications (`initialize` … `shutdown`);
the base class in `koma.lsp.fanout` hands each of them to every module that registers a listener.
What a feature keeps between requests is `state` (`koma.lsp.state`), one typed object per feature.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lsprotocol import types
from pygls.uris import to_fs_path

from koma.errors import KomaError
from koma.lsp.args import add_lsp_arguments
from koma.lsp.fanout import FanoutLanguageServer
from koma.lsp.state import FeatureState
from koma.lsp.status import StatusReporter

if TYPE_CHECKING:
    from koma.engine.chat import ChatStore
    from koma.engine.ledger import ReasoningLedger
    from koma.engine.session import Session
    from koma.engine.tools.loop import ToolLoop
    from koma.providers.base import Provider
    from koma.settings import KomaSettings

logger = logging.getLogger("koma.lsp")

# Builds the tools for one chat turn: (server, chat id, context tokens) -> tools or None.
ToolLoopFactory = Callable[["KomaLanguageServer", str, int], "ToolLoop | None"]
# How long shutdown waits for running chat turns to end after cancelling them.
SHUTDOWN_GRACE_SECONDS = 2.0


# What the first chat, action or completion would otherwise import on the event loop (over a
# second on a busy machine, with `koma.status` waiting behind it). Imported in a worker thread
# right after `initialized` — after the `initialize` reply, so the cold start does not pay.
_ENGINE_MODULES = (
    "koma.settings",
    "koma.types",
    "koma.providers.registry",
    "koma.engine.lifecycle.context",
    "koma.engine.cache",
    "koma.engine.session",
    "koma.engine.chat",
    "koma.engine.actions",
    "koma.engine.tools.loop",
    "koma.engine.tools.workspace",
)


def _import_engine() -> None:
    """Import `_ENGINE_MODULES` (in a worker thread). A failure is only logged: the feature
    that needs the module imports it again and reports the error where the user sees it."""
    import importlib

    for name in _ENGINE_MODULES:
        try:
            importlib.import_module(name)
        except Exception:
            logger.exception("preloading %s failed", name)


def _version() -> str:
    """Koma's version (`importlib.metadata` would cost the editor tens of milliseconds)."""
    from koma import __version__

    return __version__


class KomaLanguageServer(FanoutLanguageServer):
    """Server state shared by the feature modules."""

    def __init__(self) -> None:
        super().__init__(
            "koma", _version(), text_document_sync_kind=types.TextDocumentSyncKind.Incremental
        )
        self._settings: KomaSettings | None = None
        self._pending_settings: Callable[[], None] | None = None
        # What each feature keeps between requests (`koma.lsp.state`).
        self.state = FeatureState()
        self._tool_loop: ToolLoopFactory | None = None
        self.workspace_root: Path | None = None
        self.client_supports_inline_completion: bool = False
        self.status: StatusReporter = StatusReporter(self)
        self._settings_callbacks: list[Callable[[KomaSettings], None]] = []
        self._session: Session | None = None
        self._cache_clearers: list[Callable[[], int]] = []
        self._ledger: ReasoningLedger | None = None
        self._chats: ChatStore | None = None
        self._engine_loading: asyncio.Future[None] | None = None

    @property
    def ledger(self) -> ReasoningLedger:
        """The reasoning ledger (AI edits), made on first use."""
        if self._ledger is None:
            from koma.engine.ledger import ReasoningLedger

            self._ledger = ReasoningLedger()
        return self._ledger

    @property
    def chats(self) -> ChatStore:
        """The conversations, made on first use."""
        if self._chats is None:
            from koma.engine.chat import ChatStore

            self._chats = ChatStore()
        return self._chats

    # -- settings ------------------------------------------------------------------------------

    @property
    def settings(self) -> KomaSettings:
        """The valid settings in force; reading them first applies those `initialize` sent."""
        self.apply_pending_settings()
        if self._settings is None:
            from koma.settings import KomaSettings

            self._settings = KomaSettings()
        return self._settings

    @settings.setter
    def settings(self, value: KomaSettings) -> None:
        self._settings = value

    def defer_settings(self, apply: Callable[[], None]) -> None:
        """Run `apply` (reading and validating settings) when they are first needed.

        The `initialize` handler hands its work over here, so the reply does not wait for
        pydantic and the configuration files; `initialized` or any earlier read runs it.
        """
        self._pending_settings = apply

    def apply_pending_settings(self) -> None:
        """Apply the settings `initialize` sent, if that has not happened yet."""
        pending, self._pending_settings = self._pending_settings, None
        if pending is not None:
            pending()

    def on_settings_changed(self, callback: Callable[[KomaSettings], None]) -> None:
        """Call `callback(new_settings)` after every accepted settings change."""
        self._settings_callbacks.append(callback)

    def apply_settings(self, new: KomaSettings) -> bool:
        """Make `new` the settings in force; returns whether anything changed."""
        old = self.settings
        if new == old:
            return False
        self.settings = new
        if self._session is not None:
            self._session.reconfigure(new)  # retires the provider when its settings changed
        for callback in list(self._settings_callbacks):
            try:
                callback(new)
            except Exception:  # one feature's bug must not keep the others on old settings
                logger.exception("settings callback failed")
        return True

    def on_clear_cache(self, clearer: Callable[[], int]) -> None:
        """Register a cache to empty on `koma.clearCache`; `clearer()` returns entries dropped."""
        self._cache_clearers.append(clearer)

    def clear_caches(self) -> int:
        """Empty the response cache and every registered cache; returns entries dropped."""
        total = self._session.clear_cache() if self._session is not None else 0
        for clearer in list(self._cache_clearers):
            try:
                total += clearer()
            except Exception:  # one feature's bug must not keep the other caches full
                logger.exception("clearing a cache failed")
        return total

    def provide_tool_loop(self, factory: ToolLoopFactory) -> None:
        """Install what builds a chat turn's tools (`koma.lsp.tools` registers it)."""
        self._tool_loop = factory

    def tool_loop(self, chat_id: str, context_tokens: int) -> ToolLoop | None:
        """The tools for one chat turn; None without a tools feature or a workspace folder."""
        if self._tool_loop is None:
            return None
        return self._tool_loop(self, chat_id, context_tokens)

    def document_text(self, uri: str) -> str | None:
        """The text of a document the editor has open; None if it is not open or is binary.

        Never the disk: a URI from a client is untrusted (a FIFO would block the event loop, a
        path outside the workspace would leak). Reading a file goes through
        `koma.lsp.exposure.read_document`, which applies the tools' jail off the event loop.
        """
        try:
            document = self.workspace.text_documents.get(uri)
        except RuntimeError:
            return None
        text = document.source if document is not None else None
        if text is None or "\x00" in text:
            return None
        return text

    # -- engine ---------------------------------------------------------------------------------

    def preload_engine(self) -> asyncio.Future[None]:
        """Start importing the engine and providers in a worker thread (once)."""
        if self._engine_loading is None:
            loop = asyncio.get_running_loop()
            self._engine_loading = loop.run_in_executor(None, _import_engine)
        return self._engine_loading

    async def engine_loaded(self) -> None:
        """Wait, without holding the event loop, until the engine modules are imported."""
        await asyncio.shield(self.preload_engine())

    # -- session -------------------------------------------------------------------------------

    async def session(self) -> Session:
        """The engine session for the current settings: provider, model, request settings.

        Made on first use, after the engine modules are imported (off the event loop), and
        reconfigured by `apply_settings` from then on.
        """
        if self._session is None:
            await self.engine_loaded()
            if self._session is None:
                from koma.engine.session import Session

                self._session = Session(self.settings)
        return self._session

    async def provider(self) -> Provider:
        """The session's provider (resolved on first use); raises `KomaError` when none is."""
        return await (await self.session()).provider()

    @property
    def current_provider(self) -> Provider | None:
        """The provider if one has been resolved already (never probes)."""
        return self._session.current_provider if self._session is not None else None

    async def resolve_model(self, kind: Literal["chat", "completion"]) -> str:
        """The session's model for `kind` (`Session.model`)."""
        return await (await self.session()).model(kind)

    async def close_providers(self) -> None:
        """Close the session's providers (at shutdown, after the running turns ended)."""
        if self._session is not None:
            await self._session.aclose()


def _workspace_root(params: types.InitializeParams) -> Path | None:
    if params.workspace_folders:
        path = to_fs_path(params.workspace_folders[0].uri)
        if path:
            return Path(path)
    if params.root_uri:
        path = to_fs_path(params.root_uri)
        if path:
            return Path(path)
    if params.root_path:
        return Path(params.root_path)
    return None


def _declares_inline_completion(capabilities: types.ClientCapabilities) -> bool:
    text_document = capabilities.text_document
    return bool(text_document is not None and text_document.inline_completion is not None)


def _register_core(server: KomaLanguageServer) -> None:
    """Client capabilities and workspace root, before any feature sees `initialize`."""

    @server.feature(types.INITIALIZE)
    def on_initialize(ls: KomaLanguageServer, params: types.InitializeParams) -> None:
        ls.workspace_root = _workspace_root(params)
        ls.client_supports_inline_completion = _declares_inline_completion(params.capabilities)

    @server.feature(types.INITIALIZED)
    def on_initialized(ls: KomaLanguageServer, params: types.InitializedParams) -> None:
        ls.preload_engine()

    @server.feature(types.SHUTDOWN)
    async def on_shutdown(ls: KomaLanguageServer, params: Any) -> None:
        # Turns end (as cancelled) before the providers they stream from are closed.
        await ls.state.chat.stop(SHUTDOWN_GRACE_SECONDS)
        await ls.close_providers()


def _drop_completion_for_inline_clients(server: KomaLanguageServer) -> None:
    """Declare `completionProvider` only to clients without inline completion (protocol.md)."""

    @server.feature(types.INITIALIZE)
    def on_initialize(ls: KomaLanguageServer, params: types.InitializeParams) -> None:
        if ls.client_supports_inline_completion:
            ls.protocol.fm.features.pop(types.TEXT_DOCUMENT_COMPLETION, None)
            ls.protocol.fm.feature_options.pop(types.TEXT_DOCUMENT_COMPLETION, None)


def build_server() -> KomaLanguageServer:
    """A server with every Koma feature registered."""
    from koma.lsp import (
        chat,
        code_actions,
        commands,
        completion,
        hover,
        inline_completion,
        local_models,
        settings,
        status,
        tools,
    )

    server = KomaLanguageServer()
    _register_core(server)
    for module in (settings, status, chat, tools, code_actions, hover, commands, local_models):
        module.register(server)
    for module in (inline_completion, completion):
        module.register(server)
    _drop_completion_for_inline_clients(server)
    return server


def main(argv: list[str] | None = None) -> None:
    """Run the language server: stdio by default, `--tcp --port N` for a socket."""
    # lsprotocol's hundreds of thousands of objects are here to stay: frozen, the garbage
    # collector stops walking them (a full collection during startup cost ~50 ms).
    gc.freeze()
    parser = argparse.ArgumentParser(prog="koma lsp", description="The Koma language server.")
    add_lsp_arguments(parser)
    args = parser.parse_args(argv)
    handler: logging.Handler = (
        logging.FileHandler(args.log_file) if args.log_file else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, args.log_level), handlers=[handler])
    server = build_server()
    try:
        if args.tcp:
            # Not pygls' start_tcp, which obeys anything that connects (a web page too).
            from koma.lsp.tcp import start_tcp

            start_tcp(server, args.host, args.port, os.environ)
        else:
            server.start_io()
    except KomaError as err:
        print(f"koma lsp: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from err

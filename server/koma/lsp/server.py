"""The Koma language server: shared state, provider access, and the builder that wires features.

Every LSP feature lives in its own module under `koma.lsp` with a `register(server)` function;
this module only holds what they share — the current valid settings, the lazily resolved
provider, the model and effort choice per feature, the status reporter — and the entry point
`main()` that `koma lsp` calls.

Startup must stay fast (an editor waits for the `initialize` reply), so nothing here touches the
network or imports the engine, pydantic or the providers before that reply: the settings sent
with `initialize` are validated when first read (at the latest on `initialized`), the
conversation store and ledger are made on first use, and the provider is resolved the first
time a feature needs it. Right after `initialized`, a worker thread imports the engine and the
providers (`preload_engine`); chat, actions and the provider wait for that without holding the
event loop, so `koma.status` keeps answering during the first chat. `benchmarks/cold_start.py`
measures what is left.

Several features need the same document and lifecycle notifications; the base class in
`koma.lsp.fanout` hands each of them to every module that registers a listener.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lsprotocol import types
from pygls.uris import to_fs_path

from koma.errors import KomaError, ModelNotFound
from koma.lsp.args import add_lsp_arguments
from koma.lsp.fanout import FanoutLanguageServer
from koma.lsp.status import StatusReporter

if TYPE_CHECKING:
    from koma.engine.cache import ResponseCache
    from koma.engine.chat import ChatStore
    from koma.engine.ledger import ReasoningLedger
    from koma.providers.base import Provider
    from koma.settings import KomaSettings
    from koma.types import Effort

logger = logging.getLogger("koma.lsp")

Feature = Literal["completion", "actions", "chat"]
# How long shutdown waits for running chat turns to end after cancelling them.
SHUTDOWN_GRACE_SECONDS = 2.0

# Settings whose change means a different provider object (URL, backend, placement).
_PROVIDER_KEYS = (
    "provider",
    "base_url",
    "api_key",
    "keep_alive",
    "num_ctx",
    "gpu",
    "first_byte_timeout_seconds",
    "idle_timeout_seconds",
)


# What the first chat, action or completion would otherwise import on the event loop (over a
# second on a busy machine, with `koma.status` waiting behind it). Imported in a worker thread
# right after `initialized` — after the `initialize` reply, so the cold start does not pay.
_ENGINE_MODULES = (
    "koma.settings",
    "koma.types",
    "koma.providers.registry",
    "koma.engine.lifecycle.context",
    "koma.engine.cache",
    "koma.engine.chat",
    "koma.engine.actions",
    "koma.lsp.tools",
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
        # The `koma` section from initializationOptions, and the editor's section in force
        # (initializationOptions overlaid by the latest workspace/configuration answer).
        self.initial_section: dict[str, Any] = {}
        self.editor_section: dict[str, Any] = {}
        # Choices made with `koma.selectModel`; they sit above the editor's settings.
        self.session_section: dict[str, Any] = {}
        self.workspace_root: Path | None = None
        self.client_supports_inline_completion: bool = False
        self.status: StatusReporter = StatusReporter(self)
        self._settings_callbacks: list[Callable[[KomaSettings], None]] = []
        self._provider: Provider | None = None
        self._cached_provider: Provider | None = None
        self._response_cache: ResponseCache | None = None
        self._retired: list[Provider] = []
        self._provider_lock = asyncio.Lock()
        self._first_model: str | None = None
        self._context_lengths: dict[str, int] = {}
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
        if any(getattr(old, key) != getattr(new, key) for key in _PROVIDER_KEYS):
            self._retire_provider()
        if self._response_cache is not None and old.cache != new.cache:
            self.response_cache()
        if (old.model, old.completion_model) != (new.model, new.completion_model):
            self._first_model = None
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
        total = self._response_cache.clear() if self._response_cache is not None else 0
        for clearer in list(self._cache_clearers):
            try:
                total += clearer()
            except Exception:  # one feature's bug must not keep the other caches full
                logger.exception("clearing a cache failed")
        return total

    def document_text(self, uri: str) -> str | None:
        """The text of a document the editor has open; None if it is not open or is binary.

        Never the disk: a URI from a client is untrusted (a FIFO would block the event loop, a
        path outside the workspace would leak). Reading a file goes through
        `koma.lsp.tools.read_document`, which applies the tools' jail off the event loop.
        """
        try:
            document = self.workspace.text_documents.get(uri)
        except RuntimeError:
            return None
        text = document.source if document is not None else None
        if text is None or "\x00" in text:
            return None
        return text

    def effort(self, feature: Feature) -> Effort:
        """The reasoning effort configured for one feature (`low`, `medium` or `high`)."""
        effort: Effort = getattr(self.settings.reasoning_effort, feature)
        return effort

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

    # -- provider ------------------------------------------------------------------------------

    async def provider(self) -> Provider:
        """The provider for the current settings, resolved on first use and then reused.

        Raises `KomaError` (e.g. `ProviderUnreachable`) when none can be resolved; the failure
        is not cached, so the next request tries again.
        """
        if self._provider is None:
            await self.engine_loaded()
        async with self._provider_lock:
            if self._provider is None:
                from koma.engine.lifecycle.context import SafeContextPolicy
                from koma.providers.registry import resolve_provider

                # Ollama gets the largest num_ctx that fits this machine unless numCtx is set.
                resolved: Any = resolve_provider(self.settings, context_policy=SafeContextPolicy())
                if inspect.isawaitable(resolved):
                    resolved = await resolved
                self._provider = resolved
            assert self._provider is not None
            return self._provider

    @property
    def current_provider(self) -> Provider | None:
        """The provider if one has been resolved already (never probes)."""
        return self._provider

    async def cached_provider(self) -> Provider:
        """The provider behind the response cache (`cache.*` settings), for chat and actions."""
        base = await self.provider()
        if self._cached_provider is None or getattr(self._cached_provider, "inner", None) is not (
            base
        ):
            self._cached_provider = self.response_cache().wrap(base)
        return self._cached_provider

    def response_cache(self) -> ResponseCache:
        """The server's response cache, created on first use and kept in step with settings."""
        cache = self.settings.cache
        if self._response_cache is None:
            from koma.engine.cache import ResponseCache

            self._response_cache = ResponseCache(
                max_entries=cache.max_entries, persistent=cache.persistent, mode=cache.mode
            )
        else:
            self._response_cache.configure(
                mode=cache.mode, max_entries=cache.max_entries, persistent=cache.persistent
            )
        return self._response_cache

    def _retire_provider(self) -> None:
        """Drop the provider; it is closed at shutdown so streams in flight can finish."""
        if self._provider is not None:
            self._retired.append(self._provider)
        self._provider = None
        self._cached_provider = None
        self._first_model = None
        self._context_lengths.clear()

    async def close_providers(self) -> None:
        self._retire_provider()
        retired, self._retired = self._retired, []
        for provider in retired:
            try:
                await provider.aclose()
            except Exception:  # shutting down: the other providers must still be closed
                logger.exception("closing provider failed")

    async def resolve_model(self, kind: Literal["chat", "completion"]) -> str:
        """The model for `kind`: the setting, else `model`, else the provider's first model."""
        if kind == "completion" and self.settings.completion_model:
            return self.settings.completion_model
        if self.settings.model:
            return self.settings.model
        if self._first_model is None:
            provider = await self.provider()
            models = await provider.list_models()
            if not models:
                raise ModelNotFound(
                    f"{provider.name} at {provider.base_url} lists no models",
                    "pull or load one (e.g. `koma pull gpt-oss:20b`), or set koma.model",
                )
            self._first_model = models[0].name
        return self._first_model

    async def context_length(self, model: str) -> int:
        """Tokens the model's context holds: the one it really runs with, else 8192.

        The same number `koma models` and `koma doctor` show (`engine.lifecycle.context`):
        `numCtx`, the embedded model's loaded context, the `num_ctx` Koma sends Ollama.
        """
        from koma.engine.chat import DEFAULT_CONTEXT_TOKENS
        from koma.engine.lifecycle.context import context_window

        if self.settings.num_ctx:
            return self.settings.num_ctx
        if model not in self._context_lengths:
            length = None
            try:
                provider = await self.provider()
                window = await context_window(provider, model)
                length = window.used or window.maximum
            except Exception as err:  # only a hint; the default is safe
                logger.info("no context length for %s: %s", model, err)
            self._context_lengths[model] = length or DEFAULT_CONTEXT_TOKENS
        return self._context_lengths[model]


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
        from koma.lsp.chat import stop_running_turns

        # Turns end (as cancelled) before the providers they stream from are closed.
        await stop_running_turns(ls, SHUTDOWN_GRACE_SECONDS)
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
        lifecycle,
        settings,
        status,
    )

    server = KomaLanguageServer()
    _register_core(server)
    for module in (settings, status, chat, code_actions, hover, commands, lifecycle):
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

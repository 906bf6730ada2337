"""The language-server client every end-to-end test drives `koma lsp` with.

The `lsp` fixture (tests/conftest.py) starts one against the `sim` fixture; the attack suite
(tests/security) starts one against its own hostile home with `start_koma_lsp`. Both get a
`KomaClient`: a pytest-lsp client that also records Koma's own notifications and whose waits
wake on every notification, so a test waits for what it expects instead of sleeping.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.protocol import default_converter
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

PROFILES = ("neovim", "visual_studio_code")
CHAT_MODEL = "gpt-oss:20b"
WAIT_SECONDS = 30.0
SERVER_COMMAND = [sys.executable, "-m", "koma.lsp"]


class KomaClient(LanguageClient):
    """A pytest-lsp client that also records Koma's own notifications."""

    # How long a request or a wait may take (a real model needs longer than the simulator).
    wait_seconds = WAIT_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chat_events: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.untrusted_configs: list[dict[str, Any]] = []
        self.root: Path = Path.cwd()
        self._changed = asyncio.Event()
        self._versions: dict[str, int] = {}

    def record(self, bucket: list[dict[str, Any]], params: Any) -> None:
        bucket.append(as_dict(params))
        self._changed.set()

    def poke(self) -> None:
        self._changed.set()

    async def wait_for(
        self, predicate: Callable[[], Any], what: str, seconds: float | None = None
    ) -> Any:
        """Wait until `predicate()` is truthy, re-checking whenever a notification arrives."""
        deadline = time.monotonic() + (self.wait_seconds if seconds is None else seconds)
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
            except TimeoutError:
                pass

    def events_of(self, chat_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        """The chat's `koma/chat/event` payloads so far (only those of type `kind`, if given)."""
        return [
            e
            for e in self.chat_events
            if e.get("chatId") == chat_id and (kind is None or e.get("type") == kind)
        ]

    def reports(self) -> list[tuple[str, Any]]:
        """Every `$/progress` value so far, with its token."""
        return [(str(t), v) for t, values in self.progress_reports.items() for v in values]

    def logs(self) -> str:
        """Every `window/logMessage` text so far, one a line."""
        return "\n".join(m.message for m in self.log_messages)

    def open(self, name: str, text: str, language: str = "python") -> str:
        """Open a document (a file under the workspace root that need not exist on disk)."""
        return self.open_uri((self.root / name).as_uri(), text, language)

    def open_uri(self, uri: str, text: str, language: str = "python") -> str:
        """Open the document at `uri` with this text (didOpen, version 1)."""
        self._versions[uri] = 1
        self.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id=language, version=1, text=text
                )
            )
        )
        return uri

    def edit(self, uri: str, start: tuple[int, int], end: tuple[int, int], text: str) -> None:
        """Send one incremental change, as an editor applying an edit would."""
        self._versions[uri] = self._versions.get(uri, 1) + 1
        self.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(
                    uri=uri, version=self._versions[uri]
                ),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(
                            start=types.Position(line=start[0], character=start[1]),
                            end=types.Position(line=end[0], character=end[1]),
                        ),
                        text=text,
                    )
                ],
            )
        )

    async def current_model(self, expected: str) -> None:
        """Wait until the server's settings name `expected` as the chat model."""
        deadline = time.monotonic() + self.wait_seconds
        while True:
            current = (await self.command("koma.models"))["current"]["model"]
            if current == expected:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"model stayed {current!r}, expected {expected!r}")
            await asyncio.sleep(0.05)

    async def command(self, name: str, *arguments: Any) -> Any:
        result = await asyncio.wait_for(
            self.workspace_execute_command_async(
                types.ExecuteCommandParams(command=name, arguments=list(arguments))
            ),
            self.wait_seconds,
        )
        return as_dict(result)


def as_dict(value: Any) -> Any:
    """pygls hands unknown payloads over as attribute objects; tests compare plain JSON."""
    if isinstance(value, dict):
        return {k: as_dict(v) for k, v in value.items()}
    if isinstance(value, list | tuple) and not hasattr(value, "_fields"):
        return [as_dict(v) for v in value]
    if hasattr(value, "_asdict"):
        return {k: as_dict(v) for k, v in value._asdict().items()}
    return value


def _waking(handler: Callable[[Any, Any], Any]) -> Callable[[KomaClient, Any], Any]:
    """pytest-lsp's own handler (it records the notification), then wake the waiters."""

    def woken(ls: KomaClient, params: Any) -> Any:
        outcome = handler(ls, params)
        ls.poke()
        return outcome

    return woken


def make_client() -> KomaClient:
    client = KomaClient(converter_factory=default_converter)
    features = dict(DEFAULT_CLIENT_FEATURES)
    for method in (types.PROGRESS, types.WINDOW_LOG_MESSAGE, types.WINDOW_SHOW_MESSAGE):
        features[method] = _waking(features[method])
    register_lsp_features(client, features)

    @client.feature("koma/chat/event")
    def on_chat_event(ls: KomaClient, params: Any) -> None:
        ls.record(ls.chat_events, params)

    @client.feature("koma/status")
    def on_status(ls: KomaClient, params: Any) -> None:
        ls.record(ls.statuses, params)

    @client.feature("koma/untrustedConfig")
    def on_untrusted_config(ls: KomaClient, params: Any) -> None:
        ls.record(ls.untrusted_configs, params)

    return client


def capabilities_for(profile: str) -> types.ClientCapabilities:
    """pytest-lsp's recorded capabilities of a real client ("neovim", "visual_studio_code")."""
    return client_capabilities(profile)


async def start_koma_lsp(
    *,
    env: dict[str, str],
    root: Path,
    capabilities: types.ClientCapabilities,
    initialization_options: Any,
    folder_name: str | None = None,
    configuration: dict[str, Any] | None = None,
    before_initialize: Callable[[KomaClient], Any] | None = None,
    wait_seconds: float = WAIT_SECONDS,
    command: list[str] = SERVER_COMMAND,
) -> KomaClient:
    """The real `python -m koma.lsp` with `env`, initialized on the workspace folder `root`.

    `configuration` is what the client answers to workspace/configuration;
    `before_initialize(client)` registers handlers the server may call as soon as it is
    initialized (confirmations, edits); `wait_seconds` bounds initialize and, later, every
    request and wait of the client; `command` is how the server is started (`python -m koma
    lsp` goes through the CLI, as the editors start it). The caller shuts the client down
    (`stop_koma_lsp`).
    """
    config = ClientServerConfig(server_command=command, client_factory=make_client, server_env=env)
    client = await config.start()
    assert isinstance(client, KomaClient)
    client.root = root
    client.wait_seconds = wait_seconds
    if configuration is not None:
        client.set_configuration(configuration)
    try:
        if before_initialize is not None:
            before_initialize(client)
        await asyncio.wait_for(
            client.initialize_session(
                types.InitializeParams(
                    capabilities=capabilities,
                    root_uri=root.as_uri(),
                    workspace_folders=[
                        types.WorkspaceFolder(uri=root.as_uri(), name=folder_name or root.name)
                    ],
                    initialization_options=initialization_options,
                )
            ),
            wait_seconds,
        )
    except BaseException:
        await client.stop()
        raise
    return client


async def stop_koma_lsp(client: KomaClient, seconds: float = 10.0) -> None:
    """Shut the server down politely if it still answers, then end the process."""
    try:
        await asyncio.wait_for(client.shutdown_session(), seconds)
    except Exception:  # the server may be gone or the session over (a test shut it down)
        pass
    await client.stop()


LspFactory = Callable[..., Awaitable[KomaClient]]

"""Shared fixtures for end-to-end tests of the real `koma lsp` process.

Reuse them from any test module under `tests/lsp/`:

    async def test_something(lsp, sim):
        sim.add_reply(Reply(content="..."))               # script the loopback model server
        client = await lsp()                             # spawn + initialize the real server
        client.open("a.py", "x = 1\\n")                   # didOpen; returns the document uri
        result = await client.command("koma.chat", {"message": "hi"})
        events = client.chat_events                       # every koma/chat/event payload
        await client.wait_for(lambda: ..., "what we wait for")

- `sim`: a started `koma_sim.Simulator` (Ollama flavour, gpt-oss:20b + qwen2.5-coder).
- `profile_capabilities`: a modifiable copy of the current profile's client capabilities.
- `dead_url`: a loopback URL where nothing listens (a provider that is down).
- `client_profile`: parametrized — every test using `lsp` runs once as Neovim and once as
  VS Code (pytest-lsp's recorded client capabilities).
- `lsp(settings=None, init_options=None, configuration=None, profile=None, env=None,
  capabilities=None)`: starts
  `python -m koma.lsp` pointed at `sim` (provider ollama, baseUrl sim.url, model gpt-oss:20b,
  unless `settings` overrides keys / `init_options` replaces initializationOptions entirely;
  `configuration` is what the client answers to workspace/configuration, `env` adds server
  environment variables, `capabilities` replaces the profile's),
  isolated from the user's config files and environment, and returns an initialized
  `KomaClient`. Shutdown happens at teardown.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.protocol import default_converter
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

from koma_sim import SimModel, Simulator, gpt_oss_20b, qwen_coder
from koma_sim.env import isolated_env

PROFILES = ("neovim", "visual_studio_code")
CHAT_MODEL = "gpt-oss:20b"
WAIT_SECONDS = 30.0
SERVER_COMMAND = [sys.executable, "-m", "koma.lsp"]


class KomaClient(LanguageClient):
    """A pytest-lsp client that also records Koma's own notifications."""

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
        self, predicate: Callable[[], Any], what: str, seconds: float = WAIT_SECONDS
    ) -> Any:
        """Wait until `predicate()` is truthy, re-checking whenever a notification arrives."""
        deadline = time.monotonic() + seconds
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

    def events_of(self, chat_id: str) -> list[dict[str, Any]]:
        return [e for e in self.chat_events if e.get("chatId") == chat_id]

    def open(self, name: str, text: str, language: str = "python") -> str:
        """Open a document (a file under the workspace root that need not exist on disk)."""
        uri = (self.root / name).as_uri()
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
        deadline = time.monotonic() + WAIT_SECONDS
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
            WAIT_SECONDS,
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


def make_client() -> KomaClient:
    client = KomaClient(converter_factory=default_converter)
    features = dict(DEFAULT_CLIENT_FEATURES)
    features.pop(types.WINDOW_SHOW_MESSAGE)  # replaced below so waiters wake up
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

    @client.feature(types.WINDOW_SHOW_MESSAGE)
    def on_message(ls: KomaClient, params: types.ShowMessageParams) -> None:
        ls.messages.append(params)
        ls.poke()

    return client


@pytest.fixture
def sim() -> Any:
    simulator = Simulator(models=[gpt_oss_20b(), qwen_coder()], flavor="ollama")
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def dead_url() -> str:
    """A loopback URL where nothing listens (a port that was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    return f"http://127.0.0.1:{port}"


@pytest.fixture(params=PROFILES)
def client_profile(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def capabilities_for(profile: str) -> types.ClientCapabilities:
    return client_capabilities(profile)


@pytest.fixture
def profile_capabilities(client_profile: str) -> types.ClientCapabilities:
    """A fresh copy of the current profile's capabilities, for tests that change them."""
    return capabilities_for(client_profile)


LspFactory = Callable[..., Awaitable[KomaClient]]


@pytest_asyncio.fixture
async def lsp(sim: Simulator, client_profile: str, tmp_path: Path) -> AsyncIterator[LspFactory]:
    clients: list[KomaClient] = []
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    home = tmp_path / "home"
    home.mkdir()

    async def start(
        settings: dict[str, Any] | None = None,
        init_options: Any = None,
        configuration: dict[str, Any] | None = None,
        profile: str | None = None,
        env: dict[str, str] | None = None,
        capabilities: types.ClientCapabilities | None = None,
    ) -> KomaClient:
        koma = {"provider": "ollama", "baseUrl": sim.url, "model": CHAT_MODEL}
        koma.update(settings or {})
        config = ClientServerConfig(
            server_command=SERVER_COMMAND,
            client_factory=make_client,
            server_env={**isolated_env(home), **(env or {})},
        )
        client = await config.start()
        assert isinstance(client, KomaClient)
        clients.append(client)
        client.root = workspace
        if configuration is not None:
            client.set_configuration(configuration)
        await asyncio.wait_for(
            client.initialize_session(
                types.InitializeParams(
                    capabilities=capabilities or capabilities_for(profile or client_profile),
                    root_uri=workspace.as_uri(),
                    workspace_folders=[
                        types.WorkspaceFolder(uri=workspace.as_uri(), name="workspace")
                    ],
                    initialization_options=(
                        {"koma": koma} if init_options is None else init_options
                    ),
                )
            ),
            WAIT_SECONDS,
        )
        return client

    yield start
    for client in clients:
        try:
            await asyncio.wait_for(client.shutdown_session(), 10)
        except Exception:
            pass
        await client.stop()


def sim_model(name: str, capabilities: list[str]) -> SimModel:
    return SimModel(name=name, capabilities=capabilities)

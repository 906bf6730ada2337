"""The real `koma lsp` process: pulls with `$/progress` and cancel, auto-unload, warnings."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from lsprotocol import types

from koma_sim import Simulator
from lsp_support import WAIT_SECONDS as WAIT
from lsp_support import LspFactory as Start

# The lifecycle is the server's own (timers, memory, pulls); no client difference is tested here.
pytestmark = pytest.mark.parametrize("client_profile", ["visual_studio_code"])


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
    client = await lsp(settings={"memory": {"autoUnloadMinutes": 0.01}, "keepAlive": -1})
    loaded = await client.command("koma.preload", {"model": "gpt-oss:20b"})
    assert loaded["ok"] is True, loaded
    assert sim.loaded_models() == ["gpt-oss:20b"]
    await client.wait_for(lambda: "unloaded gpt-oss:20b" in client.logs(), "the idle unload")
    assert sim.loaded_models() == []
    assert "autoUnloadMinutes 0.01" in client.logs()


async def test_a_pair_that_would_evict_itself_is_warned_about_once(
    lsp: Start, sim: Simulator
) -> None:
    client = await lsp(settings={"completionModel": "gpt-oss:120b", "memory": {"maxMemoryGb": 20}})
    message = await client.wait_for(
        lambda: next((m for m in client.messages if "evict" in m.message), None),
        "the eviction warning",
    )
    assert message.type == types.MessageType.Warning
    assert "gpt-oss:20b" in message.message and "gpt-oss:120b" in message.message


async def test_preload_on_open_loads_with_the_planned_context(lsp: Start, sim: Simulator) -> None:
    client = await lsp(settings={"preloadOnOpen": True})
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

"""Nothing the model or the repository controls can freeze the real `koma lsp`.

One server runs the module's cases; each checks, while the hostile request runs, that
`koma.status` keeps answering within 1 s and that the request itself ends in bounded time. A
read left blocked on the FIFO is unblocked after every case (a writer opens and closes it), so
a case that froze the server does not take the next ones with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from lsprotocol import types
from sec_support import (
    STATUS_BUDGET_S,
    Home,
    KomaClient,
    assert_responsive,
    bodies_since,
    build_home,
    chat_while_probing,
    probe_during,
    script_calls,
    start_lsp,
    status_time,
    stop_lsp,
    tool_results,
    user_config_for,
)

from koma_sim import Simulator

pytestmark = pytest.mark.asyncio(loop_scope="module")

WHOLE = {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 5}}
HUGE_MB = 40


FLOODS = {
    "flood-stdout": "exec python3 -c 'import sys\nwhile True: sys.stdout.write(\"x\" * 65536)'",
    "flood-grandchild-holds-pipe": "sleep 60 & yes",
    "flood-ignores-sigterm": "trap '' TERM INT; yes",
}
# One test command for every flood: the selector (a file in the workspace) picks the case.
DISPATCH = (
    'case "$1" in ' + " ".join(f"{name}) {script};;" for name, script in FLOODS.items()) + " esac"
)


def unblock(fifo: Path) -> None:
    """Let a reader stuck in open() of the FIFO go (a writer opens and closes it)."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(
    tmp_path_factory: pytest.TempPathFactory, model: Simulator
) -> AsyncIterator[tuple[Home, KomaClient]]:
    """One server for the module; a case that froze it is unblocked before the next runs."""
    home = build_home(tmp_path_factory.mktemp("bounds"))
    os.mkfifo(home.ws / "pipe.py")
    for name in FLOODS:
        (home.ws / name).write_text("")
    home.write_user_config(
        user_config_for(
            model,
            runTestsCommand=["sh", "-c", DISPATCH, "sh"],
            runTestsTimeoutSeconds=1,
            policies={"run_tests": "allow"},
        )
    )
    client, _ = await start_lsp(home)
    # One ordinary chat first: the server loads its engine on first use, and the cases measure
    # what the attacks do to a running server, not that one-time import.
    await client.command("koma.chat", {"message": "warm up"})
    yield home, client
    for _ in range(3):
        unblock(home.ws / "pipe.py")
    await asyncio.wait_for(stop_lsp(client), 15)


@pytest_asyncio.fixture(loop_scope="module")
async def served(
    server: tuple[Home, KomaClient], model: Simulator
) -> AsyncIterator[tuple[Home, KomaClient]]:
    model.reset()
    yield server
    for _ in range(3):
        unblock(server[0].ws / "pipe.py")


@pytest.mark.parametrize("command", ["koma.chat", "koma.explain"])
async def test_fifo_uri_does_not_block_the_server(
    served: tuple[Home, KomaClient], command: str
) -> None:
    home, client = served
    uri = (home.ws / "pipe.py").as_uri()
    result = await probe_during(
        client, client.command(command, {"message": "explain", "uri": uri, "range": WHOLE})
    )
    assert isinstance(result, dict)


async def test_fifo_code_action_list_does_not_block(served: tuple[Home, KomaClient]) -> None:
    home, client = served
    params = types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=(home.ws / "pipe.py").as_uri()),
        range=types.Range(types.Position(0, 0), types.Position(0, 5)),
        context=types.CodeActionContext(diagnostics=[]),
    )
    await probe_during(client, client.text_document_code_action_async(params))


async def test_fifo_code_action_resolve_does_not_block(served: tuple[Home, KomaClient]) -> None:
    home, client = served
    action = types.CodeAction(
        title="Koma: Refactor",
        data={"action": "refactor", "uri": (home.ws / "pipe.py").as_uri(), "range": WHOLE},
    )
    await probe_during(client, client.code_action_resolve_async(action))


async def test_fifo_in_workspace_does_not_block_list_or_search(
    served: tuple[Home, KomaClient], model: Simulator
) -> None:
    _home, client = served
    script_calls(
        model,
        {"name": "list_files", "arguments": {}},
        {"name": "search", "arguments": {"pattern": "anything"}},
        {"name": "read_file", "arguments": {"path": "pipe.py"}},
    )
    result = await chat_while_probing(client, {"message": "look around"})
    outcomes = tool_results(client, result["chatId"])
    assert [o["ok"] for o in outcomes] == [True, True, False], outcomes


async def test_catastrophic_list_files_glob_is_bounded(
    served: tuple[Home, KomaClient], model: Simulator
) -> None:
    home, client = served
    for i in range(20):
        (home.ws / ("a" * 60 + str(i))).write_text("x\n")
    script_calls(model, {"name": "list_files", "arguments": {"glob": "*" * 25 + "b"}})
    started = time.monotonic()
    result = await chat_while_probing(client, {"message": "list"}, seconds=20)
    assert time.monotonic() - started < 15
    (outcome,) = tool_results(client, result["chatId"])
    assert outcome["content"], outcome


async def test_huge_file_uri_is_read_in_bounds(
    served: tuple[Home, KomaClient], model: Simulator
) -> None:
    home, client = served
    huge = home.ws / "huge.py"
    line = b"x = 1  # " + b"y" * 90 + b"\n"
    with huge.open("wb") as out:
        out.write(line * (HUGE_MB * 1024 * 1024 // len(line)))
    start = len(model.requests)
    await chat_while_probing(client, {"message": "explain", "uri": huge.as_uri()})
    sent = bodies_since(model, start)
    assert len(sent) < 2_000_000, f"{len(sent)} characters of a {HUGE_MB} MB file were sent"


async def test_huge_file_read_file_is_capped(
    served: tuple[Home, KomaClient], model: Simulator
) -> None:
    home, client = served
    huge = home.ws / "huge.txt"
    with huge.open("wb") as out:
        out.write((b"z" * 99 + b"\n") * (HUGE_MB * 1024 * 1024 // 100))
    start = len(model.requests)
    script_calls(model, {"name": "read_file", "arguments": {"path": "huge.txt"}})
    await chat_while_probing(client, {"message": "read it"})
    assert len(bodies_since(model, start)) < 2_000_000


@pytest.mark.parametrize("case", list(FLOODS))
async def test_flooding_test_run_ends_at_its_deadline(
    served: tuple[Home, KomaClient], model: Simulator, case: str
) -> None:
    _, client = served
    script_calls(model, {"name": "run_tests", "arguments": {"selector": case}})
    started = time.monotonic()
    result = await chat_while_probing(client, {"message": "run"}, seconds=20)
    took = time.monotonic() - started
    (outcome,) = tool_results(client, result["chatId"])
    assert "did not finish within 1 s" in outcome["content"], outcome
    assert took < 4, f"the chat took {took:.1f} s with a 1 s test deadline"
    assert len(json.dumps(outcome)) < 40_000
    await assert_responsive(client)


async def test_malformed_uris_are_a_clear_error_not_a_crash(
    served: tuple[Home, KomaClient],
) -> None:
    _home, client = served
    for uri in ("file://", "file:///%00", "http://evil.example/a.py", "file:///" + "a/" * 3000):
        answer = await client.command("koma.chat", {"message": "x", "uri": uri})
        assert isinstance(answer, dict)
    await assert_responsive(client)


async def test_first_chat_after_start_keeps_status_answering(
    tmp_path: Path, model: Simulator
) -> None:
    """The first chat needs the engine and the providers, which the server does not import
    before its `initialize` reply. They are imported in a worker thread, so `koma.status`
    answers within 1 s throughout — every probe, no retry. Without compiled bytecode (the
    first run after an install or upgrade) the import takes longest: when it ran on the event
    loop, status waited 1.2 s here."""
    home = build_home(tmp_path)
    home.write_user_config(user_config_for(model))
    env = home.env(PYTHONPYCACHEPREFIX=str(tmp_path / "no-bytecode-yet"))
    client, _ = await start_lsp(home, env=env)
    try:
        chat = asyncio.ensure_future(client.command("koma.chat", {"message": "hello"}))
        took: list[float] = []
        while not chat.done():
            took.append(await status_time(client))
            await asyncio.sleep(0.05)
        reply = await asyncio.wait_for(chat, 30)
    finally:
        await stop_lsp(client)
    assert reply.get("text") == "Done.", reply
    assert max(took) < STATUS_BUDGET_S, f"koma.status took {max(took):.2f} s (all: {took})"

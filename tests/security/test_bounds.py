"""Nothing the model or the repository controls can freeze the real `koma lsp`.

Each case starts its own server (a frozen one must not take the next case with it) and checks,
while the hostile request runs, that `koma.status` keeps answering within 1 s, and that the
request itself ends in bounded time. A FIFO left blocking a read is unblocked at the end so a
failing case cannot leave a process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from lsprotocol import types
from sec_support import (
    Home,
    KomaClient,
    assert_responsive,
    bodies_since,
    chat_while_probing,
    probe_during,
    script_calls,
    start_lsp,
    stop_lsp,
    tool_results,
    user_config_for,
)

from koma.simulator import Simulator

WHOLE = {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 5}}
HUGE_MB = 40


def unblock(fifo: Path) -> None:
    """Let a reader stuck in open() of the FIFO go (a writer opens and closes it)."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


@pytest_asyncio.fixture
async def served(home: Home, model: Simulator) -> AsyncIterator[tuple[Home, KomaClient]]:
    os.mkfifo(home.ws / "pipe.py")
    home.write_user_config(user_config_for(model))
    client, _ = await start_lsp(home)
    try:
        yield home, client
    finally:
        for _ in range(3):
            unblock(home.ws / "pipe.py")
        await asyncio.wait_for(stop_lsp(client), 15)


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


FLOODS = {
    "flood-stdout": [sys.executable, "-c", "import sys\nwhile True: sys.stdout.write('x' * 65536)"],
    "flood-grandchild-holds-pipe": ["sh", "-c", "sleep 60 & yes"],
    "flood-ignores-sigterm": ["sh", "-c", "trap '' TERM INT; yes"],
}


@pytest.mark.parametrize("argv", list(FLOODS.values()), ids=list(FLOODS))
async def test_flooding_test_run_ends_at_its_deadline(
    home: Home, model: Simulator, argv: list[str]
) -> None:
    home.write_user_config(
        user_config_for(
            model,
            runTestsCommand=argv,
            runTestsTimeoutSeconds=1,
            policies={"run_tests": "allow"},
        )
    )
    client, _ = await start_lsp(home)
    try:
        script_calls(model, {"name": "run_tests", "arguments": {}})
        started = time.monotonic()
        result = await chat_while_probing(client, {"message": "run"}, seconds=20)
        took = time.monotonic() - started
        (outcome,) = tool_results(client, result["chatId"])
        assert "did not finish within 1 s" in outcome["content"], outcome
        assert took < 4, f"the chat took {took:.1f} s with a 1 s test deadline"
        assert len(json.dumps(outcome)) < 40_000
        await assert_responsive(client)
    finally:
        await stop_lsp(client)


async def test_malformed_uris_are_a_clear_error_not_a_crash(
    served: tuple[Home, KomaClient],
) -> None:
    _home, client = served
    for uri in ("file://", "file:///%00", "http://evil.example/a.py", "file:///" + "a/" * 3000):
        answer = await client.command("koma.chat", {"message": "x", "uri": uri})
        assert isinstance(answer, dict)
    await assert_responsive(client)

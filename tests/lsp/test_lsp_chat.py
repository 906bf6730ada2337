"""`koma.chat` end to end: streamed channels, history, context, cancellation and failures."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types

from koma_sim import Reply, Simulator

HARMONY = (
    "<|channel|>analysis<|message|>The user greets me; answer briefly.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>Hello, friend!<|return|>"
)
THINK_TAGS = "<think>The user greets me; answer briefly.</think>Hello, friend!"


def chat_requests(sim: Simulator) -> list[Any]:
    return [r for r in sim.requests if r.endpoint == "chat"]


def assert_well_formed(events: list[dict[str, Any]]) -> None:
    """Each channel opens, streams, closes, never interleaved; `done` comes last."""
    assert events, "no chat events"
    assert events[-1]["type"] == "done"
    open_channel = None
    for event in events[:-1]:
        kind = event["type"]
        if kind == "channelStart":
            assert open_channel is None, f"{event} while {open_channel} is open"
            open_channel = event["channel"]
        elif kind == "delta":
            assert event["channel"] == open_channel
        elif kind == "channelEnd":
            assert event["channel"] == open_channel
            open_channel = None
    assert open_channel is None


def streamed(events: list[dict[str, Any]], channel: str) -> str:
    return "".join(e["text"] for e in events if e["type"] == "delta" and e["channel"] == channel)


async def test_chat_streams_thinking_then_answer(lsp: Any, sim: Simulator) -> None:
    sim.add_reply(Reply(thinking="The user says hi. Greet back.", content="Hi! How can I help?"))
    client = await lsp()
    result = await client.command("koma.chat", {"message": "hi"})
    events = client.events_of(result["chatId"])
    assert_well_formed(events)
    order = [(e["type"], e.get("channel")) for e in events if e["type"] != "delta"]
    assert order == [
        ("channelStart", "thinking"),
        ("channelEnd", "thinking"),
        ("channelStart", "final"),
        ("channelEnd", "final"),
        ("done", None),
    ]
    assert streamed(events, "thinking") == "The user says hi. Greet back."
    assert result["text"] == streamed(events, "final") == "Hi! How can I help?"
    assert result["channels"] == {
        "thinking": "The user says hi. Greet back.",
        "final": "Hi! How can I help?",
    }
    assert events[-1]["result"]["text"] == result["text"]
    assert set(result["metrics"]) >= {"ttftMs", "tokensPerSecond", "totalMs"}
    body = chat_requests(sim)[0].body
    assert body["model"] == "gpt-oss:20b"
    assert body["think"] == "high"  # reasoningEffort.chat default


@pytest.mark.parametrize(
    ("content", "reasoning_channel"), [(HARMONY, "analysis"), (THINK_TAGS, "thinking")]
)
async def test_chat_splits_reasoning_streamed_inside_content(
    lsp: Any, sim: Simulator, content: str, reasoning_channel: str
) -> None:
    sim.add_reply(Reply(content=content))
    client = await lsp()
    result = await client.command("koma.chat", {"message": "hello"})
    events = client.events_of(result["chatId"])
    assert_well_formed(events)
    assert result["text"] == "Hello, friend!"
    assert streamed(events, "final") == "Hello, friend!"
    assert streamed(events, reasoning_channel) == "The user greets me; answer briefly."
    for marker in ("<|", "<think>", "analysis"):
        assert marker not in result["text"]


async def test_chat_keeps_history_without_old_reasoning(lsp: Any, sim: Simulator) -> None:
    sim.add_reply(Reply(thinking="SECRET-REASONING-1", content="Paris.", match="capital"))
    sim.add_reply(Reply(content="About 2.1 million.", match="people"))
    client = await lsp()
    first = await client.command("koma.chat", {"message": "What is the capital of France?"})
    second = await client.command(
        "koma.chat", {"chatId": first["chatId"], "message": "How many people live there?"}
    )
    assert second["chatId"] == first["chatId"]
    assert second["text"] == "About 2.1 million."
    messages = chat_requests(sim)[1].body["messages"]
    contents = [m.get("content", "") for m in messages]
    assert messages[0]["role"] == "system"
    assert "What is the capital of France?" in contents
    assert "Paris." in contents
    assert contents[-1] == "How many people live there?"
    assert "SECRET-REASONING-1" not in repr(messages)


async def test_chat_sends_the_selection_as_context(lsp: Any, sim: Simulator) -> None:
    client = await lsp()
    uri = client.open("calc.py", "import math\n\ndef area(r):\n    return math.pi * r * r\n")
    selection = {"start": {"line": 2, "character": 0}, "end": {"line": 3, "character": 27}}
    await client.command("koma.chat", {"message": "Is this right?", "uri": uri, "range": selection})
    user = chat_requests(sim)[0].body["messages"][-1]["content"]
    assert "calc.py" in user
    assert "def area(r):" in user and "return math.pi * r * r" in user
    assert "import math" not in user  # only the selected lines
    assert user.rstrip().endswith("Is this right?")


async def test_explain_streams_an_explanation_of_the_selection(lsp: Any, sim: Simulator) -> None:
    sim.add_reply(Reply(thinking="Look at the loop.", content="It sums a list.", match="total"))
    client = await lsp()
    uri = client.open("s.py", "def total(xs):\n    return sum(xs)\n")
    whole = {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 18}}
    result = await client.command("koma.explain", {"uri": uri, "range": whole})
    assert result["text"] == "It sums a list."
    assert_well_formed(client.events_of(result["chatId"]))
    body = chat_requests(sim)[0].body
    assert "def total(xs):" in body["messages"][-1]["content"]
    assert body["think"] == "medium"  # an action: reasoningEffort.actions


async def test_cancel_stops_the_turn_and_closes_the_upstream_stream(
    lsp: Any, sim: Simulator
) -> None:
    sim.add_reply(Reply(content="word " * 400, token_delay_ms=20))
    client = await lsp()
    turn = asyncio.create_task(client.command("koma.chat", {"chatId": "c-cancel", "message": "go"}))
    await client.wait_for(
        lambda: any(e["type"] == "delta" for e in client.events_of("c-cancel")), "first delta"
    )
    assert await client.command("koma.chat.cancel", {"chatId": "c-cancel"}) == {"cancelled": True}
    result = await turn
    assert result["cancelled"] is True
    assert result["text"] and len(result["text"]) < len("word " * 400)
    record = chat_requests(sim)[0]
    assert await asyncio.to_thread(sim.wait_for_disconnect, record, 10.0)
    assert not record.completed
    assert client.events_of("c-cancel")[-1]["type"] == "done"
    # Nothing runs any more: a second cancel has nothing to stop.
    assert await client.command("koma.chat.cancel", {"chatId": "c-cancel"}) == {"cancelled": False}


async def test_shutdown_during_a_chat_ends_it_as_cancelled_before_closing_the_provider(
    lsp: Any, sim: Simulator
) -> None:
    """The editor quits while an answer streams: the turn replies "cancelled" (not the HTTP
    client's "client has been closed"), and the shutdown request itself succeeds (pygls used to
    fail it while cancelling the still-running chat request)."""
    sim.add_reply(Reply(content="word " * 400, token_delay_ms=20))
    client = await lsp()
    turn = asyncio.create_task(client.command("koma.chat", {"chatId": "c-quit", "message": "go"}))
    await client.wait_for(
        lambda: any(e["type"] == "delta" for e in client.events_of("c-quit")), "first delta"
    )
    await asyncio.wait_for(client.shutdown_async(None), 10)
    result = await asyncio.wait_for(turn, 10)
    client.exit(None)  # the session is over; the fixture has nothing left to shut down
    assert result.get("cancelled") is True and "error" not in result, result
    errors = [e for e in client.events_of("c-quit") if e["type"] == "error"]
    assert errors == [], errors


async def test_stream_dying_midway_gives_an_error_and_the_server_keeps_serving(
    lsp: Any, sim: Simulator
) -> None:
    sim.add_reply(
        Reply(
            content="one two three four five",
            error="model runner crashed",
            error_after_tokens=2,
            times=1,
        )
    )
    client = await lsp()
    result = await client.command("koma.chat", {"chatId": "c1", "message": "count"})
    assert "model runner crashed" in result["error"]
    assert result["text"] == "one two"  # what streamed before the failure
    errors = [e for e in client.events_of("c1") if e["type"] == "error"]
    assert len(errors) == 1 and "model runner crashed" in errors[0]["message"]
    await client.wait_for(
        lambda: client.statuses and client.statuses[-1]["state"] == "error", "error status"
    )
    again = await client.command("koma.chat", {"chatId": "c1", "message": "hello"})
    assert again["text"] == "Hello from the simulator."
    assert "error" not in again


async def test_provider_down_gives_a_clear_error(lsp: Any, dead_url: str) -> None:
    client = await lsp(settings={"baseUrl": dead_url})
    result = await client.command("koma.chat", {"chatId": "down", "message": "hi"})
    assert dead_url.removeprefix("http://") in result["error"]
    assert result["text"] == ""
    [event] = [e for e in client.events_of("down") if e["type"] == "error"]
    assert event["message"] == result["error"]
    status = await client.command("koma.status")
    assert status["state"] == "error"


async def test_a_looping_answer_is_stopped_and_the_editor_told(lsp: Any, sim: Simulator) -> None:
    """The repetition guard works in the editor too: two copies, a warning, upstream closed."""
    loop = "print(add(1, 2))\n"
    script = "def add(a, b):\n    return a + b\n\n" + loop * 60
    sim.add_reply(Reply(content=script, token_delay_ms=5))
    client = await lsp()
    result = await client.command("koma.chat", {"chatId": "loop", "message": "add two numbers"})
    assert result["text"] == "def add(a, b):\n    return a + b\n\n" + loop * 2
    assert "stopped the answer: the model was repeating itself" in result["warning"]
    events = client.events_of("loop")
    deltas = "".join(e["text"] for e in events if e["type"] == "delta" and e["channel"] == "final")
    assert deltas == result["text"]  # the held-back copies never reached the editor
    (request,) = chat_requests(sim)
    await asyncio.to_thread(request.finished.wait, 10)
    assert request.client_disconnected  # stopped upstream, not only hidden


async def test_empty_answer_is_reported_not_hidden(lsp: Any, sim: Simulator) -> None:
    sim.add_reply(Reply(thinking="Hmm.", content=""))
    client = await lsp()
    result = await client.command("koma.chat", {"message": "say nothing"})
    assert result["text"] == ""
    assert "no answer" in result["warning"]


@pytest.mark.parametrize(
    "arguments",
    [{}, {"message": ""}, {"message": 42}, {"message": "hi", "effort": "extreme"}],
)
async def test_malformed_chat_requests_are_answered_with_an_error(
    lsp: Any, sim: Simulator, arguments: dict[str, Any]
) -> None:
    client = await lsp()
    result = await client.command("koma.chat", arguments)
    assert result["error"]
    assert chat_requests(sim) == []


async def test_chat_about_an_unreadable_document_still_answers(lsp: Any, sim: Simulator) -> None:
    client = await lsp()
    missing = (client.root / "nope.py").as_uri()
    result = await client.command("koma.chat", {"message": "what is this?", "uri": missing})
    assert result["text"] == "Hello from the simulator."
    assert "could not be read" in chat_requests(sim)[0].body["messages"][-1]["content"]


def hostile_uris(client: Any, tmp_path: Path) -> list[str]:
    """URIs a compromised client could send: outside, a secret, a FIFO, a symlink `..` trick."""
    ws = client.root
    outside = tmp_path / "outside.txt"  # ws/../outside.txt
    outside.write_text("OUTSIDE-CANARY\n")
    (ws / ".env").write_text("TOKEN=ENV-CANARY\n")
    os.mkfifo(ws / "pipe.py")
    (ws / "deep" / "er").mkdir(parents=True)
    (ws / "S").symlink_to(ws / "deep" / "er", target_is_directory=True)
    client.text_document_did_open(  # the editor has the outside file open, unsaved
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=outside.as_uri(), language_id="plaintext", version=1, text="BUFFER-CANARY\n"
            )
        )
    )
    return [
        outside.as_uri(),
        (ws / ".env").as_uri(),
        (ws / "pipe.py").as_uri(),
        ws.as_uri() + "/S/../../outside.txt",
        "file:///etc/passwd",
        "file:///dev/zero",
        ws.as_uri() + "/" + "n" * 300,
    ]


async def test_chat_and_explain_never_read_a_uri_the_jail_refuses(
    lsp: Any, sim: Simulator, tmp_path: Path
) -> None:
    client = await lsp()
    for uri in hostile_uris(client, tmp_path):
        started = time.monotonic()
        result = await client.command("koma.chat", {"message": "what is this?", "uri": uri})
        assert result["text"] == "Hello from the simulator.", uri
        explained = await client.command("koma.explain", {"uri": uri})
        assert "koma.explain cannot read the document" in explained["error"], uri
        assert time.monotonic() - started < 10, uri  # a FIFO or /dev/zero never blocks
        status = await asyncio.wait_for(client.command("koma.status"), 1)
        assert "state" in status
    sent = json.dumps([r.body for r in chat_requests(sim)])
    assert "CANARY" not in sent and "root:x:" not in sent
    assert len(chat_requests(sim)) == 7  # explain never asked the model
    first = chat_requests(sim)[0].body["messages"][-1]["content"]
    assert "outside the workspace" in first

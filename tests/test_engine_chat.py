"""Chat conversations: context-window fitting, history without old reasoning, the turn loop."""

from __future__ import annotations

from typing import Any

import pytest

from koma.engine.chat import (
    ChatStore,
    Conversation,
    ToolOutcome,
    ToolResultEvent,
    TurnEvent,
    fit_history,
    message_tokens,
    reserve_for_answer,
    run_turn,
)
from koma.errors import ContextOverflow, KomaError
from koma.providers.base import Provider
from koma.types import Done, GenerationSettings, Message, TextDelta, ToolCall, ToolCallEvent
from koma_sim import Reply, Simulator

MODEL = "gpt-oss:20b"


def turn(i: int, size: int = 40) -> list[Message]:
    return [Message.user(f"q{i} " + "x" * size), Message.assistant(f"a{i} " + "y" * size)]


def test_fit_keeps_system_and_the_most_recent_whole_turns() -> None:
    system = Message.system("be brief")
    history = [m for i in range(6) for m in turn(i)]
    current = [Message.user("now?")]
    per_turn = sum(message_tokens(m) for m in turn(0))
    fixed = message_tokens(system) + message_tokens(current[0])
    fitted = fit_history(system, history, current, fixed + 2 * per_turn)
    assert fitted[0] is system and fitted[-1] is current[0]
    kept = [m.content.split()[0] for m in fitted[1:-1]]
    assert kept == ["q4", "a4", "q5", "a5"]


def test_fit_never_splits_a_tool_turn() -> None:
    call = ToolCall("read_file", {"path": "a.py"}, "c1")
    tool_turn = [
        Message.user("read it"),
        Message.assistant("", [call]),
        Message.tool("x" * 400, "read_file", "c1"),
        Message.assistant("done"),
    ]
    current = [Message.user("and now?")]
    budget = message_tokens(current[0]) + message_tokens(tool_turn[-1]) + 20
    fitted = fit_history(None, tool_turn, current, budget)
    assert fitted == current  # the turn does not fit whole, so none of it is sent


def test_fit_refuses_a_message_that_cannot_fit() -> None:
    with pytest.raises(ContextOverflow, match="tokens"):
        fit_history(Message.system("s"), [], [Message.user("x" * 10_000)], 100)


def test_reserve_leaves_room_for_the_answer() -> None:
    assert reserve_for_answer(8192, None) == 2048
    assert reserve_for_answer(1024, None) == 512
    assert reserve_for_answer(8192, 300) == 300
    assert reserve_for_answer(1000, 900) == 500


def test_committed_turns_lose_their_reasoning() -> None:
    conversation = Conversation("c1")
    answer = Message("assistant", "42", thinking="long analysis")
    conversation.commit([Message.user("?"), answer])
    assert [m.thinking for m in conversation.history] == [None, None]
    assert conversation.history[1].content == "42"
    assert answer.thinking == "long analysis"  # the caller's message is untouched


def test_store_creates_reuses_and_forgets_the_oldest() -> None:
    store = ChatStore(max_conversations=2)
    a = store.open(None)
    assert a.chat_id.startswith("c") and store.open(a.chat_id) is a
    b = store.open("b", system_prompt="custom")
    assert b.system_prompt == "custom"
    store.open(a.chat_id)  # touch a, so b is now the oldest
    store.open("c")
    assert store.get("b") is None and store.get(a.chat_id) is a
    assert store.clear() == 2 and len(store) == 0


class Recorder:
    def __init__(self) -> None:
        self.events: list[TurnEvent] = []

    def __call__(self, event: TurnEvent) -> None:
        self.events.append(event)


async def test_a_turn_streams_and_is_remembered(sim: Simulator, provider: Provider) -> None:
    sim.add_reply(Reply(thinking="SECRET-THOUGHT", content="Paris."))
    conversation = Conversation("c1")
    recorder = Recorder()
    settings = GenerationSettings(reasoning_effort="low")
    result = await run_turn(provider, MODEL, conversation, "Capital?", settings, recorder)
    assert result.text == "Paris."
    assert isinstance(recorder.events[-1], Done)
    assert sum(isinstance(e, Done) for e in recorder.events) == 1
    assert "".join(e.text for e in recorder.events if isinstance(e, TextDelta)) == (
        "SECRET-THOUGHTParis."
    )
    await run_turn(provider, MODEL, conversation, "And Spain?", settings, recorder)
    sent = [r for r in sim.requests if r.endpoint == "chat"][-1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert "SECRET-THOUGHT" not in repr(sent)


async def test_a_failed_turn_leaves_history_untouched(
    sim: Simulator,
    provider: Provider,
) -> None:
    sim.add_reply(Reply(content="a b c d", error="boom", error_after_tokens=1))
    conversation = Conversation("c1")
    with pytest.raises(KomaError, match="boom"):
        await run_turn(provider, MODEL, conversation, "hi", GenerationSettings(), Recorder())
    assert conversation.history == []


class EchoTools:
    """A tool hook that answers every call with its arguments."""

    def __init__(self) -> None:
        self.calls: list[ToolCall] = []

    def definitions(self) -> list[dict[str, Any]]:
        return [
            {
                "type": "function",
                "function": {
                    "name": "read_file",
                    "description": "Read a file",
                    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
                },
            }
        ]

    async def run(self, call: ToolCall) -> ToolOutcome:
        self.calls.append(call)
        return ToolOutcome(f"contents of {call.arguments}", ok=True)


async def test_the_tool_hook_runs_calls_and_feeds_results_back(
    sim: Simulator,
    provider: Provider,
) -> None:
    sim.add_reply(
        Reply(
            thinking="I need the file.",
            tool_calls=[{"name": "read_file", "arguments": {"path": "a.py"}}],
            times=1,
        )
    )
    sim.add_reply(Reply(content="It defines f."))
    tools = EchoTools()
    recorder = Recorder()
    conversation = Conversation("c1")
    result = await run_turn(
        provider,
        MODEL,
        conversation,
        "What is in a.py?",
        GenerationSettings(),
        recorder,
        tools=tools,
    )
    assert result.text == "It defines f."
    assert [c.name for c in tools.calls] == ["read_file"]
    kinds = [type(e) for e in recorder.events if not isinstance(e, TextDelta)]
    assert kinds.index(ToolCallEvent) < kinds.index(ToolResultEvent) < kinds.index(Done)
    second = [r for r in sim.requests if r.endpoint == "chat"][1].body
    assert second["tools"][0]["function"]["name"] == "read_file"
    roles = [m["role"] for m in second["messages"]]
    assert roles[-2:] == ["assistant", "tool"]
    assert "a.py" in second["messages"][-1]["content"]
    # Inside the loop the reasoning that led to the call is kept; afterwards it is dropped.
    assert second["messages"][-2].get("thinking") == "I need the file."
    assert all(m.thinking is None for m in conversation.history)


async def test_the_tool_loop_stops_at_max_steps(sim: Simulator, provider: Provider) -> None:
    sim.add_reply(Reply(tool_calls=[{"name": "read_file", "arguments": {"path": "x"}}]))
    tools = EchoTools()
    result = await run_turn(
        provider,
        MODEL,
        Conversation("c"),
        "loop",
        GenerationSettings(),
        Recorder(),
        tools=tools,
        max_steps=3,
    )
    assert len([r for r in sim.requests if r.endpoint == "chat"]) == 3
    assert len(tools.calls) == 2
    assert any("tools.maxSteps" in w for w in result.warnings)

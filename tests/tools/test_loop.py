"""The tool loop against a simulated server: what local models get wrong, and what Koma does."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tools_trap import Trap

from koma.engine.chat import Conversation, ToolResultEvent, TurnEvent, run_turn
from koma.engine.tools.loop import ToolLoop
from koma.engine.tools.policy import PolicyGate
from koma.engine.tools.toolkit import Tool
from koma.errors import ProviderError
from koma.providers.base import Provider
from koma.types import (
    ChannelEnd,
    ChannelStart,
    GenerationResult,
    GenerationSettings,
    TextDelta,
    ToolCall,
    ToolCallEvent,
)
from koma_sim import Reply, SimModel, Simulator, default_models

MODEL = "gpt-oss:20b"
READ_A = {"name": "read_file", "arguments": {"path": "a.py"}}
HARMONY_CALL = "<|channel|>commentary to=functions.read_file <|constrain|>json<|message|>{}<|call|>"


@pytest.fixture
def sim_options() -> dict[str, Any]:
    """The default models plus one without tool support."""
    return {"models": [*default_models(), SimModel(name="llama3:8b", capabilities=["completion"])]}


class Turn:
    """One run_turn with a ToolLoop, recording every event."""

    def __init__(self, loop: ToolLoop, conversation: Conversation | None = None) -> None:
        self.loop = loop
        self.conversation = conversation or Conversation("t")
        self.events: list[TurnEvent] = []

    async def run(
        self, provider: Provider, text: str = "what does a.py do?", model: str = MODEL
    ) -> GenerationResult:
        return await run_turn(
            provider,
            model,
            self.conversation,
            text,
            GenerationSettings(),
            self.events.append,
            tools=self.loop,
            max_steps=self.loop.max_steps,
            stream=self.loop.stream,
        )

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def final_text(self) -> str:
        return "".join(e.text for e in self.of(TextDelta) if e.channel == "final")


def bodies(sim: Simulator) -> list[dict[str, Any]]:
    return [r.body for r in sim.requests if r.endpoint == "chat"]


def well_formed(events: list[TurnEvent]) -> None:
    open_channel = None
    for event in events:
        if isinstance(event, ChannelStart):
            assert open_channel is None, f"{event.channel} opened inside {open_channel}"
            open_channel = event.channel
        elif isinstance(event, TextDelta):
            assert event.channel == open_channel
        elif isinstance(event, ChannelEnd):
            assert event.channel == open_channel
            open_channel = None
    assert open_channel is None


async def test_bad_calls_are_fed_back_and_tools_withdrawn_after_three(
    trap: Trap, sim: Simulator, provider: Provider
) -> None:
    sim.add_reply(
        Reply(tool_calls=[{"name": "write_file", "arguments": {"path": "a.py"}}], times=1)
    )
    sim.add_reply(Reply(tool_calls=[{"name": "read_file", "arguments": {"path": 5}}], times=1))
    sim.add_reply(Reply(tool_calls=[{"name": "read_file", "arguments": {"file": "a.py"}}], times=1))
    sim.add_reply(Reply(content="I could not read it."))
    turn = Turn(trap.loop())
    result = await turn.run(provider)
    assert result.text == "I could not read it."
    sent = bodies(sim)
    assert len(sent) == 4
    assert sent[1]["messages"][-1]["content"] == (
        "Error: there is no tool named 'write_file'; the tools are: read_file, list_files, "
        "search, run_tests, propose_edit"
    )
    assert "path: Input should be a valid string (got 5)" in sent[2]["messages"][-1]["content"]
    third = sent[3]["messages"][-2]["content"]
    assert "file: unknown argument" in third and "no more tool calls are accepted" in third
    assert "tools" not in sent[3]  # withdrawn: the model has to answer
    assert "invalid tool calls in a row" in sent[3]["messages"][-1]["content"]
    assert [r.outcome.ok for r in turn.of(ToolResultEvent)] == [False, False, False]


async def test_a_leaked_harmony_call_with_broken_json_is_fed_back(
    trap: Trap, sim: Simulator, provider: Provider
) -> None:
    sim.add_reply(Reply(content=HARMONY_CALL.replace("{}", '{"path": "a.py"'), times=1))
    sim.add_reply(Reply(content=HARMONY_CALL.replace("{}", '{"path": "a.py"}'), times=1))
    sim.add_reply(Reply(content="It adds two numbers."))
    turn = Turn(trap.loop())
    result = await turn.run(provider)
    assert result.text == "It adds two numbers."
    first, second = turn.of(ToolResultEvent)
    assert not first.outcome.ok and "not a JSON object (invalid JSON" in first.outcome.content
    assert second.outcome.ok and "return a + b" in second.outcome.content
    ids = [e.call.id for e in turn.of(ToolCallEvent)]
    assert len(set(ids)) == 2  # the parser's leaked_0 is renamed per step
    assert "return a + b" in bodies(sim)[2]["messages"][-1]["content"]
    well_formed(turn.events)


async def test_a_tool_call_parse_error_is_retried_once(
    trap: Trap, sim: Simulator, provider: Provider
) -> None:
    broken = 'error parsing tool call: raw=\'{"path": "a.py\''
    sim.add_reply(Reply(status=500, error=broken, times=1))
    sim.add_reply(Reply(tool_calls=[READ_A], times=1))
    sim.add_reply(Reply(content="It adds."))
    turn = Turn(trap.loop())
    assert (await turn.run(provider)).text == "It adds."
    assert len(bodies(sim)) == 3


async def test_a_repeated_parse_error_ends_the_turn_with_a_clear_error(
    trap: Trap, sim: Simulator, provider: Provider
) -> None:
    sim.add_reply(Reply(status=500, error="error parsing tool call: raw='{'", times=2))
    turn = Turn(trap.loop())
    with pytest.raises(ProviderError) as err:
        await turn.run(provider)
    assert "could not parse, 2 times" in str(err.value)
    assert "another model" in str(err.value)
    assert turn.conversation.history == []


async def test_a_parse_error_mid_stream_closes_the_open_channel_before_the_retry(
    trap: Trap, sim: Simulator, provider: Provider
) -> None:
    sim.add_reply(
        Reply(
            thinking="Let me look at the file.",
            error="error parsing tool call: raw=''",
            error_after_tokens=3,
            times=1,
        )
    )
    sim.add_reply(Reply(content="Fine."))
    turn = Turn(trap.loop())
    assert (await turn.run(provider)).text == "Fine."
    well_formed(turn.events)


async def test_a_model_without_tools_gets_the_text_protocol_announced_once(
    trap: Trap, sim: Simulator, provider: Provider
) -> None:
    call = '```json\n{"tool": "read_file", "arguments": {"path": "a.py"}}\n```'
    sim.add_reply(Reply(content=call, times=1))
    sim.add_reply(Reply(content="It adds two numbers.", times=1))
    notices: list[str] = []
    shared: set[str] = set()

    def loop() -> ToolLoop:
        gate = PolicyGate({"read_file": "allow"})
        return ToolLoop(
            trap.tools().toolkit(), gate=gate, text_protocol_models=shared, on_notice=notices.append
        )

    turn = Turn(loop())
    result = await turn.run(provider, model="llama3:8b")
    assert result.text == "It adds two numbers."
    assert len(notices) == 1 and "llama3:8b has no native tool calling" in notices[0]
    assert any("no native tool calling" in w for w in result.warnings)
    refused, described, answered = [r for r in sim.requests if r.endpoint == "chat"]
    assert refused.status == 400 and "tools" in refused.body
    assert "tools" not in described.body
    system = described.body["messages"][0]
    assert system["role"] == "system" and "You can use tools" in system["content"]
    assert '"path"' in system["content"] and "- read_file:" in system["content"]
    roles = [(m["role"], m["content"][:12]) for m in answered.body["messages"][-2:]]
    assert roles == [("assistant", '{"tool": "re'), ("user", "Tool result ")]
    assert "return a + b" in answered.body["messages"][-1]["content"]
    assert "{" not in turn.final_text().replace("It adds two numbers.", "")
    # The next turn starts in the text protocol at once: no refused request, no new notice.
    sim.add_reply(Reply(content="Still here."))
    again = Turn(loop())
    assert (await again.run(provider, "hi", model="llama3:8b")).text == "Still here."
    assert [r.status for r in sim.requests if r.endpoint == "chat"][3:] == [200]
    assert len(notices) == 1


async def test_a_json_call_in_the_final_channel_is_recovered_not_shown(
    trap: Trap, sim: Simulator, provider: Provider
) -> None:
    sim.add_reply(
        Reply(
            thinking="I will read it.",
            content='{"name": "read_file", "arguments": {"path": "a.py"}}',
            times=1,
        )
    )
    sim.add_reply(Reply(content="It adds."))
    turn = Turn(trap.loop())
    result = await turn.run(provider)
    assert result.text == "It adds."
    assert [e.call.name for e in turn.of(ToolCallEvent)] == ["read_file"]
    assert turn.final_text() == "It adds."  # the JSON never reached the chat view
    assert "recovered a tool call the model wrote as text" in result.warnings
    well_formed(turn.events)


async def test_an_answer_that_is_json_but_no_call_streams_unchanged(
    trap: Trap, sim: Simulator, provider: Provider
) -> None:
    answer = '{"name": "Ada", "born": 1815}\n\nThat is the record.'
    sim.add_reply(Reply(content=answer))
    turn = Turn(trap.loop())
    result = await turn.run(provider)
    assert result.text == answer == turn.final_text()
    assert result.tool_calls == [] and len(bodies(sim)) == 1


async def test_the_step_limit_withdraws_tools_and_says_so(
    trap: Trap, sim: Simulator, provider: Provider
) -> None:
    sim.set_default_reply(Reply(tool_calls=[READ_A]))
    loop = ToolLoop(trap.tools().toolkit(), gate=PolicyGate({"read_file": "allow"}), max_steps=2)
    turn = Turn(loop)
    result = await turn.run(provider)
    first, last = bodies(sim)
    assert "tools" in first and "tools" not in last
    assert "No more tool calls in this turn" in last["messages"][-1]["content"]
    assert len(turn.of(ToolCallEvent)) == 1 and len(turn.of(ToolResultEvent)) == 1
    assert result.tool_calls == []
    (warning,) = [w for w in result.warnings if "tools.maxSteps" in w]
    assert "tools.maxSteps = 2" in warning and "still wanted to call read_file" in warning


async def test_reasoning_stays_inside_the_loop_and_is_dropped_after_it(
    trap: Trap, sim: Simulator, provider: Provider
) -> None:
    sim.add_reply(Reply(thinking="SECRET-STEP: read a.py first.", tool_calls=[READ_A], times=1))
    sim.add_reply(Reply(thinking="SECRET-FINAL", content="It adds.", times=1))
    sim.add_reply(Reply(content="You're welcome."))
    turn = Turn(trap.loop())
    await turn.run(provider)
    await turn.run(provider, "thanks")
    within, after = bodies(sim)[1], bodies(sim)[2]
    assert within["messages"][-2]["thinking"] == "SECRET-STEP: read a.py first."
    assert "SECRET" not in repr(after["messages"])
    assert [m["role"] for m in after["messages"]] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]


# -- policies -----------------------------------------------------------------------------------


def fake_tool(policy: str = "ask") -> Tool:
    def touch(name: str) -> str:
        """Touch a file."""
        return name

    return Tool.from_function(touch, policy=policy)  # type: ignore[arg-type]


async def test_ask_allow_for_this_chat_and_deny() -> None:
    asked: list[str] = []
    answers = iter(["allow_chat", "deny"])

    async def confirm(tool: str, message: str) -> Any:
        asked.append(message)
        return next(answers)

    remembered: set[str] = set()
    gate = PolicyGate({}, confirm, remembered)
    tool = fake_tool()
    assert await gate.check(tool, {"name": "x"}) is None
    assert asked == ['Koma wants to touch {"name": "x"}']
    assert await gate.check(tool, {"name": "y"}) is None  # remembered for this chat
    assert remembered == {"touch"} and len(asked) == 1
    other = PolicyGate({}, confirm, set())  # another chat asks again
    assert "the user denied touch" in (await other.check(tool, {"name": "z"}) or "")


async def test_silence_errors_and_missing_clients_count_as_deny() -> None:
    async def never(tool: str, message: str) -> Any:
        await asyncio.sleep(60)

    async def broken(tool: str, message: str) -> Any:
        raise RuntimeError("client went away")

    async def nothing(tool: str, message: str) -> Any:
        return None

    tool = fake_tool()
    assert "did not answer" in (await PolicyGate({}, never, timeout=0.05).check(tool, {}) or "")
    assert "client went away" in (await PolicyGate({}, broken).check(tool, {}) or "")
    assert "denied" in (await PolicyGate({}, nothing).check(tool, {}) or "")
    assert "cannot ask" in (await PolicyGate({}).check(tool, {}) or "")


async def test_a_denied_tool_is_not_offered_and_refused_if_called(trap: Trap) -> None:
    loop = ToolLoop(trap.tools().toolkit(), gate=PolicyGate({"run_tests": "deny"}))
    assert "run_tests" not in [d["function"]["name"] for d in loop.definitions()]
    out = await loop.run(ToolCall("run_tests", {}))
    assert (
        not out.ok
        and "disabled by the user's settings (tools.policies.run_tests = deny)" in out.content
    )
    assert not trap.ran_log.exists()


async def test_an_invalid_call_is_refused_before_the_user_is_asked(trap: Trap) -> None:
    asked: list[str] = []

    async def confirm(tool: str, message: str) -> Any:
        asked.append(message)
        return "allow"

    loop = ToolLoop(trap.tools().toolkit(), gate=PolicyGate({}, confirm))
    bad = await loop.run(ToolCall("run_tests", {"selector": "-x; rm -rf /"}))
    assert not bad.ok and asked == []
    good = await loop.run(ToolCall("run_tests", {"selector": "tests/test_ok.py"}))
    assert good.ok and len(asked) == 1
    assert asked[0].startswith("Koma wants to run the tests: ") and asked[0].endswith(
        "tests/test_ok.py"
    )


async def test_tools_are_withdrawn_once_results_fill_their_share_of_the_context(
    trap: Trap, sim: Simulator, provider: Provider
) -> None:
    (trap.ws / "long.txt").write_text("word " * 2000)
    sim.add_reply(Reply(tool_calls=[{"name": "read_file", "arguments": {"path": "long.txt"}}]))
    gate = PolicyGate({"read_file": "allow"})
    loop = ToolLoop(
        trap.tools().toolkit(), gate=gate, max_result_chars=3000, results_budget_chars=2000
    )
    turn = Turn(loop)
    result = await turn.run(provider)
    (outcome,) = turn.of(ToolResultEvent)
    assert len(outcome.outcome.content) < 3100 and "cut: the result had" in outcome.outcome.content
    first, second = bodies(sim)
    assert "tools" in first and "tools" not in second
    assert any("fill their share of the context window" in w for w in result.warnings)

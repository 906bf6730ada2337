"""The tool loop meets raw Harmony: built-in tools get "not available", reasoning stays in the
turn on every server that takes it back (and is left out where a server would drop it)."""

from __future__ import annotations

from typing import Any

import pytest
from tools_trap import Trap

from harmony_vectors import by_id
from koma.engine.chat import Conversation, ToolResultEvent, TurnEvent, run_turn
from koma.providers.ollama import OllamaProvider
from koma.providers.openai_compat import OpenAICompatProvider
from koma.types import GenerationSettings, TextDelta, ToolCallEvent
from koma_sim import Reply, Simulator

MODEL = "gpt-oss:20b"
READ_A = {"name": "read_file", "arguments": {"path": "a.py"}}


async def run(trap: Trap, provider: Any, events: list[TurnEvent]) -> Any:
    loop = trap.loop()
    return await run_turn(
        provider,
        MODEL,
        Conversation("t"),
        "what does a.py do?",
        GenerationSettings(),
        events.append,
        tools=loop,
        max_steps=loop.max_steps,
        stream=loop.stream,
    )


@pytest.mark.parametrize("vector_id", ["lc-builtin-role-header", "lc-builtin-channel-header"])
@pytest.mark.parametrize("flavor", ["ollama", "llamacpp"])
async def test_a_builtin_tool_call_is_answered_not_available_and_never_shown(
    trap: Trap, vector_id: str, flavor: str
) -> None:
    vector = by_id(vector_id)
    with Simulator(flavor=flavor) as sim:
        sim.add_reply(Reply(content=vector.text, reasoning_field="none", times=1))
        sim.add_reply(Reply(content="It adds two numbers."))
        provider: Any = (
            OllamaProvider(sim.url)
            if flavor == "ollama"
            else OpenAICompatProvider(sim.openai_url, preset="llamacpp")
        )
        events: list[TurnEvent] = []
        try:
            result = await run(trap, provider, events)
        finally:
            await provider.aclose()
        sent = [r.body for r in sim.requests if r.endpoint in ("chat", "chat_completions")]
    (call,) = [e.call for e in events if isinstance(e, ToolCallEvent)]
    (name, arguments), *_ = vector.tool_calls
    assert (call.name, call.arguments) == (name, arguments)
    (outcome,) = [e.outcome for e in events if isinstance(e, ToolResultEvent)]
    assert not outcome.ok
    assert f"{name} is not available" in outcome.content and "read_file" in outcome.content
    assert "nothing was run" in outcome.content
    assert result.text == "It adds two numbers."
    shown = "".join(e.text for e in events if isinstance(e, TextDelta) and e.channel == "final")
    assert shown == "It adds two numbers."  # the call never reached the answer text
    assert sent[1]["messages"][-1]["content"] == outcome.content
    assert not (trap.ran_log.exists() and trap.ran_log.read_text())  # nothing ran


@pytest.mark.parametrize(
    ("flavor", "preset", "field"),
    [
        ("llamacpp", "llamacpp", "reasoning_content"),
        ("llamacpp", None, "reasoning_content"),  # a plain OpenAI URL: /props says llama.cpp
        ("vllm", "vllm", "reasoning"),
        ("ollama", "ollama-openai", "reasoning"),
        ("lmstudio", "lmstudio", None),  # documents no field for it: left out
        ("vllm", None, None),  # unknown server without /props: left out
    ],
)
async def test_reasoning_goes_back_inside_the_turn_where_the_server_takes_it(
    trap: Trap, flavor: str, preset: str | None, field: str | None
) -> None:
    with Simulator(flavor=flavor) as sim:
        sim.add_reply(Reply(thinking="STEP: read a.py first.", tool_calls=[READ_A], times=1))
        sim.add_reply(Reply(thinking="done", content="It adds."))
        provider = OpenAICompatProvider(sim.openai_url, preset=preset)
        try:
            result = await run(trap, provider, [])
        finally:
            await provider.aclose()
        sent = [r.body for r in sim.requests if r.endpoint == "chat_completions"]
        props = [r for r in sim.requests if r.path.endswith("/props")]
    assert result.text == "It adds."
    assistant = sent[1]["messages"][-2]
    assert assistant["role"] == "assistant" and assistant["tool_calls"]
    keys = {"reasoning", "reasoning_content", "thinking"} & set(assistant)
    if field is None:
        assert keys == set()
    else:
        assert keys == {field} and assistant[field] == "STEP: read a.py first."
    assert len(props) == (1 if preset is None else 0)  # asked once, only when it matters

"""Toolkits from plain Python: definitions, validation, calls, and docs/tools.md's MathTools."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from koma import GenerationSettings, Message, generate_text, stream_text
from koma.engine.tools import Tool, ToolArgumentError, ToolError, Toolkit, as_toolkit, tool, toolkit
from koma.providers.base import Provider
from koma.types import Done, ToolCallEvent
from koma_sim import Reply, Simulator


@toolkit
class MathTools:
    """The example of docs/tools.md ("Your own tools, from Python")."""

    def __init__(self) -> None:
        self.plotted: list[tuple[str, tuple[float, float]]] = []

    def calculate(self, expression: str) -> float:
        """Evaluate an arithmetic expression such as 2 * (3 + 4).

        Args:
            expression: the expression, using + - * / and parentheses
        """
        allowed = set("0123456789+-*/(). ")
        if not set(expression) <= allowed:
            raise ToolError(f"only arithmetic is allowed, not {expression!r}")
        return float(eval(expression, {"__builtins__": {}}))

    def plot_graph(self, function: str, range: tuple[float, float]) -> str:
        """Plot a function of x over an interval.

        Args:
            function: the function of x, e.g. x**2
            range: the interval of x as [start, end]
        """
        self.plotted.append((function, range))
        return f"plotted {function} on [{range[0]}, {range[1]}]"

    def _helper(self) -> None:
        """Private methods are not tools."""


def test_a_toolkit_class_turns_public_methods_into_definitions() -> None:
    kit = as_toolkit(MathTools())
    assert kit.names() == ["calculate", "plot_graph"]
    calc, plot = kit.definitions()
    assert calc == {
        "type": "function",
        "function": {
            "name": "calculate",
            "description": "Evaluate an arithmetic expression such as 2 * (3 + 4).",
            "parameters": {
                "type": "object",
                "properties": {
                    "expression": {
                        "type": "string",
                        "description": "the expression, using + - * / and parentheses",
                    }
                },
                "required": ["expression"],
                "additionalProperties": False,
            },
        },
    }
    schema = plot["function"]["parameters"]["properties"]["range"]
    assert schema["type"] == "array" and schema["minItems"] == schema["maxItems"] == 2
    assert schema["description"] == "the interval of x as [start, end]"


async def test_calls_are_validated_and_converted_before_the_function_runs() -> None:
    tools = MathTools()
    plot = as_toolkit(tools).get("plot_graph")
    assert plot is not None
    assert (
        await plot.invoke({"function": "x**2", "range": [0, "5"]}) == "plotted x**2 on [0.0, 5.0]"
    )
    assert tools.plotted == [("x**2", (0.0, 5.0))]
    with pytest.raises(ToolArgumentError) as err:
        plot.validate({"function": 3, "range": [1], "color": "red"})
    text = str(err.value)
    assert "function: Input should be a valid string" in text
    assert "range.1: required item missing" in text
    assert "color: unknown argument (the arguments are: function, range)" in text
    with pytest.raises(ToolArgumentError, match="expression: required argument missing"):
        as_toolkit(tools).get("calculate").validate({})  # type: ignore[union-attr]


def test_docstrings_in_sphinx_style_and_titles_named_title() -> None:
    def make_issue(title: str, labels: list[str] | None = None, *, urgent: bool = False) -> dict:
        """Open an issue.

        :param title: one line summary
        :param labels: labels to add
        """
        return {}

    made = Tool.from_function(make_issue)
    params = made.parameters
    assert made.description == "Open an issue."
    assert params["properties"]["title"] == {"type": "string", "description": "one line summary"}
    assert params["required"] == ["title"]
    assert "title" not in params  # pydantic's generated titles are dropped, the property stays
    assert params["properties"]["urgent"]["default"] is False


async def test_async_functions_plain_functions_and_tool_options() -> None:
    @tool(name="lookup-word", policy="ask", description="Look a word up.")
    async def lookup(word: str) -> dict[str, str]:
        await asyncio.sleep(0)
        return {"word": word, "meaning": "a test"}

    def shout(text: str, /) -> str:
        """Upper-case a text."""
        return text.upper()

    kit = as_toolkit([lookup, shout])
    word = kit.get("lookup-word")
    assert word is not None and word.policy == "ask" and word.description == "Look a word up."
    assert await word.invoke({"word": "koma"}) == {"word": "koma", "meaning": "a test"}
    assert await kit.get("shout").invoke({"text": "hi"}) == "HI"  # type: ignore[union-attr]


def test_what_cannot_be_a_tool_is_said_clearly() -> None:
    def splat(*args: int) -> None:
        """Takes anything."""

    with pytest.raises(TypeError, match=r"\*args"):
        Tool.from_function(splat)
    with pytest.raises(ValueError, match="two tools are named"):
        Toolkit([MathTools().calculate, MathTools().calculate])
    with pytest.raises(TypeError, match="holds no tool"):
        as_toolkit(object())


@pytest.fixture(params=["ollama", "lmstudio"])
def sim_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Each tool test runs against Ollama's native wire and LM Studio's OpenAI-compatible one."""
    return {"flavor": request.param}


def chat_bodies(sim: Simulator) -> list[dict[str, Any]]:
    return [r.body for r in sim.requests if r.endpoint in ("chat", "chat_completions")]


async def test_generate_text_runs_the_guides_math_tools(
    sim: Simulator,
    provider: Provider,
) -> None:
    sim.add_reply(
        Reply(
            thinking="I should compute the integral with the tool.",
            tool_calls=[{"name": "calculate", "arguments": {"expression": "5 * 5 * 5 / 3"}}],
            times=1,
        )
    )
    sim.add_reply(Reply(content="The area is about 41.67."))
    tools = MathTools()
    result = await generate_text(
        model="gpt-oss:20b",
        messages=[Message.user("Calculate the area under the curve y=x² from 0 to 5")],
        tools=tools,
        settings=GenerationSettings(reasoning_effort="medium"),
        provider=provider,
    )
    assert result.text == "The area is about 41.67."
    first, second = chat_bodies(sim)
    assert [t["function"]["name"] for t in first["tools"]] == ["calculate", "plot_graph"]
    call, answer = second["messages"][-2:]
    assert answer["role"] == "tool" and answer["content"] == "41.666666666666664"
    if "tool_call_id" in answer:  # OpenAI-compatible: results point at the call's id
        assert answer["tool_call_id"] == call["tool_calls"][0]["id"]
    else:  # Ollama: results name the tool
        assert answer["tool_name"] == "calculate"
    if "tool_name" in answer:  # Ollama keeps the reasoning that led to the call in the turn
        assert call["thinking"] == "I should compute the integral with the tool."


async def test_stream_text_streams_every_step_and_one_done(
    sim: Simulator,
    provider: Provider,
) -> None:
    sim.add_reply(
        Reply(tool_calls=[{"name": "calculate", "arguments": {"expression": "2^8"}}], times=1)
    )
    sim.add_reply(Reply(content="Done."))
    events = [
        e
        async for e in stream_text(
            "gpt-oss:20b", prompt="2^8?", tools=MathTools(), provider=provider
        )
    ]
    calls = [e for e in events if isinstance(e, ToolCallEvent)]
    dones = [e for e in events if isinstance(e, Done)]
    assert [c.call.name for c in calls] == ["calculate"]
    assert len(dones) == 1 and dones[0].result.text == "Done."
    # "^" is not in the allowed characters: the refusal went back to the model, no crash.
    assert "only arithmetic is allowed" in chat_bodies(sim)[1]["messages"][-1]["content"]


async def test_raw_definitions_are_only_sent_not_run(sim: Simulator, provider: Provider) -> None:
    sim.add_reply(Reply(tool_calls=[{"name": "calculate", "arguments": {"expression": "1"}}]))
    result = await generate_text(
        "gpt-oss:20b", prompt="1?", tools=as_toolkit(MathTools()).definitions(), provider=provider
    )
    assert [c.name for c in result.tool_calls] == ["calculate"]
    assert len(chat_bodies(sim)) == 1

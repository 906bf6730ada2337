"""The robust tool loop: `ToolLoop` is both the `ToolHook` and the stream `run_turn` uses.

`engine.chat.run_turn` drives the steps (ask → calls → results → ask again, reasoning kept
inside the turn and dropped after it). `ToolLoop` makes each step survive what local models do:

- calls that arrive as text: Harmony leaks are recovered by the channel parser; a JSON call in
  the final channel is recovered here (and held back from the chat view while it streams);
- arguments that are not JSON or do not fit the schema, and unknown tool names, become error
  results the model can correct; after `max_invalid_calls` in a row tools are withdrawn and the
  model is asked to answer without them;
- Ollama's HTTP 500 `error parsing tool call` is retried once, then reported clearly;
- a model whose server says it "does not support tools" is switched to the text protocol
  (tools described in the prompt, calls parsed from the answer), announced once per model;
- at the last allowed step tools are withdrawn and the model is told to answer; calls it still
  makes are dropped and the turn's result says why (`tools.maxSteps`).

Policy and consent are checked per call (`PolicyGate`; a call the tool marks sensitive is always
asked); one answer may make at most `MAX_CALLS_PER_ANSWER` calls (the rest get an error result,
unrun and unasked); a check that fails with an unexpected error is a result, not a failed turn;
known secret values are redacted from every result (`childenv.Redactor`). Cancelling the turn
cancels the running tool (a test run's process group is killed).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Callable, MutableSet, Sequence
from typing import Any

from koma.engine.chat import ToolOutcome
from koma.engine.harmony import is_builtin_tool
from koma.engine.tools.childenv import Redactor
from koma.engine.tools.policy import PolicyGate
from koma.engine.tools.recover import (
    could_be_call,
    find_calls,
    text_protocol_messages,
    text_protocol_prompt,
)
from koma.engine.tools.toolkit import (
    Tool,
    ToolArgumentError,
    ToolError,
    as_toolkit,
    format_result,
)
from koma.errors import CapabilityMissing, KomaError, ProviderError
from koma.providers.base import ChatRequest, Provider
from koma.types import (
    ChannelEnd,
    ChannelStart,
    Done,
    GenerationResult,
    Message,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallEvent,
)

logger = logging.getLogger("koma.tools")

StreamFn = Callable[[Provider, ChatRequest], AsyncGenerator[StreamEvent, None]]
MAX_RESULT_CHARS = 60_000
# Tool calls one model answer may make; the rest get an error result without running or
# asking, so one answer cannot raise hundreds of confirmations.
MAX_CALLS_PER_ANSWER = 16
# A final answer that opens like a JSON call is held back at most this long while streaming.
HOLD_CHARS = 100_000


def _default_stream() -> StreamFn:
    from koma.engine.stream import stream_events

    return stream_events


class ToolLoop:
    """Tools for one turn: definitions, guarded calls, and the recovering stream."""

    def __init__(
        self,
        tools: object,
        *,
        gate: PolicyGate | None = None,
        max_steps: int = 8,
        max_invalid_calls: int = 3,
        parse_retries: int = 1,
        text_protocol_models: MutableSet[str] | None = None,
        on_notice: Callable[[str], None] | None = None,
        max_result_chars: int = MAX_RESULT_CHARS,
        results_budget_chars: int | None = None,
        stream: StreamFn | None = None,
        redact: Callable[[str], str] | None = None,
        max_calls_per_answer: int = MAX_CALLS_PER_ANSWER,
    ) -> None:
        self.toolkit = as_toolkit(tools)
        self.gate = gate or PolicyGate()
        self.max_steps = max_steps
        self.max_invalid_calls = max_invalid_calls
        self.parse_retries = parse_retries
        # Models known to lack native tools; shared across turns so the switch happens once.
        self.text_models: MutableSet[str] = (
            text_protocol_models if text_protocol_models is not None else set()
        )
        self.on_notice = on_notice
        self.max_result_chars = max_result_chars
        # Tool output a turn may add before tools are withdrawn (it must fit the context).
        self.results_budget_chars = results_budget_chars
        self._result_chars = 0
        self._inner = stream or _default_stream()
        self._step = 0
        self._ids = 0
        self._invalid = 0
        self._closed: str | None = None
        self._warnings: list[str] = []
        self.calls: list[tuple[ToolCall, ToolOutcome]] = []
        # Known secret values (API keys, credential variables) are cut from every result.
        self.redact = redact if redact is not None else Redactor.from_environ()
        self.max_calls_per_answer = max_calls_per_answer
        self._answer_calls: tuple[int, int] = (-1, 0)  # (step, calls seen in its answer)

    # -- ToolHook ---------------------------------------------------------------------------

    def offered(self) -> list[Tool]:
        return [t for t in self.toolkit if self.gate.offered(t)]

    def definitions(self) -> list[dict[str, Any]]:
        return [t.definition() for t in self.offered()]

    async def run(self, call: ToolCall) -> ToolOutcome:
        """Carry out one call; every failure is a not-ok outcome the model can react to."""
        step, seen = self._answer_calls
        seen = seen + 1 if step == self._step else 1
        self._answer_calls = (self._step, seen)
        if seen > self.max_calls_per_answer:
            outcome = _failed(
                f"this answer made more than {self.max_calls_per_answer} tool calls; this one "
                f"was not run. Make at most {self.max_calls_per_answer} calls at a time"
            )
        else:
            try:
                outcome = await self._run(call)
            except (KomaError, OSError, ValueError) as err:  # never a failed turn
                logger.warning("tool call %s failed: %s", call.name, err)
                outcome = _failed(f"{call.name} failed: {err}")
        if self.redact is not None:
            outcome = ToolOutcome(self.redact(outcome.content), ok=outcome.ok)
        self.calls.append((call, outcome))
        return outcome

    async def _run(self, call: ToolCall) -> ToolOutcome:
        tool = self.toolkit.get(call.name) or self.toolkit.get(
            call.name.strip().removeprefix("functions.")  # a Harmony recipient as the name
        )
        if tool is None:
            names = ", ".join(t.name for t in self.offered()) or "none"
            if is_builtin_tool(call.name.strip()):  # a Harmony recipient such as browser.search
                return self._invalid_call(
                    f"{call.name} is not available: it is one of gpt-oss's built-in tools "
                    f"(browser, python, container), which this editor does not provide; nothing "
                    f"was run. Use one of these tools instead, or answer without it: {names}"
                )
            return self._invalid_call(
                f"there is no tool named {call.name!r}; the tools are: {names}"
            )
        if isinstance(call.arguments, str):
            problem = _json_problem(call.arguments)
            return self._invalid_call(
                f"the arguments for {tool.name} are not a JSON object ({problem}); "
                f"send an object matching this schema: {_schema(tool)}"
            )
        try:
            checked = await tool.check(call.arguments)
            sensitive = await tool.sensitivity(checked)
        except ToolArgumentError as err:
            return self._invalid_call(f"{err}. The schema: {_schema(tool)}")
        except ToolError as err:
            return _failed(str(err))
        except Exception as err:  # a check's bug or an OS error: a result, not a crash
            logger.exception("checking a call of %s failed", tool.name)
            return _failed(f"{tool.name} could not be checked: {type(err).__name__}: {err}")
        refusal = await self.gate.check(tool, checked, sensitive=sensitive)
        if refusal is not None:
            return _failed(refusal)
        try:
            value = await tool.invoke(checked)
        except ToolError as err:
            return _failed(str(err))
        except Exception as err:  # a tool's bug is reported, never a crash of the turn
            logger.exception("tool %s failed", tool.name)
            return _failed(f"{tool.name} failed: {type(err).__name__}: {err}")
        self._invalid = 0
        text = format_result(value, self.max_result_chars)
        self._result_chars += len(text)
        budget = self.results_budget_chars
        if budget is not None and self._result_chars > budget and self._closed is None:
            self._closed = "the tool results fill their share of the context window"
        return ToolOutcome(text)

    def _invalid_call(self, text: str) -> ToolOutcome:
        self._invalid += 1
        if self._invalid >= self.max_invalid_calls:
            self._closed = f"the model sent {self._invalid} invalid tool calls in a row"
            text += " — no more tool calls are accepted in this turn; answer without tools"
        return _failed(text)

    # -- the stream -------------------------------------------------------------------------

    async def stream(
        self, provider: Provider, request: ChatRequest
    ) -> AsyncGenerator[StreamEvent, None]:
        """`stream_events` for one step, with retries, fallbacks and recovered calls."""
        step = self._step
        self._step += 1
        closing = self._closed
        if closing is None and step >= self.max_steps - 1:
            closing = f"the step limit was reached (tools.maxSteps = {self.max_steps})"
        failures = 0
        while True:
            text_mode = request.model in self.text_models
            prepared = self._prepare(request, closing, text_mode)
            open_channel: list[Any] = [None]
            try:
                events = self._recovering(provider, prepared, step, closing, text_mode)
                async with contextlib.aclosing(events) as stream:
                    async for event in stream:
                        if isinstance(event, ChannelStart):
                            open_channel[0] = event.channel
                        elif isinstance(event, ChannelEnd):
                            open_channel[0] = None
                        yield event
                return
            except (CapabilityMissing, ProviderError) as err:
                if not text_mode and prepared.tools and _lacks_tools(err):
                    self._switch_to_text(request.model, err)
                elif isinstance(err, ProviderError) and _parse_failure(err):
                    failures += 1
                    if failures > self.parse_retries:
                        raise ProviderError(
                            f"the model wrote a tool call the server could not parse, "
                            f"{failures} times: {err.message}",
                            "ask again, lower the reasoning effort, or try another model",
                            status=err.status,
                        ) from err
                    logger.info("retrying after a tool-call parse error: %s", err.message)
                else:
                    raise
            if open_channel[0] is not None:  # the failed attempt left a channel open
                yield ChannelEnd(open_channel[0])

    def _switch_to_text(self, model: str, err: KomaError) -> None:
        self.text_models.add(model)
        notice = (
            f"{model} has no native tool calling ({err.message}); Koma describes the tools in "
            "the prompt instead, which works less reliably"
        )
        self._warn(notice)
        if self.on_notice is not None:
            self.on_notice(notice)

    def _warn(self, text: str) -> None:
        if text not in self._warnings:
            self._warnings.append(text)

    def _prepare(self, request: ChatRequest, closing: str | None, text_mode: bool) -> ChatRequest:
        messages = list(request.messages)
        tools = None if closing else self.definitions() or None
        if text_mode:
            prompt = text_protocol_prompt(tools) if tools else ""
            messages = text_protocol_messages(messages, prompt)
            tools = None
        if closing:
            messages.append(
                Message.user(
                    f"(No more tool calls in this turn: {closing}. Answer the question now with "
                    "what you have found so far.)"
                )
            )
        return ChatRequest(
            request.model, messages, request.settings, tools, request.response_format
        )

    async def _recovering(
        self,
        provider: Provider,
        request: ChatRequest,
        step: int,
        closing: str | None,
        text_mode: bool,
    ) -> AsyncGenerator[StreamEvent, None]:
        names = None if text_mode else [t.name for t in self.offered()]
        watching = closing is None
        held: list[StreamEvent] = []
        held_text = ""
        dropped: list[str] = []
        async with contextlib.aclosing(self._inner(provider, request)) as events:
            async for event in events:
                if isinstance(event, ToolCallEvent):
                    if closing:
                        dropped.append(event.call.name)
                        continue
                    self._assign_id(event.call, step)
                    yield event
                elif isinstance(event, Done):
                    for extra in self._finish(event.result, step, closing, names, dropped):
                        yield extra
                    yield event
                elif held or (
                    watching and isinstance(event, ChannelStart) and event.channel == "final"
                ):
                    held.append(event)
                    if isinstance(event, TextDelta):
                        held_text += event.text
                    verdict = could_be_call(held_text)
                    if isinstance(event, ChannelEnd):
                        found = find_calls(held_text, names)
                        for shown in _shown_part(held, found.rest if found else None):
                            yield shown
                        held, watching = [], False
                    elif verdict is False or len(held_text) > HOLD_CHARS:
                        for shown in held:
                            yield shown
                        held, watching = [], False
                else:
                    yield event
        for shown in held:  # a stream that ended without closing its channel
            yield shown

    def _finish(
        self,
        result: GenerationResult,
        step: int,
        closing: str | None,
        names: Sequence[str] | None,
        dropped: list[str],
    ) -> list[StreamEvent]:
        """Adjust the step's result: recovered JSON calls in, withheld calls out."""
        extra: list[StreamEvent] = []
        if closing:
            if result.tool_calls or dropped:
                wanted = ", ".join(sorted(set(dropped + [c.name for c in result.tool_calls])))
                result.tool_calls = []
                self._warn(
                    f"stopped using tools: {closing}; the model still wanted to call {wanted}"
                )
        else:
            found = find_calls(result.text, names)
            if found is not None:
                known = {(c.name, c.arguments_json()) for c in result.tool_calls}
                new = [c for c in found.calls if (c.name, c.arguments_json()) not in known]
                for call in new:
                    self._assign_id(call, step)
                result.tool_calls += new
                result.text = found.rest
                if found.rest:
                    result.channels["final"] = found.rest
                else:
                    result.channels.pop("final", None)
                if names is not None:
                    self._warn("recovered a tool call the model wrote as text")
                extra = [ToolCallEvent(call) for call in new]
        if not result.tool_calls:  # the turn ends with this answer
            result.warnings += [w for w in self._warnings if w not in result.warnings]
        return extra

    def _assign_id(self, call: ToolCall, step: int) -> None:
        """Unique ids per turn (servers without ids, and the parser's `leaked_N`, repeat)."""
        if not call.id or call.id.startswith("leaked_"):
            self._ids += 1
            call.id = f"call_{step}_{self._ids}"


def _shown_part(held: list[StreamEvent], rest: str | None) -> list[StreamEvent]:
    """What of a held final channel the user sees: all of it, or only text around a call."""
    if rest is None:
        return held
    if not rest:
        return []
    return [ChannelStart("final"), TextDelta("final", rest), ChannelEnd("final")]


def _lacks_tools(err: KomaError) -> bool:
    """The server refused `tools` for this model (Ollama 400, llama.cpp without --jinja, …)."""
    text = str(err).lower()
    if "tool" not in text or _parse_failure(err):
        return False
    return isinstance(err, CapabilityMissing) or any(
        p in text for p in ("not support", "unsupported", "--jinja", "not supported")
    )


def _parse_failure(err: KomaError) -> bool:
    return "error parsing tool call" in str(err).lower()


def _failed(text: str) -> ToolOutcome:
    return ToolOutcome(f"Error: {text}", ok=False)


def _schema(tool: Tool) -> str:
    return json.dumps(tool.parameters, ensure_ascii=False, separators=(",", ":"))


def _json_problem(text: str) -> str:
    try:
        json.loads(text)
    except ValueError as err:
        return f"invalid JSON: {err}"
    return "JSON, but not an object"

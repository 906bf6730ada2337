"""Chat conversations: history per chat id, context-window fitting, shared code, the turn runner.

A conversation keeps the system prompt and the finished turns. Before each request the history
is fitted into the model's context window: the system prompt and the new message always stay,
then whole earlier turns are kept newest-first while they fit — a local model's context is
small and silently truncated by some servers (Ollama), so Koma trims it deliberately instead.
Tokens are estimated with `koma.engine.tokens`, like every other budget. A file or selection
the user shares goes in front of their message (`with_shared_code`), clipped to its share of
the window.

Reasoning is not carried across turns: once a turn ends with a final answer its analysis is
dropped from history (the gpt-oss / Harmony rule, and llama.cpp's template rejects it anyway).
Inside one turn — a tool-calling loop — the reasoning that led to a call is kept.

`run_turn` is the loop: stream one answer, and if the model called tools and a `ToolHook` is
given, run them, append the results and ask again, up to `max_steps`.
"""

from __future__ import annotations

import contextlib
import inspect
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from koma.engine.tokens import DEFAULT_CONTEXT_TOKENS, file_context_chars, message_tokens
from koma.errors import ContextOverflow, StreamError
from koma.providers.base import ChatRequest, Provider
from koma.types import (
    Done,
    GenerationResult,
    GenerationSettings,
    Message,
    StreamEvent,
    ToolCall,
)

DEFAULT_SYSTEM_PROMPT = (
    "You are Koma, a coding assistant running on the user's own machine inside their editor. "
    "Answer precisely and briefly. Use Markdown; put code in fenced code blocks with the "
    "language name. When the user shares a file or selection, refer to it by its path and "
    "line numbers."
)
MAX_CONVERSATIONS = 100

Span = tuple[tuple[int, int], tuple[int, int]]


def reserve_for_answer(context_tokens: int, max_tokens: int | None) -> int:
    """Room left for the answer (reasoning included) when the caller sets no max_tokens."""
    if max_tokens is not None:
        return min(max_tokens, context_tokens // 2)
    return max(512, context_tokens // 4)


def _turns(history: Sequence[Message]) -> list[list[Message]]:
    """Group history into turns, each starting at a user message (tool results stay inside)."""
    turns: list[list[Message]] = []
    for message in history:
        if message.role == "user" or not turns:
            turns.append([message])
        else:
            turns[-1].append(message)
    return turns


def fit_history(
    system: Message | None,
    history: Sequence[Message],
    current: Sequence[Message],
    budget_tokens: int,
) -> list[Message]:
    """System prompt + the most recent whole turns that fit + the current turn's messages.

    Raises `ContextOverflow` when even the system prompt and the current turn do not fit.
    """
    fixed = ([system] if system else []) + list(current)
    used = sum(message_tokens(m) for m in fixed)
    if used > budget_tokens:
        raise ContextOverflow(
            f"the message needs about {used} tokens but only {budget_tokens} fit the context",
            "shorten the message or selection, or raise numCtx",
        )
    kept: list[list[Message]] = []
    for turn in reversed(_turns(history)):
        cost = sum(message_tokens(m) for m in turn)
        if used + cost > budget_tokens:
            break
        kept.append(turn)
        used += cost
    earlier = [m for turn in reversed(kept) for m in turn]
    return ([system] if system else []) + earlier + list(current)


def selection_lines(text: str, span: Span | None) -> tuple[int, int, str]:
    """Whole lines of a selection (all lines without one), clamped to the document.

    Returns (first line, last line, their text), 0-based. A selection that ends at the start
    of a line does not take that line.
    """
    lines = text.split("\n")
    if span is None:
        return 0, len(lines) - 1, text
    first = min(max(span[0][0], 0), len(lines) - 1)
    last = min(max(span[1][0], first), len(lines) - 1)
    if last > first and span[1][1] == 0:
        last -= 1
    return first, last, "\n".join(lines[first : last + 1])


def with_shared_code(
    message: str,
    *,
    path: str,
    language: str,
    text: str,
    span: Span | None,
    context_tokens: int,
    redact: Callable[[str], str] = lambda code: code,
) -> str:
    """The user's message prefixed with the file or selection they shared, fitted to the model.

    The code takes at most `tokens.file_context_chars(context_tokens)` characters (clipped and
    said so), so the message and the history still fit; `redact` cuts known secret values
    before anything is measured or sent. A bare cursor (empty span) shares the whole file.
    """
    if span is not None and span[0] == span[1]:
        span = None
    first, last, code = selection_lines(text, span)
    code = redact(code)
    max_chars = file_context_chars(context_tokens)
    clipped = ""
    if len(code) > max_chars:
        code = code[:max_chars]
        clipped = " (clipped)"
    what = "selection" if span is not None else "file"
    fence = "````" if "```" in code else "```"
    return (
        f"The user's {what}: {path}, lines {first + 1}-{last + 1}{clipped}\n"
        f"{fence}{language}\n{code}\n{fence}\n\n{message}"
    )


def shared_code_read_limit(context_tokens: int) -> int:
    """How many bytes of a shared file to read: enough for what `with_shared_code` keeps."""
    return file_context_chars(context_tokens) * 4 + 4


@dataclass
class Conversation:
    """One chat: its id, system prompt and finished turns."""

    chat_id: str
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    history: list[Message] = field(default_factory=list)

    def messages_for(self, current: Sequence[Message], budget_tokens: int) -> list[Message]:
        system = Message.system(self.system_prompt) if self.system_prompt else None
        return fit_history(system, self.history, current, budget_tokens)

    def commit(self, turn: Sequence[Message]) -> None:
        """Store a finished turn without its reasoning (the answer ended in `final`)."""
        for message in turn:
            if message.thinking:
                message = Message(
                    message.role,
                    message.content,
                    None,
                    list(message.tool_calls),
                    message.tool_name,
                    message.tool_call_id,
                )
            self.history.append(message)


class ChatStore:
    """Conversations by id; the least recently used are forgotten beyond `max_conversations`."""

    def __init__(self, max_conversations: int = MAX_CONVERSATIONS) -> None:
        self._chats: OrderedDict[str, Conversation] = OrderedDict()
        self._max = max_conversations

    @staticmethod
    def new_id() -> str:
        return "c" + uuid.uuid4().hex[:12]

    def open(self, chat_id: str | None, system_prompt: str | None = None) -> Conversation:
        """The conversation for `chat_id`, created when unknown (or when no id is given)."""
        chat_id = chat_id or self.new_id()
        conversation = self._chats.get(chat_id)
        if conversation is None:
            conversation = Conversation(chat_id, system_prompt or DEFAULT_SYSTEM_PROMPT)
            self._chats[chat_id] = conversation
            while len(self._chats) > self._max:
                self._chats.popitem(last=False)
        self._chats.move_to_end(chat_id)
        return conversation

    def get(self, chat_id: str) -> Conversation | None:
        return self._chats.get(chat_id)

    def __len__(self) -> int:
        return len(self._chats)

    def clear(self) -> int:
        count = len(self._chats)
        self._chats.clear()
        return count


@dataclass
class ToolOutcome:
    """What running one tool gave back to the model."""

    content: str
    ok: bool = True


@dataclass
class ToolResultEvent:
    call: ToolCall
    outcome: ToolOutcome
    type: Literal["tool_result"] = "tool_result"


TurnEvent = StreamEvent | ToolResultEvent


class ToolHook(Protocol):
    """The tool loop's plug: which tools the model may call, and how a call is carried out.

    `run` decides on consent itself (policy, asking the user) and returns a refusal as a
    not-ok outcome rather than raising, so the model can react to it.
    """

    def definitions(self) -> list[dict[str, Any]]: ...

    async def run(self, call: ToolCall) -> ToolOutcome: ...


StreamFn = Callable[[Provider, ChatRequest], AsyncGenerator[StreamEvent, None]]
EventSink = Callable[[TurnEvent], Awaitable[None] | None]


def _default_stream() -> StreamFn:
    from koma.engine.stream import stream_events

    return stream_events


async def _emit(sink: EventSink, event: TurnEvent) -> None:
    result = sink(event)
    if inspect.isawaitable(result):
        await result


async def run_turn(
    provider: Provider,
    model: str,
    conversation: Conversation,
    user_text: str,
    settings: GenerationSettings,
    on_event: EventSink,
    *,
    context_tokens: int = DEFAULT_CONTEXT_TOKENS,
    tools: ToolHook | None = None,
    max_steps: int = 8,
    stream: StreamFn | None = None,
) -> GenerationResult:
    """Run one user turn to its final answer, streaming every event to `on_event`.

    The `Done` event is forwarded once, for the final answer of the turn. History is only
    updated when the turn completes, so a failed or cancelled turn can simply be retried.
    """
    stream_fn = stream or _default_stream()
    budget = context_tokens - reserve_for_answer(context_tokens, settings.max_tokens)
    current: list[Message] = [Message.user(user_text)]
    result: GenerationResult | None = None
    for step in range(max_steps):
        request = ChatRequest(
            model=model,
            messages=conversation.messages_for(current, budget),
            settings=settings,
            tools=tools.definitions() if tools else None,
        )
        result = None
        async with contextlib.aclosing(stream_fn(provider, request)) as events:
            async for event in events:
                if isinstance(event, Done):
                    result = event.result
                else:
                    await _emit(on_event, event)
        if result is None:
            raise StreamError("the model's stream ended without a result", "try again")
        if not (tools and result.tool_calls) or step == max_steps - 1:
            break
        current.append(
            Message(
                "assistant",
                result.text,
                thinking=result.reasoning or None,
                tool_calls=list(result.tool_calls),
            )
        )
        for call in result.tool_calls:
            outcome = await tools.run(call)
            await _emit(on_event, ToolResultEvent(call, outcome))
            current.append(Message.tool(outcome.content, call.name, call.id))
    assert result is not None
    if tools and result.tool_calls:
        result.warnings.append(f"stopped after {max_steps} tool steps (tools.maxSteps)")
    current.append(Message.assistant(result.text))
    conversation.commit(current)
    await _emit(on_event, Done(result))
    return result

"""The Python API: `generate`, `generate_text`, `stream_text` (docs/providers.md, docs/tools.md).

```python
text = await generate("Explain relativity", model="gpt-oss:120b")
result = await generate_text(model="gpt-oss:120b", messages=[Message.user("Why?")],
                             settings=GenerationSettings(reasoning_effort="high"))
result.text, result.channels["analysis"], result.reasoning
async for event in stream_text(model="gpt-oss:120b", prompt="Hi"): ...

@toolkit                      # koma.engine.tools: public methods become tools
class MathTools:
    def calculate(self, expression: str) -> float:
        '''Evaluate an arithmetic expression.'''
result = await generate_text(model="gpt-oss:120b", prompt="What is 17 * 23?", tools=MathTools())
```

`tools=` takes a toolkit (a `@toolkit` instance, a `Toolkit`, functions): the calls the model
makes are then run and their results fed back until it answers (`tools.maxSteps` steps at most),
and the stream carries each step's events with one `Done` at the end. A list of raw JSON tool
definitions is only sent along: the calls come back in `result.tool_calls` unanswered.

Whatever the call leaves out, Koma's own settings decide (flags are absent here, so `KOMA_*`
variables, `.koma.toml`, the user config and defaults) through the same engine `Session` the
CLI and the language server hold (`koma.engine.session`): the provider is resolved as they
resolve it (probing for `auto`, with the context planned from free memory for Ollama), wrapped
in the process-wide response cache as `cache.*` says, and closed again when the stream ends;
the model is `model`, else a loaded one, else the first listed; the request settings are the
chat's (`reasoningEffort.chat`, `chat.*`, `numCtx`, `keepAlive`, `gpu.*`). A `provider` you
pass is used as it is: not cached, not closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING

from koma.engine.stream import collect, stream_events
from koma.engine.tools.toolkit import is_tool_definitions
from koma.errors import ConfigError
from koma.providers.base import ChatRequest, Provider
from koma.types import GenerationResult, GenerationSettings, Message, StreamEvent

if TYPE_CHECKING:
    from koma.engine.session import Session


def stream_text(
    model: str | None = None,
    messages: Sequence[Message] | None = None,
    settings: GenerationSettings | None = None,
    *,
    prompt: str | None = None,
    provider: Provider | None = None,
    tools: object = None,
) -> AsyncGenerator[StreamEvent, None]:
    """Stream channel_start / text_delta / channel_end / tool_call / done events.

    `prompt` is appended as a user message after `messages`. Wrap the call in
    `contextlib.aclosing` to close the server's response the moment you stop reading.
    """
    conversation = list(messages or [])
    if prompt is not None:
        conversation.append(Message.user(prompt))
    if not conversation:
        raise ConfigError("nothing to send", "pass messages=[...] or prompt='...'")
    return _stream(model, conversation, settings, provider, tools)


async def generate_text(
    model: str | None = None,
    messages: Sequence[Message] | None = None,
    settings: GenerationSettings | None = None,
    *,
    prompt: str | None = None,
    provider: Provider | None = None,
    tools: object = None,
) -> GenerationResult:
    """The whole answer: final text, every channel, tool calls, usage and metrics."""
    events = stream_text(model, messages, settings, prompt=prompt, provider=provider, tools=tools)
    return await collect(events)


async def generate(
    prompt: str,
    model: str | None = None,
    *,
    settings: GenerationSettings | None = None,
    provider: Provider | None = None,
) -> str:
    """Just the final answer to one prompt."""
    result = await generate_text(model, settings=settings, prompt=prompt, provider=provider)
    return result.text


async def _stream(
    model: str | None,
    messages: list[Message],
    settings: GenerationSettings | None,
    provider: Provider | None,
    tools: object,
) -> AsyncGenerator[StreamEvent, None]:
    session = _session(provider, needs_settings=model is None or settings is None)
    try:
        used = await session.cached_provider()
        if settings is None:
            settings = session.request_settings("chat")
        if model is None:
            model = await session.model("chat")
        if tools is not None and not is_tool_definitions(tools):
            async for event in _tool_loop(used, model, messages, settings, tools):
                yield event
            return
        request = ChatRequest(model, messages, settings, tools=tools or None)  # type: ignore[arg-type]
        async with aclosing(stream_events(used, request)) as events:
            async for event in events:
                yield event
    finally:
        await session.aclose()


async def _tool_loop(
    provider: Provider,
    model: str,
    messages: list[Message],
    settings: GenerationSettings,
    tools: object,
) -> AsyncGenerator[StreamEvent, None]:
    """Run the tool loop in a task and hand its stream events over as they come."""
    from koma.engine.chat import ToolResultEvent
    from koma.engine.tools.api import run_with_tools

    queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue()

    def forward(event: StreamEvent | ToolResultEvent) -> None:
        if not isinstance(event, ToolResultEvent):
            queue.put_nowait(event)

    async def drive() -> None:
        try:
            await run_with_tools(provider, model, messages, settings, tools, forward)
        finally:
            queue.put_nowait(None)

    task = asyncio.ensure_future(drive())
    try:
        while (event := await queue.get()) is not None:
            yield event
        await task  # raises what the loop raised
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _session(provider: Provider | None, *, needs_settings: bool) -> Session:
    """The call's session: Koma's settings unless everything is given (then none are read),
    the caller's provider if any, and the process-wide response cache."""
    from koma.engine.cache import ResponseCache  # lazy: keeps `import koma` light
    from koma.engine.session import Session
    from koma.settings import KomaSettings

    if provider is None or needs_settings:
        from koma.settings.layers import load_settings

        settings = load_settings()
    else:
        settings = KomaSettings()
    return Session(settings, provider=provider, cache=ResponseCache.local_model_cache())

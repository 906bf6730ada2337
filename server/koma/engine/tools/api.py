"""The Python API's tool loop: `generate_text(..., tools=MathTools())` runs the calls it gets.

The same `run_turn` as the editor's chat, with the caller's toolkit, no policy questions (the
caller wrote the functions) and no trimming of the messages the caller chose.
"""

from __future__ import annotations

from collections.abc import Sequence

from koma.engine.chat import Conversation, EventSink, run_turn
from koma.engine.tools.loop import ToolLoop
from koma.errors import ConfigError
from koma.providers.base import Provider
from koma.types import GenerationResult, GenerationSettings, Message


async def run_with_tools(
    provider: Provider,
    model: str,
    messages: Sequence[Message],
    settings: GenerationSettings,
    tools: object,
    on_event: EventSink,
    *,
    max_steps: int = 8,
) -> GenerationResult:
    """The Python API's tool loop: `messages` end with the user's; tools run as they are called."""
    if not messages or messages[-1].role != "user":
        raise ConfigError(
            "with tools, the last message must be the user's", "end messages with Message.user()"
        )
    loop = tools if isinstance(tools, ToolLoop) else ToolLoop(tools, max_steps=max_steps)
    system = messages[0].content if messages[0].role == "system" else ""
    history = list(messages[1:-1] if system else messages[:-1])
    conversation = Conversation("api", system, history)
    context = settings.num_ctx or 1 << 20  # the caller chose the messages: nothing is trimmed
    return await run_turn(
        provider,
        model,
        conversation,
        messages[-1].content,
        settings,
        on_event,
        context_tokens=context,
        tools=loop,
        max_steps=loop.max_steps,
        stream=loop.stream,
    )

"""Text handling for the embedded provider's small models: base-model prompts.

The packaged Gemma 3 270M is a base model: it has no chat template and continues whatever
transcript it is given, so chat turns are written as a question / answer transcript that stops
at the next turn. (An answer that starts repeating itself is ended by the engine's repetition
guard, as for every provider.)
"""

from __future__ import annotations

from koma.types import Message

# A base model's transcript continues with the next turn unless stopped there.
TRANSCRIPT_STOPS = ("\nQuestion:", "\nAnswer:")


def transcript(messages: list[Message]) -> str:
    """A base model's prompt: the system text, then question / answer turns."""
    parts: list[str] = []
    for message in messages:
        if message.role == "system":
            parts.append(f"{message.content}\n")
        elif message.role == "user":
            parts.append(f"Question: {message.content}")
        elif message.role == "assistant":
            parts.append(f"Answer: {message.content}\n")
        else:
            parts.append(f"Result of {message.tool_name or 'the tool'}: {message.content}")
    return "\n".join(parts) + "\nAnswer:"


class AnswerStart:
    """Drops the whitespace a transcript answer starts with (`Answer:` is followed by a space).

    Loops are no longer the provider's business: every chat stream runs through the engine's
    repetition guard (`koma.engine.repetition`), whichever provider serves it.
    """

    def __init__(self, strip_leading: bool) -> None:
        self._strip_leading = strip_leading

    def feed(self, text: str) -> str:
        """The text to show now."""
        if self._strip_leading:
            text = text.lstrip()
            if text:
                self._strip_leading = False
        return text

"""Text handling for the embedded provider's small models: base-model prompts and loop guard.

The packaged Gemma 3 270M is a base model: it has no chat template and continues whatever
transcript it is given, so chat turns are written as a question / answer transcript that stops
at the next turn, and an answer that starts repeating one line is cut short.
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


class LoopGuard:
    """Ends a chat answer that starts repeating one line, without printing the extra copies.

    Small models fall into loops (the same `print(...)` line until max_tokens). A line may
    appear `max_repeats` times in a row; while the line being generated could become one more
    copy it is held back, and if it does, generation stops there.
    """

    def __init__(self, strip_leading: bool, max_repeats: int = 2) -> None:
        self._strip_leading = strip_leading
        self._max = max_repeats
        self._line = ""  # the line being generated
        self._held = ""  # the part of it not shown yet
        self._last = ""  # the last complete non-blank line
        self._count = 0  # how many times in a row it appeared

    def feed(self, text: str) -> tuple[str, bool]:
        """The text to show now, and whether the answer is looping (stop generating)."""
        if self._strip_leading:
            text = text.lstrip()
            if not text:
                return "", False
            self._strip_leading = False
        shown: list[str] = []
        for piece in text.splitlines(keepends=True):
            ended = piece.endswith(("\n", "\r"))
            self._line += piece.rstrip("\r\n") if ended else piece
            self._held += piece
            if ended:
                line, self._line = self._line.strip(), ""
                if line and line == self._last:
                    self._count += 1
                elif line:
                    self._last, self._count = line, 1
                if self._count > self._max:
                    return "".join(shown), True
            if ended or not self._may_repeat():
                # A line that ended within the limit is shown whole, newline included.
                shown.append(self._held)
                self._held = ""
        return "".join(shown), False

    def flush(self) -> str:
        """What is still held back when generation ends on its own."""
        held, self._held = self._held, ""
        return held

    def _may_repeat(self) -> bool:
        return self._count >= self._max and self._last.startswith(self._line.strip())

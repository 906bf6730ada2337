"""Koma's one token estimate, and the context budgets derived from it.

No tokenizer is loaded (not on the keystroke path, not for a chat's history): a token is taken
to be `CHARS_PER_TOKEN` characters. 3.5 errs towards over-counting for code and English, so a
window planned with it is slightly smaller than the model's, never larger — a local server
cuts an oversized prompt silently (Ollama), which is worse than sending a little less.

Everything that turns tokens into characters or shares a context window out — the chat's
history fit, the file a chat message carries, the tool results of a turn, the text read around
the cursor for inline completion, the check that a prompt was truncated — uses this module, so
the editor, the CLI and the Python API count the same way.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from koma.types import Message

# Rough characters per token for code and English; errs towards over-counting.
CHARS_PER_TOKEN = 3.5
# The role markers and separators a chat template adds around each message.
PER_MESSAGE_TOKENS = 4
# A model's context when nothing says how large it is (setting, server, GGUF metadata).
DEFAULT_CONTEXT_TOKENS = 8192

# The share of the context window a file or selection may take in a chat message.
FILE_CONTEXT_SHARE = 0.5
# Shares of the context window for one tool result / all of a turn's tool results, with floors
# so a small window still gets a useful result.
TOOL_RESULT_SHARE, TOOL_RESULTS_SHARE = 0.25, 0.5
MIN_TOOL_RESULT_CHARS, MIN_TOOL_RESULTS_CHARS = 2000, 4000
# Inline completion reads more text around the cursor than the prompt will use (the prompt
# builder snaps its window to line and grid boundaries, and redaction may shorten it): the
# budgets plus this slack, times this factor.
COMPLETION_PREFIX_SLACK_TOKENS, COMPLETION_SUFFIX_SLACK_TOKENS = 512, 64
COMPLETION_READ_FACTOR = 1.5
# The share of the completion prefix budget the context ring's chunks of other files may take.
RING_SHARE = 0.25


def estimate_tokens(text: str) -> int:
    """About how many tokens `text` is (0 for no text); deliberately not precise."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def chars_for_tokens(tokens: float) -> int:
    """How many characters `tokens` tokens hold, by the same estimate."""
    return int(tokens * CHARS_PER_TOKEN)


def message_tokens(message: Message) -> int:
    """A chat message's estimated cost: its text, its reasoning and its tool calls."""
    total = PER_MESSAGE_TOKENS + estimate_tokens(message.content)
    if message.thinking:
        total += estimate_tokens(message.thinking)
    for call in message.tool_calls:
        total += estimate_tokens(call.name + call.arguments_json())
    return total


def file_context_chars(context_tokens: int) -> int:
    """The most characters of a shared file or selection a chat message may carry."""
    return chars_for_tokens(context_tokens * FILE_CONTEXT_SHARE)


def tool_result_budgets(context_tokens: int) -> tuple[int, int]:
    """(characters of one tool result, characters of all of one turn's results)."""
    chars = context_tokens * CHARS_PER_TOKEN
    return (
        max(MIN_TOOL_RESULT_CHARS, int(chars * TOOL_RESULT_SHARE)),
        max(MIN_TOOL_RESULTS_CHARS, int(chars * TOOL_RESULTS_SHARE)),
    )


def completion_read_chars(prefix_tokens: int, suffix_tokens: int) -> tuple[int, int]:
    """(characters before, characters after the cursor) to read for one inline completion."""
    return (
        chars_for_tokens((prefix_tokens + COMPLETION_PREFIX_SLACK_TOKENS) * COMPLETION_READ_FACTOR),
        chars_for_tokens((suffix_tokens + COMPLETION_SUFFIX_SLACK_TOKENS) * COMPLETION_READ_FACTOR),
    )


def ring_budget_chars(prefix_tokens: int) -> int:
    """Characters of other files' chunks one completion prompt carries (the context ring);
    the idle warm-up sends the same, so the server's prompt cache matches the next request."""
    return int(prefix_tokens * CHARS_PER_TOKEN * RING_SHARE)

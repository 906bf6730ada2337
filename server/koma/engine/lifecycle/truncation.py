"""Never silently truncated: spot a prompt the server cut, and trim history on purpose instead.

Ollama does not fail when a prompt outgrows `num_ctx`; it drops tokens and carries on (older
versions kept what filled the window, current ones keep about half of it: `num_ctx / 2 + 2`).
The only trace is `prompt_eval_count` in the final chunk, lower than what was sent. Koma
estimates what it sent and, when the estimate exceeds the window and the server counted clearly
less, adds a warning to the result that says what happened and what to do.

A lower count alone is not truncation: a cached prompt prefix is not evaluated again, so
`prompt_eval_count` can be tiny for a prompt that fitted. That is why the estimate must also
exceed the window.

History strategies (docs/local-models.md, "Context window"): `keep-recent` keeps the newest messages
that fit; `keep-system-and-recent` always keeps the leading system messages, then the newest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from koma.engine.tokens import estimate_tokens, message_tokens
from koma.providers.base import ChatRequest, CompletionRequest
from koma.types import Message

TruncationStrategy = Literal["keep-recent", "keep-system-and-recent"]
STRATEGIES: tuple[TruncationStrategy, ...] = ("keep-recent", "keep-system-and-recent")
# The server counted "clearly less" than sent: below this share of the estimate.
CLEARLY_LESS = 0.75
# A window at least this full means the server filled it to the brim.
FULL_WINDOW = 0.95


def request_tokens(request: ChatRequest | CompletionRequest) -> int:
    """What a request sends, estimated (`koma.engine.tokens`, the estimate every budget uses):
    messages (or prompt, suffix, system) plus tools."""
    if isinstance(request, ChatRequest):
        total = sum(message_tokens(m) for m in request.messages)
        if request.tools:
            total += estimate_tokens(repr(request.tools))
        return total
    return (
        estimate_tokens(request.prompt)
        + estimate_tokens(request.suffix or "")
        + estimate_tokens(request.system or "")
    )


def truncation_warning(
    prompt_eval_count: int | None, sent_tokens: int | None, num_ctx: int | None
) -> str | None:
    """A user-facing warning when the server evidently cut the prompt; None otherwise."""
    if prompt_eval_count is None or not sent_tokens or not num_ctx:
        return None
    if sent_tokens <= num_ctx:
        return None  # it fitted by our estimate; a lower count is a cached prefix
    halved = abs(prompt_eval_count - (num_ctx // 2 + 2)) <= 2
    filled = prompt_eval_count >= FULL_WINDOW * num_ctx
    if not (halved or filled or prompt_eval_count < CLEARLY_LESS * sent_tokens):
        return None  # the server counted about what we sent: our estimate ran high
    return (
        f"the prompt was truncated: about {sent_tokens:,} tokens were sent but the context "
        f"window is {num_ctx:,}, and the server read only {prompt_eval_count:,} of them — the "
        "beginning of the conversation was dropped. Raise numCtx (`koma doctor` shows the "
        "largest safe value for this machine) or shorten the conversation."
    )


def result_truncation_warning(
    raw: dict[str, Any] | None, sent_tokens: int | None, prompt_tokens: int | None = None
) -> str | None:
    """The warning for a finished stream, from the final chunk's `raw` (Ollama's counts)."""
    if not raw:
        return None
    count = raw.get("prompt_eval_count")
    num_ctx = raw.get("num_ctx")
    if not isinstance(count, int):
        count = prompt_tokens
    return truncation_warning(count, sent_tokens, num_ctx if isinstance(num_ctx, int) else None)


def truncate_history(
    messages: Sequence[Message],
    max_tokens: int,
    strategy: TruncationStrategy = "keep-system-and-recent",
    count: Callable[[Message], int] = message_tokens,
) -> list[Message]:
    """The messages to send within `max_tokens`; the last message is always kept.

    Tool results are never sent without the assistant message that asked for them: a cut that
    would orphan them moves forward past them.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown truncation strategy {strategy!r}; use one of {STRATEGIES}")
    items = list(messages)
    if not items:
        return []
    pinned: list[Message] = []
    if strategy == "keep-system-and-recent":
        while items and items[0].role == "system" and len(items) > 1:
            pinned.append(items.pop(0))
    budget = max_tokens - sum(count(m) for m in pinned)
    kept: list[Message] = [items[-1]]
    used = count(items[-1])
    for message in reversed(items[:-1]):
        cost = count(message)
        if used + cost > budget:
            break
        kept.append(message)
        used += cost
    kept.reverse()
    while len(kept) > 1 and kept[0].role == "tool":
        kept.pop(0)
    return pinned + kept

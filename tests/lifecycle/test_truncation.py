"""A prompt the server cut is reported; history is trimmed on purpose by the chosen strategy."""

from __future__ import annotations

import pytest

from koma.engine.lifecycle.truncation import (
    estimate_tokens,
    request_tokens,
    truncate_history,
    truncation_warning,
)
from koma.engine.stream import collect, stream_completion_events, stream_events
from koma.providers.base import ChatRequest, CompletionRequest
from koma.providers.ollama import OllamaProvider
from koma.types import GenerationSettings, Message, ToolCall
from koma_sim import Reply, Simulator

LONG = "def handler(event):\n    return event['value'] * 2\n" * 800  # ≈ 39,200 characters


def test_truncation_rules() -> None:
    # Sent ~10,000 tokens into 4,096: old Ollama filled the window, new Ollama keeps half + 2.
    assert truncation_warning(4096, 10_000, 4096) is not None
    assert truncation_warning(2050, 10_000, 4096) is not None
    # Far fewer counted than sent and more sent than fits: cut somewhere else.
    assert truncation_warning(3000, 10_000, 4096) is not None
    # It fitted by our estimate: a small count is a cached prefix, not a cut.
    assert truncation_warning(12, 3_000, 4096) is None
    # Our estimate ran high (9,000 vs a real 7,000 that fits 8,192): no false alarm.
    assert truncation_warning(7000, 9_000, 8192) is None
    # Nothing to compare with.
    assert truncation_warning(None, 10_000, 4096) is None
    assert truncation_warning(4096, 10_000, None) is None


def test_the_warning_says_what_happened_and_what_to_do() -> None:
    text = truncation_warning(2050, 10_000, 4096)
    assert text is not None
    for part in ("truncated", "10,000", "4,096", "2,050", "numCtx", "koma doctor"):
        assert part in text


async def test_an_oversized_chat_is_reported_truncated(
    sim: Simulator, provider: OllamaProvider
) -> None:
    request = ChatRequest(
        "gpt-oss:20b",
        [Message.user(LONG + "\nWhat does handler do?")],
        GenerationSettings(num_ctx=4096),
    )
    result = await collect(stream_events(provider, request))
    (chat,) = [r for r in sim.requests if r.endpoint == "chat"]
    assert chat.body["options"]["num_ctx"] == 4096
    assert result.usage.prompt_tokens == 4096  # the server kept what filled the window
    assert any("truncated" in w for w in result.warnings), result.warnings


async def test_halved_prompt_of_current_ollama_is_reported(
    sim: Simulator, provider: OllamaProvider
) -> None:
    sim.add_reply(Reply(content="ok", prompt_eval_count=8192 // 2 + 2))
    request = ChatRequest("gpt-oss:20b", [Message.user(LONG)], GenerationSettings(num_ctx=8192))
    result = await collect(stream_events(provider, request))
    assert any("8,192" in w and "4,098" in w for w in result.warnings), result.warnings


async def test_a_prompt_that_fits_carries_no_warning(
    sim: Simulator, provider: OllamaProvider
) -> None:
    sim.add_reply(Reply(content="ok", prompt_eval_count=3))  # a cached prefix: tiny count
    request = ChatRequest("gpt-oss:20b", [Message.user("short question")])
    result = await collect(stream_events(provider, request))
    assert result.text == "ok"
    assert result.warnings == []


async def test_an_oversized_completion_prompt_is_reported(
    sim: Simulator, provider: OllamaProvider
) -> None:
    request = CompletionRequest(
        "qwen2.5-coder:1.5b", LONG, suffix="\n", settings=GenerationSettings(num_ctx=2048)
    )
    result = await collect(stream_completion_events(provider, request))
    assert any("truncated" in w for w in result.warnings), result.warnings


def test_request_token_estimates() -> None:
    # The engine's one estimate (engine.tokens): 3.5 characters a token, rounded up.
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcdefg" * 100) == 200
    chat = ChatRequest("m", [Message.system("x" * 35), Message.user("y" * 700)])
    assert request_tokens(chat) == (4 + 10) + (4 + 200)
    fim = CompletionRequest("m", "a" * 700, suffix="b" * 35, system="c" * 4)
    assert request_tokens(fim) == 200 + 10 + 2


def turn(i: int) -> list[Message]:
    return [Message.user(f"question {i} " + "q" * 36), Message.assistant(f"answer {i} " + "a" * 36)]


def count_ten(message: Message) -> int:
    return 10


def test_keep_system_and_recent_keeps_the_system_prompt() -> None:
    history = [Message.system("rules"), *turn(1), *turn(2), *turn(3)]
    kept = truncate_history(history, 40, "keep-system-and-recent", count_ten)
    assert [m.content for m in kept] == [
        "rules",
        history[-3].content,
        *[m.content for m in history[-2:]],
    ]
    assert kept[0].role == "system"


def test_keep_recent_drops_the_oldest_whatever_they_are() -> None:
    history = [Message.system("rules"), *turn(1), *turn(2)]
    kept = truncate_history(history, 20, "keep-recent", count_ten)
    assert kept == history[-2:]


def test_the_last_message_survives_even_when_it_alone_is_too_big() -> None:
    history = [Message.system("rules"), Message.user("x" * 10_000)]
    assert truncate_history(history, 10, "keep-recent") == [history[-1]]
    assert truncate_history(history, 10) == history  # system pinned, newest always kept


def test_tool_results_are_never_orphaned() -> None:
    call = Message.assistant("", [ToolCall("read_file", {"path": "a.py"}, "c1")])
    history = [
        Message.user("read a.py"),
        call,
        Message.tool("print(1)", "read_file", "c1"),
        Message.tool("print(2)", "read_file", "c1"),
        Message.user("and now?"),
    ]
    kept = truncate_history(history, 30, "keep-recent", count_ten)
    # 30 tokens fit three messages: tool, tool, user — but tools without their call are dropped.
    assert kept == [history[-1]]
    assert truncate_history(history, 40, "keep-recent", count_ten) == history[1:]


def test_unknown_strategy_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="keep-recent"):
        truncate_history([Message.user("x")], 10, "keep-middle")  # type: ignore[arg-type]

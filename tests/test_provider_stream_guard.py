"""What the providers do with a server that stalls, sends wrong types, or errors at length.

One test per class of misbehaviour, both wires where the wire matters; the seeded fuzz test
(test_stream_fuzz.py) throws all of them at the CLI, the Python API and the language server.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from koma.errors import FirstByteTimeout, IdleTimeout, ProviderError, StreamError
from koma.providers.base import ChatRequest, Provider, WireChunk
from koma.providers.errortext import one_line
from koma.providers.registry import create_provider
from koma.providers.stream_waits import first_byte_watch
from koma.settings import KomaSettings
from koma.types import Message
from stream_fuzz_support import (
    ANSWER,
    HTML_PAGE,
    FuzzServer,
    Plan,
    content_type_of,
    serialize,
    valid_records,
)

WIRES = ("ollama", "openai")


@pytest.fixture
def server() -> Iterator[FuzzServer]:
    fuzz = FuzzServer([])
    yield fuzz
    fuzz.close()


def provider_for(
    server: FuzzServer, wire: str, first_byte: float = 600.0, idle: float = 60.0
) -> Provider:
    settings = KomaSettings(first_byte_timeout_seconds=first_byte, idle_timeout_seconds=idle)
    url = server.url if wire == "ollama" else server.url + "/v1"
    return create_provider(wire, url, settings=settings)


async def run(provider: Provider) -> list[WireChunk]:
    try:
        request = ChatRequest("fuzz-oss", [Message.user("hi")])
        return [chunk async for chunk in provider.chat(request)]
    finally:
        await provider.aclose()


def answer_of(chunks: list[WireChunk]) -> str:
    return "".join(c.content for c in chunks)


def serve(server: FuzzServer, make: Callable[[str, list[Any]], Plan]) -> None:
    """Answer every generation request with `make(path, valid records)`."""
    server.plan = lambda path: make(path, valid_records(path))


def whole(path: str, records: list[Any], **plan: Any) -> Plan:
    return Plan(content_type=content_type_of(path), pieces=[serialize(path, records)], **plan)


# -- the two waits ------------------------------------------------------------------------------


@pytest.mark.parametrize("wire", WIRES)
async def test_a_silent_server_ends_in_the_first_byte_timeout(
    server: FuzzServer, wire: str
) -> None:
    serve(server, lambda path, records: Plan(content_type=content_type_of(path), end="stall"))
    start = time.monotonic()
    with pytest.raises(FirstByteTimeout, match="firstByteTimeoutSeconds") as caught:
        await run(provider_for(server, wire, first_byte=0.6, idle=0.2))
    assert 0.5 < time.monotonic() - start < 5
    assert "0.6 s" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("wire", WIRES)
async def test_a_stream_that_stalls_mid_answer_ends_in_the_idle_timeout(
    server: FuzzServer, wire: str
) -> None:
    def stall(path: str, records: list[Any]) -> Plan:
        body = serialize(path, records)
        return Plan(
            content_type=content_type_of(path), pieces=[body[: len(body) // 2]], end="stall"
        )

    serve(server, stall)
    start = time.monotonic()
    # The first-byte allowance is long; only the idle wait may end this one.
    with pytest.raises(IdleTimeout, match="idleTimeoutSeconds") as caught:
        await run(provider_for(server, wire, first_byte=30, idle=0.4))
    assert time.monotonic() - start < 5
    assert "stalled mid-answer" in str(caught.value)


@pytest.mark.parametrize("wire", WIRES)
async def test_slow_first_byte_within_its_allowance_is_an_answer(
    server: FuzzServer, wire: str
) -> None:
    """A model that loads for longer than the idle timeout is not cut off: the first byte has
    its own, longer wait."""

    def late(path: str, records: list[Any]) -> Plan:
        body = serialize(path, records)
        # The first piece is empty on the wire (nothing sent), the delay is the loading time.
        return Plan(content_type=content_type_of(path), pieces=[b"", body], delay=0.8)

    serve(server, late)
    assert answer_of(await run(provider_for(server, wire, first_byte=5, idle=0.3))) == ANSWER


async def test_timeouts_from_settings_reach_the_provider() -> None:
    settings = KomaSettings.model_validate(
        {"firstByteTimeoutSeconds": 120, "idleTimeoutSeconds": 15}
    )
    provider = create_provider("ollama", "http://127.0.0.1:9", settings=settings)
    try:
        timeouts = provider.stream_timeouts  # type: ignore[attr-defined]
        assert (timeouts.first_byte, timeouts.idle) == (120, 15)
        default = create_provider("ollama", "http://127.0.0.1:9")
        assert (default.stream_timeouts.first_byte, default.stream_timeouts.idle) == (600, 60)  # type: ignore[attr-defined]
        await default.aclose()
    finally:
        await provider.aclose()
    with pytest.raises(ValueError):
        KomaSettings.model_validate({"idleTimeoutSeconds": 0})


# -- wrong JSON types ---------------------------------------------------------------------------

WRONG = [
    ("ollama", ["message", "content"], True, "message.content = true"),
    ("ollama", ["message", "thinking"], 3.5, "message.thinking = 3.5"),
    ("ollama", ["message"], "text", 'message = "text"'),
    ("ollama", ["message", "tool_calls"], {"a": 1}, 'message.tool_calls = {"a": 1}'),
    ("ollama", ["done"], [1], "done = [1]"),
    ("openai", ["choices"], {"0": {}}, 'choices = {"0": {}}'),
    ("openai", ["choices", 0, "delta", "content"], True, "choices[0].delta.content = true"),
    ("openai", ["choices", 0, "delta", "reasoning"], 3.5, "choices[0].delta.reasoning = 3.5"),
    ("openai", ["choices", 0], 7, "choices[0] = 7"),
    ("openai", ["choices", 0, "delta"], ["x"], 'choices[0].delta = ["x"]'),
]


@pytest.mark.parametrize(("wire", "where", "value", "said"), WRONG)
async def test_a_wrong_json_type_is_a_stream_error_naming_server_field_and_value(
    server: FuzzServer, wire: str, where: list[Any], value: Any, said: str
) -> None:
    def broken(path: str, records: list[Any]) -> Plan:
        target = records[len(records) // 2 if wire == "ollama" else 5]
        for key in where[:-1]:
            target = target[key]
        target[where[-1]] = value
        return whole(path, records)

    serve(server, broken)
    with pytest.raises(StreamError) as caught:
        await run(provider_for(server, wire))
    message = str(caught.value)
    assert said in message and server.url in message and "\n" not in message


async def test_a_huge_wrong_value_is_quoted_short(server: FuzzServer) -> None:
    def huge(path: str, records: list[Any]) -> Plan:
        records[3]["message"]["content"] = ["x" * 2_000_000]
        return whole(path, records)

    serve(server, huge)
    with pytest.raises(StreamError, match=r"message\.content = \[\"xxx") as caught:
        await run(provider_for(server, "ollama"))
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize("wire", WIRES)
async def test_statistics_of_the_wrong_type_are_dropped_not_fatal(
    server: FuzzServer, wire: str
) -> None:
    def odd_stats(path: str, records: list[Any]) -> Plan:
        for record in records:
            if isinstance(record, dict) and "eval_count" in record:
                record["eval_count"] = "nine"
                record["eval_duration"] = True
            if isinstance(record, dict) and "usage" in record:
                record["usage"] = {"prompt_tokens": "12", "completion_tokens": [9]}
                record["timings"] = "fast"
        return whole(path, records)

    serve(server, odd_stats)
    chunks = await run(provider_for(server, wire))
    assert answer_of(chunks) == ANSWER
    final = chunks[-1]
    assert final.done and final.usage is not None
    assert final.usage.completion_tokens is None  # dropped, never a string in the engine


# -- one-line errors ----------------------------------------------------------------------------


def test_one_line_strips_tags_collapses_whitespace_and_cuts() -> None:
    # The <head> (title, styles) goes; what the page shows stays.
    assert one_line(HTML_PAGE) == "503 Service Temporarily Unavailable nginx/1.25.3"
    assert one_line("a\n\n  b\tc") == "a b c"
    assert one_line("x &lt; y <b>bold</b>") == "x < y bold"
    long = one_line("word " * 500)
    assert len(long) == 300 and long.endswith("…")


@pytest.mark.parametrize(
    ("content_type", "body", "said"),
    [
        ("text/html", HTML_PAGE, "answered 503: 503 Service Temporarily Unavailable"),
        (
            "application/json",
            json.dumps({"error": "out of\nmemory\n\n  again"}),
            "out of memory again",
        ),
        ("application/json", json.dumps({"error": {"message": "bad\nthing"}}), "bad thing"),
        ("text/plain", "", "answered 503: (no error text)"),
    ],
)
async def test_a_server_error_is_one_line_with_its_status_and_the_body_is_logged(
    server: FuzzServer,
    caplog: pytest.LogCaptureFixture,
    content_type: str,
    body: str,
    said: str,
) -> None:
    serve(
        server,
        lambda path, records: Plan(503, content_type, [body.encode()], framing="length"),
    )
    provider = provider_for(server, "ollama")
    provider.retries = 1  # type: ignore[attr-defined]
    with caplog.at_level(logging.DEBUG, logger="koma.providers.http"):
        with pytest.raises(ProviderError) as caught:
            await run(provider)
    message = str(caught.value)
    assert said in message and "\n" not in message and "<" not in message
    assert caught.value.status == 503
    assert body.strip() in caplog.text  # the whole body, for whoever debugs the proxy


async def test_a_mid_stream_error_spanning_lines_is_one_line(server: FuzzServer) -> None:
    def failing(path: str, records: list[Any]) -> Plan:
        records.insert(3, {"error": "CUDA error\n  at layer 7\n"})
        return whole(path, records)

    serve(server, failing)
    with pytest.raises(StreamError, match=r"mid-stream: CUDA error at layer 7$"):
        await run(provider_for(server, "ollama"))


# -- byte-order mark ----------------------------------------------------------------------------


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("framing", ["chunked", "length"])
async def test_a_utf8_bom_before_the_stream_is_ignored(
    server: FuzzServer, wire: str, framing: str
) -> None:
    def with_bom(path: str, records: list[Any]) -> Plan:
        body = b"\xef\xbb\xbf" + serialize(path, records)
        return Plan(content_type=content_type_of(path), pieces=[body], framing=framing)

    serve(server, with_bom)
    assert answer_of(await run(provider_for(server, wire))) == ANSWER


async def test_a_bom_before_a_whole_json_answer_is_ignored(server: FuzzServer) -> None:
    whole_answer = {"choices": [{"message": {"content": ANSWER}, "finish_reason": "stop"}]}
    serve(
        server,
        lambda path, records: Plan(
            content_type="application/json",
            pieces=[b"\xef\xbb\xbf" + json.dumps(whole_answer).encode()],
            framing="length",
        ),
    )
    assert answer_of(await run(provider_for(server, "openai"))) == ANSWER


# -- "loading model…" -------------------------------------------------------------------------


@pytest.mark.parametrize(("delay", "seen"), [(1.6, [True, False]), (0.0, [])])
async def test_a_late_first_byte_is_reported_as_loading_until_it_comes(
    server: FuzzServer, delay: float, seen: list[bool]
) -> None:
    def late(path: str, records: list[Any]) -> Plan:
        body = serialize(path, records)
        return Plan(content_type=content_type_of(path), pieces=[b"", body], delay=delay)

    serve(server, late)
    calls: list[bool] = []
    token = first_byte_watch.set(calls.append)
    try:
        assert answer_of(await run(provider_for(server, "ollama", first_byte=10))) == ANSWER
    finally:
        first_byte_watch.reset(token)
    assert calls == seen

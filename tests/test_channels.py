"""ChannelParser: every wire format, split at every chunk boundary, reconstructs each channel.

Scripted channel contents (with `<`, `|`, `>` and words like "analysis" in them) are rendered in
each format a server may send — raw Harmony, Harmony degraded to words, each tag style, a
reasoning field beside plain content — then fed in chunks cut at every position, and the pieces
that come out must be exactly the script: no character lost, duplicated or moved to another
channel, and no reasoning in the final answer.
"""

from __future__ import annotations

import itertools
import json
import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from harmony_vectors import VECTOR_IDS, VECTORS, Vector
from koma.engine.channels import TAGS, ChannelParser
from koma.engine.harmony import (
    DEGRADED_SEPARATORS,
    HARMONY_TOKENS,
    ROLE_HEADS,
    clean_wire_tool_name,
    is_builtin_tool,
    writes_harmony,
)

FRAGMENTS = [
    "a", "Z", " ", "\n", "<", ">", "|", "/", "=", "{", "}", "é", "🙂", "x",
    "analysis", "final", "commentary", "assistant", "think", "to=", "<|", "|>", "</", "<t",
    "<|end", "<thin", "assistantfin", "json",
]  # fmt: skip
REASONING_MARK = "¤"  # never in final-channel text; must never show up there

text_st = st.one_of(
    st.lists(st.sampled_from(FRAGMENTS), max_size=10).map("".join),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="¤"), max_size=6
    ),
)
settings_profile = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.filter_too_much]
)


def merged(pieces: list[tuple[str, str]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for channel, text in pieces:
        if not text:
            continue
        if out and out[-1][0] == channel:
            out[-1] = (channel, out[-1][1] + text)
        else:
            out.append((channel, text))
    return out


def parse(
    content_chunks: list[str],
    reasoning_chunks: tuple[str, ...] = (),
    *,
    harmony_start: bool = False,
) -> tuple[list[tuple[str, str]], ChannelParser]:
    parser = ChannelParser(harmony_start=harmony_start)
    pieces: list[tuple[str, str]] = []
    for chunk in reasoning_chunks:
        pieces += parser.feed_reasoning(chunk)
    for chunk in content_chunks:
        for channel, text in parser.feed(chunk):
            assert text, "empty pieces are noise on the keystroke path"
            pieces.append((channel, text))
    pieces += parser.finish()
    return pieces, parser


def splits(text: str, cuts: list[int]) -> list[list[str]]:
    """Every single cut, one character per chunk, and one random multi-cut split."""
    out = [[text], list(text)]
    out += [[text[:i], text[i:]] for i in range(1, len(text))]
    points = sorted({c % (len(text) + 1) for c in cuts})
    bounds = [0, *points, len(text)]
    out.append([text[a:b] for a, b in itertools.pairwise(bounds)])
    return out


def check(content: str, expected: list[tuple[str, str]], cuts: list[int], reasoning: str = ""):
    want = merged(expected)
    reasoning_splits = [(reasoning,), tuple(reasoning)] if reasoning else [()]
    for r_chunks in reasoning_splits:
        for chunks in splits(content, cuts):
            pieces, _ = parse(chunks, r_chunks)
            assert merged(pieces) == want, (chunks, r_chunks)
            for channel, text in pieces:
                if channel == "final":
                    assert REASONING_MARK not in text


def looks_degraded(text: str) -> bool:
    """Plain text the parser would (by design) read as a degraded Harmony header, or as the
    rest of a header the prompt began (` to=…`, `assistant<|channel|>…`)."""
    if text.startswith(ROLE_HEADS):
        return True
    for channel in ("analysis", "commentary", "final"):
        if text.startswith("assistant" + channel):
            return True
        if text.startswith(channel):
            rest = text[len(channel) :]
            if rest[:1].isupper() or rest[:1] in ("*", "#"):
                return True
            if channel == "commentary" and rest.startswith(" to="):
                return True
    return False


def mark(channel: str, text: str) -> str:
    return text + REASONING_MARK if channel in ("thinking", "analysis") else text


harmony_segment = st.tuples(st.sampled_from(["analysis", "commentary", "final"]), text_st)


@settings_profile
@given(
    st.lists(harmony_segment, min_size=1, max_size=4),
    st.booleans(),
    st.lists(st.integers(0, 400), max_size=8),
)
def test_raw_harmony(segments, bare_first, cuts):
    segments = [(ch, mark(ch, t)) for ch, t in segments]
    assume(not any(tok in text for _, text in segments for tok in HARMONY_TOKENS))
    rendered = ""
    for i, (channel, text) in enumerate(segments):
        start = "" if i == 0 and bare_first else "<|start|>assistant"
        end = "<|return|>" if i == len(segments) - 1 and channel == "final" else "<|end|>"
        rendered += f"{start}<|channel|>{channel}<|message|>{text}{end}"
    check(rendered, segments, cuts)


@settings_profile
@given(
    st.lists(harmony_segment, min_size=1, max_size=4),
    st.booleans(),
    st.lists(st.integers(0, 400), max_size=8),
)
def test_degraded_harmony(segments, bare_first, cuts):
    segments = [(ch, mark(ch, t)) for ch, t in segments]
    first_text = segments[0][1]
    if bare_first and not (first_text[:1].isupper() or first_text[:1] in ("*", "#")):
        bare_first = False
    assume(not any(ch == "commentary" and t.startswith(" to=") for ch, t in segments))
    rendered = "" if bare_first else "assistant"
    rendered += "assistant".join(ch + t for ch, t in segments)
    separators = re.findall("|".join(DEGRADED_SEPARATORS), rendered)
    # A script that itself spells a separator is genuinely ambiguous.
    assume(len(separators) == len(segments) - (1 if bare_first else 0))
    check(rendered, segments, cuts)


tag_segment = st.tuples(st.sampled_from([*TAGS, "plain"]), text_st)


@settings_profile
@given(st.lists(tag_segment, min_size=1, max_size=4), st.lists(st.integers(0, 400), max_size=8))
def test_tags(segments, cuts):
    plain_markers = (*HARMONY_TOKENS, *TAGS)
    rendered, expected = "", []
    at_start = True  # start of response, or right after a reasoning segment
    pending_plain = ""
    for tag, raw in [*segments, ("end", "")]:
        if tag != "plain" and pending_plain:
            assume(not any(m in pending_plain for m in plain_markers))
            assume(not (at_start and looks_degraded(pending_plain)))
            rendered += pending_plain
            expected.append(("final", pending_plain))
            pending_plain, at_start = "", False
        if tag == "end":
            break
        if tag == "plain":
            pending_plain += raw
            continue
        channel, close = TAGS[tag]
        text = mark(channel, raw)
        assume(close not in text)
        rendered += tag + text + close
        expected.append((channel, text))
        at_start = channel in ("thinking", "analysis")
    check(rendered, expected, cuts)


@settings_profile
@given(text_st, text_st, st.lists(st.integers(0, 400), max_size=8))
def test_reasoning_field_with_plain_content(reasoning, content, cuts):
    reasoning = mark("thinking", reasoning)
    assume(not any(m in content for m in (*HARMONY_TOKENS, *TAGS)))
    assume(not looks_degraded(content))
    check(content, [("thinking", reasoning), ("final", content)], cuts, reasoning=reasoning)


@settings_profile
@given(text_st, st.lists(st.integers(0, 400), max_size=8))
def test_unclosed_tag_keeps_everything_in_its_channel(text, cuts):
    assume("</think>" not in text)
    check("<think>" + mark("thinking", text), [("thinking", mark("thinking", text))], cuts)


def test_prose_mentioning_channel_words_is_untouched():
    for text in (
        "analysis of the code shows a bug",
        "final answer: 42",
        "finally, it works",
        "commentary tracks are nice",
        "The analysis assistantfinal is odd but prose",
        "Use <|foo|> and a < b | c",
    ):
        pieces, _ = parse(list(text))
        assert merged(pieces) == [("final", text)]


def test_degraded_harmony_only_at_response_start():
    pieces, _ = parse(["Hello. analysisWe think", "assistantfinalBye"])
    assert merged(pieces) == [("final", "Hello. analysisWe thinkassistantfinalBye")]


def test_degraded_harmony_after_reasoning_field():
    pieces, _ = parse(["assistant", "finalHello"], reasoning_chunks=("We reason",))
    assert merged(pieces) == [("thinking", "We reason"), ("final", "Hello")]


def test_degraded_detection_can_be_turned_off_for_code():
    parser = ChannelParser(degraded_harmony=False)
    pieces = parser.feed("finalResult = compute()") + parser.finish()
    assert pieces == [("final", "finalResult = compute()")]


def test_plain_chunk_without_markers_passes_through_at_once():
    parser = ChannelParser()
    assert parser.feed("Hello") == [("final", "Hello")]
    assert parser.feed(" world") == [("final", " world")]
    assert parser.feed(" a <") == [("final", " a ")]  # only the `<` waits
    assert parser.feed("b") == [("final", "<b")]


def test_constrain_and_commentary_without_recipient():
    text = (
        "<|channel|>commentary<|message|>Let me check.<|end|>"
        '<|start|>assistant<|channel|>final <|constrain|>json<|message|>{"a": 1}<|return|>'
    )
    pieces, parser = parse(list(text))
    assert merged(pieces) == [("commentary", "Let me check."), ("final", '{"a": 1}')]
    assert parser.leaked_tool_calls == []


def test_leaked_harmony_tool_call_recipient_after_channel():
    text = (
        "<|channel|>analysis<|message|>Need weather.<|end|>"
        "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
        '<|message|>{"city": "Tokyo"}<|call|>'
    )
    for chunks in ([text], list(text)):
        pieces, parser = parse(chunks)
        assert merged(pieces) == [("analysis", "Need weather.")]
        assert [(c.name, c.arguments) for c in parser.leaked_tool_calls] == [
            ("get_weather", {"city": "Tokyo"})
        ]


def test_leaked_harmony_tool_call_recipient_before_channel():
    text = (
        "<|start|>assistant to=functions.read_file<|channel|>commentary json"
        '<|message|>{"path": "a.py"}<|call|>'
    )
    pieces, parser = parse(list(text))
    assert pieces == []
    assert [(c.name, c.arguments) for c in parser.leaked_tool_calls] == [
        ("read_file", {"path": "a.py"})
    ]


def test_leaked_tool_call_in_degraded_harmony_and_bad_json():
    text = 'analysisNeed it.assistantcommentary to=functions.search json{"q": "x"'
    pieces, parser = parse(list(text))
    assert merged(pieces) == [("analysis", "Need it.")]
    (call,) = parser.leaked_tool_calls
    assert call.name == "search"
    assert call.arguments == '{"q": "x"'  # undecodable arguments are kept verbatim


def test_leaked_call_without_arguments_is_a_call_with_none():
    # The same reading as a server's empty `arguments` field: `{}`, not a text to reject.
    text = "<|start|>assistant<|channel|>commentary to=functions.list_files<|message|> <|call|>"
    _, parser = parse(list(text))
    assert [(c.name, c.arguments) for c in parser.leaked_tool_calls] == [("list_files", {})]


def test_two_leaked_calls_get_distinct_ids():
    one = "<|start|>assistant<|channel|>commentary to=functions.a<|message|>{}<|call|>"
    two = '<|start|>assistant<|channel|>commentary to=functions.b<|message|>{"k": 2}<|call|>'
    _, parser = parse([one + two])
    calls = parser.leaked_tool_calls
    assert [c.name for c in calls] == ["a", "b"]
    assert calls[0].id != calls[1].id


def test_stream_ending_inside_a_marker_or_header():
    pieces, _ = parse(["<think>deep</thi"])
    assert merged(pieces) == [("thinking", "deep</thi")]
    pieces, _ = parse(["Hi <|ret"])
    assert merged(pieces) == [("final", "Hi <|ret")]
    pieces, _ = parse(["anal"])
    assert merged(pieces) == [("final", "anal")]
    pieces, _ = parse(["<|channel|>analysis<|message|>x<|start|>assistant<|chan"])
    assert merged(pieces) == [("analysis", "x")]


def test_parser_is_reusable_after_finish():
    parser = ChannelParser()
    parser.feed("<think>a")
    parser.finish()
    assert parser.feed("b") + parser.finish() == [("final", "b")]


MARKER_FRAGMENTS = [
    *FRAGMENTS, *HARMONY_TOKENS, *TAGS, *(close for _, close in TAGS.values()),
    *DEGRADED_SEPARATORS, " to=functions.f ", '{"a": 1}', "Hello", "We",
    *ROLE_HEADS, " to=assistant", " to=browser.search", "analysis ", " json", "code",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(MARKER_FRAGMENTS), max_size=25).map("".join),
    st.lists(st.integers(0, 600), max_size=10),
    st.booleans(),
)
def test_any_input_parses_the_same_however_it_is_chunked(text, cuts, reasoning_first):
    """Whatever arrives (well-formed or not), chunking never changes the outcome."""
    reasoning = ("We think",) if reasoning_first else ()
    for held in (False, True):  # also with the start held for a known raw-Harmony server
        whole, parser = parse([text], reasoning, harmony_start=held)
        whole_calls = [c.to_dict() for c in parser.leaked_tool_calls]
        for chunks in splits(text, cuts):
            pieces, parser = parse(chunks, reasoning, harmony_start=held)
            assert merged(pieces) == merged(whole), chunks
            assert [c.to_dict() for c in parser.leaked_tool_calls] == whole_calls


# -- the reference corpus: every vector, cut at every position --------------------------------


def calls_of(parser: ChannelParser) -> list[tuple[str, object]]:
    return [(c.name, c.arguments) for c in parser.leaked_tool_calls]


def every_split(text: str) -> list[list[str]]:
    """Whole, one character per chunk, and every single cut point."""
    return [[text], list(text), *([text[:i], text[i:]] for i in range(1, len(text)))]


@pytest.mark.parametrize("vector", VECTORS, ids=VECTOR_IDS)
def test_corpus_vector_parses_as_the_reference_parsers_do(vector: Vector) -> None:
    want_calls = [(name, args) for name, args in vector.tool_calls]
    modes = [True] if vector.harmony_start else [False, True]
    for harmony_start in modes:  # a server known to send raw Harmony changes nothing else
        for chunks in every_split(vector.text):
            pieces, parser = parse(chunks, harmony_start=harmony_start)
            assert merged(pieces) == [tuple(p) for p in vector.pieces], (harmony_start, chunks)
            assert calls_of(parser) == want_calls, (harmony_start, chunks)
            shown = "".join(text for channel, text in pieces if channel == "final")
            assert "<|" not in shown and " to=" not in shown


@pytest.mark.parametrize("vector", VECTORS, ids=VECTOR_IDS)
def test_corpus_reasoning_never_streams_as_final_before_it_is_known(vector: Vector) -> None:
    """Streamed token by token, no final piece ever holds what the vector's final lacks."""
    pieces, _ = parse(list(vector.text), harmony_start=vector.harmony_start)
    shown = ""
    for channel, text in pieces:
        if channel == "final":
            shown += text
            assert vector.final.startswith(shown), (vector.id, shown)


def test_continuation_start_is_held_until_its_channel_is_known() -> None:
    parser = ChannelParser(harmony_start=True)
    assert parser.feed(" thinking about it") == []  # not final yet: maybe reasoning
    assert parser.feed("<|end|><|start|>assistant<|channel|>final<|message|>Hi") == [
        ("analysis", " thinking about it"),
        ("final", "Hi"),
    ]
    parser = ChannelParser(harmony_start=True)
    assert parser.feed("Just an answer") == []
    assert parser.finish() == [("final", "Just an answer")]


def test_reasoning_field_means_the_held_start_was_final() -> None:
    """A server that splits reasoning itself never leaves a prompt-opened channel in content."""
    parser = ChannelParser(harmony_start=True)
    assert parser.feed("Hel") == []
    assert parser.feed_reasoning("why") == [("final", "Hel"), ("thinking", "why")]
    assert parser.feed("lo") == [("final", "lo")]
    parser = ChannelParser(harmony_start=True)
    parser.feed_reasoning("why first")
    assert parser.feed("Hello") == [("final", "Hello")]  # streams at once


def test_role_header_start_is_held_only_while_it_could_be_a_recipient() -> None:
    parser = ChannelParser()
    assert parser.feed(" t") == []
    assert parser.feed("hat is all") == [("final", " that is all")]
    parser = ChannelParser()
    assert parser.feed("assistant") == []
    assert parser.feed(" said hi") == [("final", "assistant said hi")]


def test_prose_starting_like_a_recipient_or_header_stays_final() -> None:
    for text in (" to=do list", "to=x and more\nlines", "<|channel|>final word\n"):
        pieces, _ = parse(list(text))
        assert "".join(t for _, t in pieces) in (text, text.replace("<|channel|>final ", ""))
        assert all(channel == "final" for channel, _ in pieces)


def test_builtin_tools_and_harmony_models_are_recognised() -> None:
    assert all(map(is_builtin_tool, ["python", "browser.search", "container.exec"]))
    assert not any(map(is_builtin_tool, ["read_file", "search", "python_run"]))
    assert all(map(writes_harmony, ["gpt-oss:20b", "openai/gpt-oss-120b", "GPT_OSS"]))
    assert not writes_harmony("qwen2.5-coder:1.5b")


def test_wire_tool_names_lose_leaked_header_text() -> None:
    assert clean_wire_tool_name("create_event<|channel|>analysis") == "create_event"
    assert clean_wire_tool_name("read_file") == "read_file"
    # Nothing but header words: kept, so the loop names exactly what the server sent.
    assert clean_wire_tool_name("assistant<|channel|>analysis") == "assistant<|channel|>analysis"


HARMONY_HEADERS = [
    "<|start|>assistant<|channel|>{ch}<|message|>",
    "<|channel|>{ch}<|message|>",
    "<|start|>assistant<|channel|>commentary to=assistant<|channel|>{ch}<|message|>",
    "<|start|>assistant<|channel|>{ch} <|constrain|>json<|message|>",
]
RECIPIENT_HEADERS = [
    "<|start|>assistant to=functions.{fn}<|channel|>{ch}<|message|>",
    "<|start|>assistant to=functions.{fn}<|channel|>{ch} <|constrain|>json<|message|>",
    "<|start|>assistant<|channel|>{ch} to=functions.{fn}<|constrain|>json<|message|>",
    "<|start|>assistant<|channel|>{ch} to={fn} code<|message|>",
]
call_st = st.tuples(
    st.sampled_from(["get_weather", "read_file", "browser.search", "container.exec", "python"]),
    st.dictionaries(st.sampled_from(["a", "path", "q"]), st.integers(0, 9), max_size=2),
    st.sampled_from(RECIPIENT_HEADERS),
    st.sampled_from(["analysis", "commentary"]),
    st.sampled_from(["<|call|>", "<|end|>"]),
)
message_st = st.tuples(
    st.sampled_from(["analysis", "commentary", "final"]), text_st, st.sampled_from(HARMONY_HEADERS)
)


@settings_profile
@given(
    st.lists(st.one_of(message_st, call_st), min_size=1, max_size=4),
    st.sampled_from(["", " to=functions.first<|channel|>analysis<|message|>{}<|call|>"]),
    st.booleans(),
    st.lists(st.integers(0, 600), max_size=8),
)
def test_raw_harmony_with_recipients_and_header_variants(parts, opening, held, cuts):
    """Messages and calls in every header form the references use, any cut, either mode."""
    rendered, expected, calls = opening, [], [("first", {})] if opening else []
    for part in parts:
        if len(part) == 3:  # a message
            channel, raw, header = part
            text = mark(channel, raw)
            assume(not any(tok in text for tok in HARMONY_TOKENS))
            if channel == "final":  # the final channel is read like plain content
                assume(not any(tag in text for tag in TAGS))
            end = "<|return|>" if channel == "final" else "<|end|>"
            rendered += header.format(ch=channel) + text + end
            expected.append((channel, text))
        else:
            fn, args, header, channel, end = part
            rendered += header.format(ch=channel, fn=fn) + json.dumps(args) + end
            calls.append((fn, args))
    for chunks in splits(rendered, cuts):
        pieces, parser = parse(chunks, harmony_start=held)
        assert merged(pieces) == merged(expected), chunks
        assert calls_of(parser) == calls, chunks
        for channel, text in pieces:
            if channel == "final":
                assert REASONING_MARK not in text


@settings_profile
@given(text_st, text_st, st.lists(st.integers(0, 400), max_size=8))
def test_prompt_opened_channel_then_final(reasoning, answer, cuts):
    """`reasoning<|end|><|start|>assistant<|channel|>final<|message|>answer`, held start."""
    reasoning = mark("analysis", reasoning)
    assume(not any(m in reasoning for m in (*HARMONY_TOKENS, *DEGRADED_SEPARATORS)))
    assume(not any(m in answer for m in (*HARMONY_TOKENS, *TAGS)))
    assume(not looks_degraded(reasoning) and not reasoning.startswith(("<", "a")))
    text = reasoning + "<|end|><|start|>assistant<|channel|>final<|message|>" + answer
    for chunks in splits(text, cuts):
        pieces, _ = parse(chunks, harmony_start=True)
        assert merged(pieces) == merged([("analysis", reasoning), ("final", answer)]), chunks


def test_only_real_harmony_marks_a_raw_server() -> None:
    _, parser = parse(list(" to=do list"))
    assert not parser.saw_harmony  # prose: the server is not taken for a raw one
    _, parser = parse(list(" to=functions.f<|channel|>analysis<|message|>{}"))
    assert parser.saw_harmony
    _, parser = parse(list("analysisUser asks.assistantfinalHi"))
    assert parser.saw_harmony

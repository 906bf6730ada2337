"""Split a streamed answer into channels, one wire chunk at a time.

Local servers hand reasoning over in many shapes: a separate reasoning field, raw Harmony
tokens (`<|channel|>analysis<|message|>…<|end|>`), Harmony with its special tokens dropped by
llama.cpp without `--special` (`analysisUser asks…assistantfinalHello!`), or XML-ish tags
(`<think>`, `<thinking>`, `<analysis>`, `<commentary>`, `<final>`). `ChannelParser` turns all of
them into `(channel, text)` pieces so that reasoning never reaches the final answer.

A marker may be split across any chunk boundary, so the parser holds back the shortest suffix
that could still grow into a marker and nothing else: every other character is handed on at
once, exactly once. It sits on the keystroke path (inline completion), so the common case — a
chunk without `<` — is a single membership test.

Degraded Harmony is recognised only at the very start of a response or right after a reasoning
segment, so ordinary prose that mentions "analysis" or "final" is left alone.
"""

from __future__ import annotations

import json
import re
from typing import Literal

from koma.engine.markers import Markers
from koma.types import REASONING_CHANNELS, Channel, ToolCall

Piece = tuple[Channel, str]

START_TOKEN = "<|start|>"
END_TOKEN = "<|end|>"
MESSAGE_TOKEN = "<|message|>"
CHANNEL_TOKEN = "<|channel|>"
CONSTRAIN_TOKEN = "<|constrain|>"
RETURN_TOKEN = "<|return|>"
CALL_TOKEN = "<|call|>"
HARMONY_TOKENS = (
    START_TOKEN,
    END_TOKEN,
    MESSAGE_TOKEN,
    CHANNEL_TOKEN,
    CONSTRAIN_TOKEN,
    RETURN_TOKEN,
    CALL_TOKEN,
)
# Opening tag -> (channel, closing tag).
TAGS: dict[str, tuple[Channel, str]] = {
    "<think>": ("thinking", "</think>"),
    "<thinking>": ("thinking", "</thinking>"),
    "<analysis>": ("analysis", "</analysis>"),
    "<commentary>": ("commentary", "</commentary>"),
    "<final>": ("final", "</final>"),
}
HARMONY_CHANNELS: dict[str, Channel] = {
    "analysis": "analysis",
    "commentary": "commentary",
    "final": "final",
}
# What is left of `<|end|><|start|>assistant<|channel|>final<|message|>` without special tokens.
DEGRADED_SEPARATORS: dict[str, Channel] = {"assistant" + c: c for c in HARMONY_CHANNELS.values()}
# A response may open with a bare channel word (the prompt already ended in `<|start|>assistant`).
_DEGRADED_HEADS: tuple[tuple[str, Channel, bool], ...] = (
    *((sep, ch, True) for sep, ch in DEGRADED_SEPARATORS.items()),
    *((ch, ch, False) for ch in HARMONY_CHANNELS.values()),
)
# After a bare channel word these characters mean "degraded header", as in `analysisUser asks`
# or `analysis**Plan**`; a lowercase letter, a space or punctuation means prose ("analysis of…").
_DEGRADED_LEAD = frozenset("*#")
_RECIPIENT_PREFIX = " to="

_CHANNEL_RE = re.compile(r"<\|channel\|>\s*([A-Za-z_]+)")
_RECIPIENT_RE = re.compile(r"(?:^|\s)to=([^\s<]+)")
_TOOL_NAME_RE = re.compile(r"\s*([\w.\-:/]+)")
_TOOL_PREAMBLE_RE = re.compile(r"\s*(?:<\|constrain\|>)?\s*(?:json\b)?\s*(?:<\|message\|>)?\s*")
# A real header is one short line; anything else means the token was literal text.
_MAX_HEADER = 256
# A Harmony header cut off by the end of the stream (role, recipient, channel, constraint).
_PARTIAL_HEADER_RE = re.compile(
    r"(?:assistant|functions\.[\w.\-]*|[a-z]*)?(?:\s*to=[\w.\-:/]*)?(?:<\|channel\|>[a-z]*)?"
    r"(?:\s*to=[\w.\-:/]*)?\s*(?:<\|constrain\|>)?\s*[a-z]*(?:<\|?[a-z]*\|?)?"
)

# Parser states.
_S_START = 0  # start of a response or just after reasoning: degraded Harmony is possible
_S_PLAIN = 1  # outside any channel marker: text is final
_S_TAG = 2  # inside <think>…</think> and friends
_S_HEADER = 3  # reading a Harmony header up to <|message|>
_S_BODY = 4  # inside a Harmony message body
_S_HTOOL = 5  # inside a Harmony message addressed to a tool (`to=functions.x`)
_S_DEG = 6  # inside a degraded Harmony message
_S_DEG_COMMENTARY = 7  # after degraded `commentary`: a recipient may follow
_S_DTOOL = 8  # inside a degraded Harmony tool call


_PLAIN_MARKERS = Markers((*HARMONY_TOKENS, *TAGS))
_BODY_MARKERS = Markers(HARMONY_TOKENS)
_DEG_MARKERS = Markers(DEGRADED_SEPARATORS)
_TAG_MARKERS = {close: Markers((close,)) for _, close in TAGS.values()}


class ChannelParser:
    """Incremental channel splitter for one response; see the module docstring.

    `feed()` takes content text, `feed_reasoning()` a provider's separate reasoning field, and
    `finish()` flushes what was held back. Each returns `(channel, text)` pieces, adjacent
    pieces of one channel merged. Harmony tool calls found in the text (`to=functions.NAME …
    <|message|>{json}<|call|>`) are not shown in any channel; they land in `leaked_tool_calls`.
    `degraded_harmony=False` turns off the `analysis…assistantfinal…` recognition, for raw code
    completions where a leading `finalResult` is an identifier.
    """

    __slots__ = (
        "_channel",
        "_close",
        "_degraded",
        "_header",
        "_header_from",
        "_header_marker",
        "_held",
        "_markers",
        "_state",
        "_tool_body",
        "_tool_name",
        "leaked_tool_calls",
    )

    def __init__(self, degraded_harmony: bool = True) -> None:
        self._degraded = degraded_harmony
        self.leaked_tool_calls: list[ToolCall] = []
        self._reset()

    def _reset(self) -> None:
        self._state = _S_START if self._degraded else _S_PLAIN
        self._markers = _PLAIN_MARKERS
        self._channel: Channel = "final"
        self._held = ""
        self._header = ""
        self._header_marker = ""
        self._header_from: Channel | None = None
        self._close = ""
        self._tool_name = ""
        self._tool_body = ""

    @property
    def channel(self) -> Channel:
        """The channel that content text goes to right now."""
        return self._channel

    def feed_reasoning(self, text: str) -> list[Piece]:
        """A provider's reasoning field (`thinking`, `reasoning`, `reasoning_content`)."""
        if not text:
            return []
        if self._state == _S_PLAIN and not self._held and self._degraded:
            self._state = _S_START
        return [("thinking", text)]

    def feed(self, text: str) -> list[Piece]:
        """Content text; returns what can be attributed to a channel already."""
        if not text:
            return []
        state = self._state
        # Fast path: nothing held and no character that could begin a marker.
        if not self._held and state in (_S_PLAIN, _S_TAG, _S_BODY, _S_DEG):
            if not self._markers.may_contain(text):
                return [(self._channel, text)]
        return self._run(self._held + text if self._held else text)

    def finish(self) -> list[Piece]:
        """End of stream: hand out held-back text; unclosed channels keep their text."""
        out: list[Piece] = []
        buf, state = self._held, self._state
        self._held = ""
        if state == _S_HEADER:
            buf, self._header = self._header + buf, ""
            if _PARTIAL_HEADER_RE.fullmatch(buf):
                buf = ""  # a real header the stream ended inside: markup, not text
            else:  # the token was literal text after all
                self._enter(_S_BODY, self._header_from or "final")
                buf = self._header_marker + buf
        if state in (_S_START, _S_DEG_COMMENTARY, _S_PLAIN, _S_TAG, _S_BODY, _S_DEG, _S_HEADER):
            self._emit(out, buf)
        elif state in (_S_HTOOL, _S_DTOOL):
            self._tool_body += buf
            self._end_tool()
        self._reset()
        return out

    # -- the state machine -------------------------------------------------------------------

    def _run(self, buf: str) -> list[Piece]:
        out: list[Piece] = []
        self._held = ""  # `buf` already starts with it
        while buf:
            state = self._state
            if state == _S_START:
                decision = _degraded_head(buf)
                if decision is None:
                    self._held = buf
                    return out
                if decision is False:
                    self._enter(_S_PLAIN, "final")
                    continue
                channel, consumed = decision
                buf = buf[consumed:]
                self._enter_degraded(channel)
                continue
            if state == _S_HEADER:
                done, buf = self._read_header(out, buf)
                if done:
                    return out
                continue
            if state == _S_DEG_COMMENTARY:
                if len(buf) < len(_RECIPIENT_PREFIX) and _RECIPIENT_PREFIX.startswith(buf):
                    self._held = buf
                    return out
                if buf.startswith(_RECIPIENT_PREFIX):
                    buf = buf[len(_RECIPIENT_PREFIX) :]
                    self._tool_name, self._tool_body = "", ""
                    self._state, self._markers = _S_DTOOL, _DEG_MARKERS
                else:
                    self._enter(_S_DEG, "commentary")
                continue
            markers = self._markers
            match = markers.regex.search(buf) if markers.may_contain(buf) else None
            if match is None:
                keep = markers.holdback(buf)
                if keep:
                    self._emit(out, buf[:-keep])
                    self._held = buf[-keep:]
                else:
                    self._emit(out, buf)
                    self._held = ""
                return out
            self._emit(out, buf[: match.start()])
            buf = buf[match.end() :]
            self._on_marker(match.group(0))
        self._held = ""
        return out

    def _emit(self, out: list[Piece], text: str) -> None:
        if not text:
            return
        state = self._state
        if state in (_S_HTOOL, _S_DTOOL):
            self._tool_body += text
            return
        channel = self._channel
        if out and out[-1][0] == channel:
            out[-1] = (channel, out[-1][1] + text)
        else:
            out.append((channel, text))

    def _enter(self, state: int, channel: Channel) -> None:
        self._state, self._channel = state, channel
        if state in (_S_PLAIN, _S_START):
            self._markers = _PLAIN_MARKERS
        elif state == _S_BODY:
            self._markers = _BODY_MARKERS
        elif state == _S_DEG:
            self._markers = _DEG_MARKERS

    def _enter_degraded(self, channel: Channel) -> None:
        if channel == "commentary":
            self._state, self._channel = _S_DEG_COMMENTARY, "commentary"
        else:
            self._enter(_S_DEG, channel)

    def _on_marker(self, marker: str) -> None:
        state = self._state
        if state == _S_TAG:  # the closing tag
            after = _S_START if self._degraded and self._channel in REASONING_CHANNELS else _S_PLAIN
            self._enter(after, "final")
        elif state in (_S_DEG, _S_DTOOL):
            if state == _S_DTOOL:
                self._end_tool()
            self._enter_degraded(DEGRADED_SEPARATORS[marker])
        else:  # plain text, or a Harmony body: both react to Harmony tokens
            if state == _S_HTOOL and marker not in (MESSAGE_TOKEN, CONSTRAIN_TOKEN):
                self._end_tool()
                state = _S_PLAIN
            if marker == START_TOKEN or marker == CHANNEL_TOKEN:
                self._header, self._header_marker = "", marker
                self._header_from = self._channel if state == _S_BODY else None
                self._state = _S_HEADER
            elif marker in (END_TOKEN, RETURN_TOKEN, CALL_TOKEN):
                self._enter(_S_PLAIN, "final")
            elif marker == MESSAGE_TOKEN and state in (_S_PLAIN, _S_START):
                self._enter(_S_BODY, "final")
            elif marker in TAGS:
                self._channel, self._close = TAGS[marker]
                self._state, self._markers = _S_TAG, _TAG_MARKERS[self._close]
            # A stray <|message|> or <|constrain|> inside a body is markup: dropped.

    def _read_header(self, out: list[Piece], buf: str) -> tuple[bool, str]:
        """Consume header text; `(True, "")` when all of `buf` was taken, else what is left."""
        head = self._header + buf
        end = head.find(MESSAGE_TOKEN)
        scope = head if end < 0 else head[:end]
        too_long = (end if end >= 0 else len(head) - len(MESSAGE_TOKEN) + 1) > _MAX_HEADER
        if "\n" in scope or too_long:
            # Not a Harmony header: the token was literal text in the channel it appeared in.
            self._header = ""
            if self._header_from is None:
                self._enter(_S_PLAIN, "final")
            else:
                self._enter(_S_BODY, self._header_from)
            self._emit(out, self._header_marker)
            return False, head
        if end < 0:
            self._header = head
            return True, ""
        self._header = head[:end]
        self._open_message()
        return False, head[end + len(MESSAGE_TOKEN) :]

    def _open_message(self) -> None:
        header, self._header = self._header_marker + self._header, ""
        recipient = _RECIPIENT_RE.search(header)
        if recipient and not recipient.group(1).startswith("assistant"):
            self._tool_name, self._tool_body = recipient.group(1), ""
            self._state, self._markers = _S_HTOOL, _BODY_MARKERS
            return
        found = _CHANNEL_RE.search(header)
        channel = HARMONY_CHANNELS.get(found.group(1), "final") if found else "final"
        self._enter(_S_BODY, channel)

    def _end_tool(self) -> None:
        """Record the tool call whose arguments have just been read."""
        name, body = self._tool_name, self._tool_body
        self._tool_name = self._tool_body = ""
        if not name:  # degraded: `functions.NAME json{…}` all in the body
            found = _TOOL_NAME_RE.match(body)
            if not found:
                return
            name, body = found.group(1), body[found.end() :]
            preamble = _TOOL_PREAMBLE_RE.match(body)
            if preamble:
                body = body[preamble.end() :]
        name = name.removeprefix("functions.")
        self.leaked_tool_calls.append(
            ToolCall(name, _decode_arguments(body), id=f"leaked_{len(self.leaked_tool_calls)}")
        )


def _degraded_head(buf: str) -> tuple[Channel, int] | Literal[False] | None:
    """At a response start: `(channel, header length)` for a degraded Harmony header, False
    when `buf` cannot start one, None when more text is needed to tell."""
    for head, channel, prefixed in _DEGRADED_HEADS:
        if buf.startswith(head):
            if prefixed:
                return channel, len(head)
            rest = buf[len(head) :]
            if not rest:
                return None
            lead = rest[0]
            if lead.isupper() or lead in _DEGRADED_LEAD:
                return channel, len(head)
            if channel == "commentary" and lead == " ":
                if len(rest) < len(_RECIPIENT_PREFIX) and _RECIPIENT_PREFIX.startswith(rest):
                    return None
                if rest.startswith(_RECIPIENT_PREFIX):
                    return channel, len(head)
            return False
    for head, _, _ in _DEGRADED_HEADS:
        if head.startswith(buf):
            return None
    return False


def _decode_arguments(body: str) -> dict[str, object] | str:
    """Tool arguments as a dict when they are a JSON object, else the raw text."""
    text = body.strip()
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict) else text

"""Split a streamed answer into channels, one wire chunk at a time.

Local servers hand reasoning over in many shapes: a separate reasoning field, raw Harmony
tokens (`<|channel|>analysis<|message|>…<|end|>`), Harmony with its special tokens dropped by
llama.cpp without `--special` (`analysisUser asks…assistantfinalHello!`), or XML-ish tags
(`<think>`, `<thinking>`, `<analysis>`, `<commentary>`, `<final>`). `ChannelParser` turns all of
them into `(channel, text)` pieces so that reasoning never reaches the final answer.

Raw Harmony is read the way llama.cpp's gpt-oss parser and openai/harmony's non-strict parser
read it: the recipient may stand in the role header (` to=functions.f<|channel|>…`, also at the
very start of a response whose prompt ended in `<|start|>assistant`) or in the channel header,
with or without `<|constrain|>json`; a message addressed to a function or a built-in tool
(`browser.*`, `python`, `container.*`) becomes a tool call, never text; `commentary
to=assistant` is a stray header word, not a recipient; a header without `<|message|>` still
opens its channel; the last `<|channel|>` of a header wins. docs/protocol.md lists every form.

A marker may be split across any chunk boundary, so the parser holds back the shortest suffix
that could still grow into a marker and nothing else: every other character is handed on at
once, exactly once. Text that cannot be classified yet (a Harmony header, the start of a
response that may be a recipient, and — with `harmony_start` — text at the start of a raw
Harmony response, which may belong to a channel the prompt opened) is held back until it can
be; nothing is ever shown as final and taken back later. The parser sits on the keystroke path
(inline completion), so the common case — a chunk without `<` — is a single membership test.

Degraded Harmony is recognised only at the very start of a response or right after a reasoning
segment, so ordinary prose that mentions "analysis" or "final" is left alone.
"""

from __future__ import annotations

import json
import re
from enum import IntEnum
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
# The rest of a Harmony header at the very start of a response (the prompt ended in
# `<|start|>assistant`, or in `<|start|>`): a recipient, or the role before a channel.
ROLE_HEADS = (" to=", "to=", "assistant to=", "assistant<|channel|>", "assistant<|message|>")
# Recipients that address the reader rather than a tool (`commentary to=assistant` is a stray
# header word gpt-oss writes before a channel; `all` is Harmony's broadcast).
_NOT_TOOLS = frozenset({"assistant", "user", "all"})
# gpt-oss's built-in tools; Koma provides none of them, so the tool loop answers such a call
# with "not available" instead of running anything.
BUILTIN_TOOL_PREFIXES = ("browser.", "container.")
BUILTIN_TOOLS = frozenset({"python", "browser", "container"})

_CHANNEL_RE = re.compile(r"<\|channel\|>\s*([A-Za-z_]+)")
_RECIPIENT_RE = re.compile(r"(?:^|\s)to=([^\s<]+)")
_ROLE_RE = re.compile(r"<\|start\|>\s*([^\s<]+)")
_TOOL_NAME_RE = re.compile(r"\s*([\w.\-:/]+)")
_TOOL_PREAMBLE_RE = re.compile(r"\s*(?:<\|constrain\|>)?\s*(?:json\b)?\s*(?:<\|message\|>)?\s*")
# The content type of a header that lost its `<|message|>` (`commentary json{…}`).
_CONTENT_TYPE_RE = re.compile(r"[ \t]*(?:<\|constrain\|>)?[ \t]*(?:json|code)?[ \t]*")
# A header that lost its `<|message|>` (openai/harmony parses these in non-strict mode):
# everything after the channel word (and recipient) is the message.
_HEADLESS_RE = re.compile(
    r"(?:<\|start\|>)?[^\s<]*(?:[ \t]*to=(?P<to1>[^\s<]+))?[ \t]*"
    r"<\|channel\|>(?P<channel>analysis|commentary|final)"
    r"(?:[ \t]+to=(?P<to2>[^\s<]+))?"
    r"(?:\s|(?=<\|(?:end|return|call|constrain)\|>)|$)"
)
# A real header is one short line; anything else means the token was literal text.
_MAX_HEADER = 256
# What ends a header: its `<|message|>`, or (header without one) the end of the message.
_HEADER_ENDS = (MESSAGE_TOKEN, END_TOKEN, RETURN_TOKEN, CALL_TOKEN)
_HEADER_END_RE = re.compile("|".join(re.escape(t) for t in _HEADER_ENDS))
_LONGEST_HEADER_END = max(len(t) for t in _HEADER_ENDS)
# A Harmony header cut off by the end of the stream (role, recipient, channel, constraint).
_PARTIAL_HEADER_RE = re.compile(
    r"(?:assistant|functions\.[\w.\-]*|[a-z]*)?(?:\s*to=[\w.\-:/]*)?(?:<\|channel\|>[a-z]*)?"
    r"(?:\s*to=[\w.\-:/]*)?\s*(?:<\|constrain\|>)?\s*[a-z]*(?:<\|?[a-z]*\|?)?"
)
# Model names of the Harmony family (gpt-oss:20b, openai/gpt-oss-120b, gpt_oss…).
_HARMONY_MODEL_RE = re.compile(r"gpt[-_ ]?oss", re.IGNORECASE)


class _State(IntEnum):
    """Where the parser stands in the content; what a marker means depends on it."""

    START = 0  # start of a response or just after reasoning: degraded Harmony is possible
    PLAIN = 1  # outside any channel marker: text is final
    TAG = 2  # inside <think>…</think> and friends
    HEADER = 3  # reading a Harmony header up to <|message|>
    BODY = 4  # inside a Harmony message body
    HTOOL = 5  # inside a Harmony message addressed to a tool (`to=functions.x`)
    DEG = 6  # inside a degraded Harmony message
    DEG_COMMENTARY = 7  # after degraded `commentary`: a recipient may follow
    DTOOL = 8  # inside a degraded Harmony tool call
    OPEN = 9  # raw Harmony response start: maybe a channel the prompt opened (held back)


# The members as module constants for the state machine, which checks the state for every
# chunk: on Python 3.11 `_State.PLAIN` goes through EnumType.__getattr__ and costs about six
# global lookups. (IntEnum: comparing two states stays an integer compare.)
_S_START = _State.START
_S_PLAIN = _State.PLAIN
_S_TAG = _State.TAG
_S_HEADER = _State.HEADER
_S_BODY = _State.BODY
_S_HTOOL = _State.HTOOL
_S_DEG = _State.DEG
_S_DEG_COMMENTARY = _State.DEG_COMMENTARY
_S_DTOOL = _State.DTOOL
_S_OPEN = _State.OPEN


_PLAIN_MARKERS = Markers((*HARMONY_TOKENS, *TAGS))
_BODY_MARKERS = Markers(HARMONY_TOKENS)
_DEG_MARKERS = Markers(DEGRADED_SEPARATORS)
_OPEN_MARKERS = Markers((*HARMONY_TOKENS, *TAGS, *DEGRADED_SEPARATORS))
_TAG_MARKERS = {close: Markers((close,)) for _, close in TAGS.values()}


def writes_harmony(model: str) -> bool:
    """Whether a model name belongs to the Harmony family (gpt-oss), whose raw output the
    parser may have to read without a server splitting it first."""
    return bool(_HARMONY_MODEL_RE.search(model))


def is_builtin_tool(name: str) -> bool:
    """A Harmony recipient naming one of gpt-oss's built-in tools (browser, python, container),
    which Koma does not provide."""
    return name in BUILTIN_TOOLS or name.startswith(BUILTIN_TOOL_PREFIXES)


def clean_wire_tool_name(name: str) -> str:
    """A server's tool-call name with leaked Harmony header text cut off.

    Ollama's gpt-oss parser sometimes names a call `create_event<|channel|>analysis`; the part
    before the first special token is the function. A name that is nothing but header text
    (`assistant<|channel|>analysis`) is returned unchanged for the loop to reject clearly.
    """
    if "<|" not in name:
        return name
    head = name.split("<|", 1)[0].strip()
    return head if head and head != "assistant" else name


class ChannelParser:
    """Incremental channel splitter for one response; see the module docstring.

    `feed()` takes content text, `feed_reasoning()` a provider's separate reasoning field, and
    `finish()` flushes what was held back. Each returns `(channel, text)` pieces, adjacent
    pieces of one channel merged. Harmony tool calls found in the text (`to=functions.NAME …
    <|message|>{json}<|call|>`, or a built-in recipient) are not shown in any channel; they land
    in `leaked_tool_calls`. `degraded_harmony=False` turns off the `analysis…assistantfinal…`
    and start-of-response recipient recognition, for raw code completions where a leading
    `finalResult` is an identifier. `harmony_start=True` says the server is known to hand raw
    Harmony over: text at the response start is then held until a marker says which channel
    it belongs to (`<|end|>` → the analysis the prompt opened, `<|return|>` or the end of the
    stream → final). `saw_harmony` turns true once any Harmony form was recognised.
    """

    __slots__ = (
        "_channel",
        "_close",
        "_degraded",
        "_harmony_start",
        "_header",
        "_header_from",
        "_header_marker",
        "_held",
        "_markers",
        "_pending",
        "_reasoned",
        "_state",
        "_tool_body",
        "_tool_name",
        "leaked_tool_calls",
        "saw_harmony",
    )

    def __init__(self, degraded_harmony: bool = True, harmony_start: bool = False) -> None:
        self._degraded = degraded_harmony
        self._harmony_start = harmony_start and degraded_harmony
        self.leaked_tool_calls: list[ToolCall] = []
        self.saw_harmony = False
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
        self._pending: list[str] = []
        self._reasoned = False  # a reasoning field arrived: the server splits reasoning

    @property
    def channel(self) -> Channel:
        """The channel that content text goes to right now."""
        return self._channel

    def feed_reasoning(self, text: str) -> list[Piece]:
        """A provider's reasoning field (`thinking`, `reasoning`, `reasoning_content`)."""
        if not text:
            return []
        out: list[Piece] = []
        self._reasoned = True
        if self._state == _S_OPEN:  # the server splits reasoning: held content was final
            self._flush_pending(out, "final")
            self._enter(_S_PLAIN, "final")
        if self._state == _S_PLAIN and not self._held and self._degraded:
            self._state = _S_START
        out.append(("thinking", text))
        return out

    def feed(self, text: str) -> list[Piece]:
        """Content text; returns what can be attributed to a channel already."""
        if not text:
            return []
        state = self._state
        # Fast path: nothing held and no character that could begin a marker.
        if not self._held and state in (_S_PLAIN, _S_TAG, _S_BODY, _S_DEG):
            if not self._markers.may_contain(text):
                return [(self._channel, text)]
        elif not self._held and state == _S_OPEN and not self._markers.may_contain(text):
            self._pending.append(text)
            return []
        return self._run(self._held + text if self._held else text)

    def finish(self) -> list[Piece]:
        """End of stream: hand out held-back text; unclosed channels keep their text."""
        out: list[Piece] = []
        while self._state == _S_HEADER:  # each pass consumes at least the header's marker
            head = self._header + self._held
            self._held = self._header = ""
            # A real header the stream ended inside is markup; a start-of-response recipient
            # is only believed once a channel followed it (` to=do list` is prose).
            begun = self._header_marker or CHANNEL_TOKEN in head
            if begun and _PARTIAL_HEADER_RE.fullmatch(head):
                self._enter(_S_PLAIN, "final")
                break
            _merge(out, self._run(self._abandon_header(out, head)))
        buf, state = self._held, self._state
        self._held = ""
        if state == _S_OPEN:  # nothing said otherwise: the held start was the answer
            self._flush_pending(out, "final")
            self._enter(_S_PLAIN, "final")
            state = _S_PLAIN
        if state in (_S_START, _S_DEG_COMMENTARY, _S_PLAIN, _S_TAG, _S_BODY, _S_DEG):
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
                role = _role_head(buf)
                if role is None:
                    self._held = buf
                    return out
                if role:  # the header goes on from the prompt's `<|start|>assistant`
                    self._header, self._header_marker, self._header_from = "", "", None
                    self._state = _S_HEADER
                    continue
                decision = _degraded_head(buf)
                if decision is None:
                    self._held = buf
                    return out
                if decision is False:
                    held = self._harmony_start and not self._reasoned
                    self._enter(_S_OPEN if held else _S_PLAIN, "final")
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
            self._on_marker(out, match.group(0))
        self._held = ""
        return out

    def _emit(self, out: list[Piece], text: str) -> None:
        if not text:
            return
        state = self._state
        if state in (_S_HTOOL, _S_DTOOL):
            self._tool_body += text
            return
        if state == _S_OPEN:
            self._pending.append(text)
            return
        channel = self._channel
        if out and out[-1][0] == channel:
            out[-1] = (channel, out[-1][1] + text)
        else:
            out.append((channel, text))

    def _flush_pending(self, out: list[Piece], channel: Channel) -> None:
        """Give the held response start to the channel that turned out to be its own."""
        text, self._pending = "".join(self._pending), []
        if text:
            _merge(out, [(channel, text)])

    def _enter(self, state: _State, channel: Channel) -> None:
        self._state, self._channel = state, channel
        if state in (_S_PLAIN, _S_START):
            self._markers = _PLAIN_MARKERS
        elif state == _S_BODY:
            self._markers = _BODY_MARKERS
        elif state == _S_DEG:
            self._markers = _DEG_MARKERS
        elif state == _S_OPEN:
            self._markers = _OPEN_MARKERS

    def _enter_body(self, channel: Channel) -> None:
        """A Harmony message body; the final channel is read like plain content (tags too)."""
        self._enter(_S_PLAIN if channel == "final" else _S_BODY, channel)

    def _enter_degraded(self, channel: Channel) -> None:
        self.saw_harmony = True
        if channel == "commentary":
            self._state, self._channel = _S_DEG_COMMENTARY, "commentary"
        else:
            self._enter(_S_DEG, channel)

    def _start_tool(self, recipient: str) -> None:
        self._tool_name, self._tool_body = recipient, ""
        self._state, self._markers = _S_HTOOL, _BODY_MARKERS

    def _on_marker(self, out: list[Piece], marker: str) -> None:
        state = self._state
        if state == _S_TAG:  # the closing tag
            reasoning = self._channel in REASONING_CHANNELS
            self._reasoned = self._reasoned or reasoning  # no longer the response start
            self._enter(_S_START if self._degraded and reasoning else _S_PLAIN, "final")
            return
        if state in (_S_DEG, _S_DTOOL):
            if state == _S_DTOOL:
                self._end_tool()
            self._enter_degraded(DEGRADED_SEPARATORS[marker])
            return
        if state == _S_OPEN:
            self._on_open_marker(out, marker)
            return
        # Plain text, or a Harmony body: both react to Harmony tokens.
        if marker in TAGS:
            self._channel, self._close = TAGS[marker]
            self._state, self._markers = _S_TAG, _TAG_MARKERS[self._close]
            return
        self.saw_harmony = True
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
        # A stray <|message|> or <|constrain|> inside a body is markup: dropped.

    def _on_open_marker(self, out: list[Piece], marker: str) -> None:
        """A marker decides where the held start of a raw Harmony response belongs."""
        if marker in TAGS:  # tag-structured text, not a channel the prompt opened
            self._flush_pending(out, "final")
            self._enter(_S_PLAIN, "final")
            self._on_marker(out, marker)
            return
        self.saw_harmony = True
        if marker in DEGRADED_SEPARATORS:  # `…reasoningassistantfinalAnswer`
            self._flush_pending(out, "analysis")
            self._enter_degraded(DEGRADED_SEPARATORS[marker])
        elif marker == RETURN_TOKEN:
            self._flush_pending(out, "final")
            self._enter(_S_PLAIN, "final")
        elif marker == CALL_TOKEN:  # arguments of a call whose header the prompt held
            self._flush_pending(out, "commentary")
            self._enter(_S_PLAIN, "final")
        elif marker == CONSTRAIN_TOKEN:
            pass  # markup without a header around it: dropped
        else:  # <|end|>, or a new message: the prompt had opened the analysis channel
            self._flush_pending(out, "analysis")
            self._enter(_S_PLAIN, "final")
            if marker != END_TOKEN:
                self._on_marker(out, marker)

    def _read_header(self, out: list[Piece], buf: str) -> tuple[bool, str]:
        """Consume header text; `(True, "")` when all of `buf` was taken, else what is left."""
        head = self._header + buf
        found = _HEADER_END_RE.search(head)
        end = found.start() if found else -1
        scope = head if end < 0 else head[:end]
        too_long = (end if end >= 0 else len(head) - _LONGEST_HEADER_END + 1) > _MAX_HEADER
        if "\n" in scope or too_long or (found and found.group(0) != MESSAGE_TOKEN):
            self._header = ""
            return False, self._abandon_header(out, head)
        if end < 0:
            self._header = head
            return True, ""
        self._header = head[:end]
        self._open_message()
        return False, head[end + len(MESSAGE_TOKEN) :]

    def _abandon_header(self, out: list[Piece], head: str) -> str:
        """A header that never reached `<|message|>`; returns the text still to be read.

        A channel word followed by text is a message that lost its `<|message|>` token
        (openai/harmony's non-strict reading); anything else means the marker was literal
        text in the channel it appeared in.
        """
        text = self._header_marker + head
        found = _HEADLESS_RE.match(text)
        if found is not None:
            self.saw_harmony = True
            recipient = _tool_recipient(found.group("to1") or found.group("to2") or "")
            rest = text[found.end() :]
            if recipient:
                self._start_tool(recipient)
                typed = _CONTENT_TYPE_RE.match(rest)
                return rest[typed.end() :] if typed else rest
            self._enter_body(HARMONY_CHANNELS[found.group("channel")])
            return rest
        if self._header_from is None:
            self._enter(_S_PLAIN, "final")
        else:
            self._enter(_S_BODY, self._header_from)
        self._emit(out, self._header_marker)
        return head

    def _open_message(self) -> None:
        self.saw_harmony = True
        header, self._header = self._header_marker + self._header, ""
        recipients = [r for r in _RECIPIENT_RE.findall(header) if r not in _NOT_TOOLS]
        if recipients:
            self._start_tool(recipients[-1])
            return
        channels = _CHANNEL_RE.findall(header)
        channel = HARMONY_CHANNELS.get(channels[-1], "final") if channels else "final"
        role = _ROLE_RE.match(header)
        if role and role.group(1) != "assistant":
            channel = "commentary"  # a message written in a tool's name: not an answer
        self._enter_body(channel)

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


def _merge(out: list[Piece], pieces: list[Piece]) -> None:
    for channel, text in pieces:
        if not text:
            continue
        if out and out[-1][0] == channel:
            out[-1] = (channel, out[-1][1] + text)
        else:
            out.append((channel, text))


def _tool_recipient(recipient: str) -> str:
    """The recipient when it names a tool, else "" (`to=assistant` and friends)."""
    return "" if recipient in _NOT_TOOLS else recipient


def _role_head(buf: str) -> bool | None:
    """At a response start: True when `buf` continues a Harmony header the prompt began,
    False when it cannot, None when more text is needed to tell."""
    undecided = False
    for head in ROLE_HEADS:
        if buf.startswith(head):
            return True
        if head.startswith(buf):
            undecided = True
    return None if undecided else False


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

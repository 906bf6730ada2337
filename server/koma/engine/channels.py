"""Split a streamed answer into channels, one wire chunk at a time.

Local servers hand reasoning over in many shapes: a separate reasoning field, raw Harmony
tokens (`<|channel|>analysis<|message|>…<|end|>`), Harmony with its special tokens dropped by
llama.cpp without `--special` (`analysisUser asks…assistantfinalHello!`), or XML-ish tags
(`<think>`, `<thinking>`, `<analysis>`, `<commentary>`, `<final>`). `ChannelParser` turns all of
them into `(channel, text)` pieces so that reasoning never reaches the final answer.

What each Harmony form means (headers, recipients, built-in tools, degraded forms) is defined
in `koma.engine.harmony`; this module is the state machine that applies it to a stream.

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

from enum import Enum, auto

from koma.engine.harmony import (
    CALL_TOKEN,
    CHANNEL_TOKEN,
    CONSTRAIN_TOKEN,
    DEGRADED_SEPARATORS,
    END_TOKEN,
    HARMONY_TOKENS,
    HEADER_END_RE,
    LONGEST_HEADER_END,
    MAX_HEADER,
    MESSAGE_TOKEN,
    PARTIAL_HEADER_RE,
    RECIPIENT_PREFIX,
    RETURN_TOKEN,
    START_TOKEN,
    degraded_head,
    headless_message,
    leaked_tool_call,
    message_target,
    role_head,
)
from koma.engine.markers import Markers
from koma.types import REASONING_CHANNELS, Channel, ToolCall

Piece = tuple[Channel, str]

# Opening tag -> (channel, closing tag).
TAGS: dict[str, tuple[Channel, str]] = {
    "<think>": ("thinking", "</think>"),
    "<thinking>": ("thinking", "</thinking>"),
    "<analysis>": ("analysis", "</analysis>"),
    "<commentary>": ("commentary", "</commentary>"),
    "<final>": ("final", "</final>"),
}


class _State(Enum):
    """Where the parser is in an answer; what the next text means depends on it."""

    START = auto()  # start of a response or just after reasoning: degraded Harmony is possible
    PLAIN = auto()  # outside any channel marker: text is final
    TAG = auto()  # inside <think>…</think> and friends
    HEADER = auto()  # reading a Harmony header up to <|message|>
    BODY = auto()  # inside a Harmony message body
    HARMONY_TOOL = auto()  # inside a Harmony message addressed to a tool (`to=functions.x`)
    DEGRADED = auto()  # inside a degraded Harmony message
    DEGRADED_COMMENTARY = auto()  # after degraded `commentary`: a recipient may follow
    DEGRADED_TOOL = auto()  # inside a degraded Harmony tool call
    OPEN = auto()  # raw Harmony response start: maybe a channel the prompt opened (held back)


# The members as module names: the parser compares its state several times per chunk, and
# reading an attribute of an Enum class costs several times a global lookup (Python 3.11:
# ~100 ns against ~20 ns). benchmarks/channel_parser.py measures the per-chunk cost.
_START = _State.START
_PLAIN = _State.PLAIN
_TAG = _State.TAG
_HEADER = _State.HEADER
_BODY = _State.BODY
_HARMONY_TOOL = _State.HARMONY_TOOL
_DEGRADED = _State.DEGRADED
_DEGRADED_COMMENTARY = _State.DEGRADED_COMMENTARY
_DEGRADED_TOOL = _State.DEGRADED_TOOL
_OPEN = _State.OPEN
# States whose text goes straight to the current channel when it holds no marker.
_PASSTHROUGH = (_PLAIN, _TAG, _BODY, _DEGRADED)
# States reading the arguments of a tool call.
_IN_TOOL = (_HARMONY_TOOL, _DEGRADED_TOOL)

_PLAIN_MARKERS = Markers((*HARMONY_TOKENS, *TAGS))
_BODY_MARKERS = Markers(HARMONY_TOKENS)
_DEG_MARKERS = Markers(DEGRADED_SEPARATORS)
_OPEN_MARKERS = Markers((*HARMONY_TOKENS, *TAGS, *DEGRADED_SEPARATORS))
_TAG_MARKERS = {close: Markers((close,)) for _, close in TAGS.values()}


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
        self._state = _START if self._degraded else _PLAIN
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
        if self._state == _OPEN:  # the server splits reasoning: held content was final
            self._flush_pending(out, "final")
            self._enter(_PLAIN, "final")
        if self._state == _PLAIN and not self._held and self._degraded:
            self._state = _START
        out.append(("thinking", text))
        return out

    def feed(self, text: str) -> list[Piece]:
        """Content text; returns what can be attributed to a channel already."""
        if not text:
            return []
        state = self._state
        # Fast path: nothing held and no character that could begin a marker.
        if not self._held and state in _PASSTHROUGH:
            if not self._markers.may_contain(text):
                return [(self._channel, text)]
        elif not self._held and state == _OPEN and not self._markers.may_contain(text):
            self._pending.append(text)
            return []
        return self._run(self._held + text if self._held else text)

    def finish(self) -> list[Piece]:
        """End of stream: hand out held-back text; unclosed channels keep their text."""
        out: list[Piece] = []
        while self._state == _HEADER:  # each pass consumes at least the header's marker
            head = self._header + self._held
            self._held = self._header = ""
            # A real header the stream ended inside is markup; a start-of-response recipient
            # is only believed once a channel followed it (` to=do list` is prose).
            begun = self._header_marker or CHANNEL_TOKEN in head
            if begun and PARTIAL_HEADER_RE.fullmatch(head):
                self._enter(_PLAIN, "final")
                break
            _merge(out, self._run(self._abandon_header(out, head)))
        buf, state = self._held, self._state
        self._held = ""
        if state == _OPEN:  # nothing said otherwise: the held start was the answer
            self._flush_pending(out, "final")
            self._enter(_PLAIN, "final")
            state = _PLAIN
        if state in (_START, _DEGRADED_COMMENTARY, _PLAIN, _TAG, _BODY, _DEGRADED):
            self._emit(out, buf)
        elif state in _IN_TOOL:
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
            if state == _START:
                role = role_head(buf)
                if role is None:
                    self._held = buf
                    return out
                if role:  # the header goes on from the prompt's `<|start|>assistant`
                    self._header, self._header_marker, self._header_from = "", "", None
                    self._state = _HEADER
                    continue
                decision = degraded_head(buf)
                if decision is None:
                    self._held = buf
                    return out
                if decision is False:
                    held = self._harmony_start and not self._reasoned
                    self._enter(_OPEN if held else _PLAIN, "final")
                    continue
                channel, consumed = decision
                buf = buf[consumed:]
                self._enter_degraded(channel)
                continue
            if state == _HEADER:
                done, buf = self._read_header(out, buf)
                if done:
                    return out
                continue
            if state == _DEGRADED_COMMENTARY:
                if len(buf) < len(RECIPIENT_PREFIX) and RECIPIENT_PREFIX.startswith(buf):
                    self._held = buf
                    return out
                if buf.startswith(RECIPIENT_PREFIX):
                    buf = buf[len(RECIPIENT_PREFIX) :]
                    self._tool_name, self._tool_body = "", ""
                    self._state, self._markers = _DEGRADED_TOOL, _DEG_MARKERS
                else:
                    self._enter(_DEGRADED, "commentary")
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
        if state in _IN_TOOL:
            self._tool_body += text
            return
        if state == _OPEN:
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
        if state in (_PLAIN, _START):
            self._markers = _PLAIN_MARKERS
        elif state == _BODY:
            self._markers = _BODY_MARKERS
        elif state == _DEGRADED:
            self._markers = _DEG_MARKERS
        elif state == _OPEN:
            self._markers = _OPEN_MARKERS

    def _enter_body(self, channel: Channel) -> None:
        """A Harmony message body; the final channel is read like plain content (tags too)."""
        self._enter(_PLAIN if channel == "final" else _BODY, channel)

    def _enter_degraded(self, channel: Channel) -> None:
        self.saw_harmony = True
        if channel == "commentary":
            self._state, self._channel = _DEGRADED_COMMENTARY, "commentary"
        else:
            self._enter(_DEGRADED, channel)

    def _start_tool(self, recipient: str) -> None:
        self._tool_name, self._tool_body = recipient, ""
        self._state, self._markers = _HARMONY_TOOL, _BODY_MARKERS

    def _on_marker(self, out: list[Piece], marker: str) -> None:
        state = self._state
        if state == _TAG:  # the closing tag
            reasoning = self._channel in REASONING_CHANNELS
            self._reasoned = self._reasoned or reasoning  # no longer the response start
            self._enter(_START if self._degraded and reasoning else _PLAIN, "final")
            return
        if state in (_DEGRADED, _DEGRADED_TOOL):
            if state == _DEGRADED_TOOL:
                self._end_tool()
            self._enter_degraded(DEGRADED_SEPARATORS[marker])
            return
        if state == _OPEN:
            self._on_open_marker(out, marker)
            return
        # Plain text, or a Harmony body: both react to Harmony tokens.
        if marker in TAGS:
            self._channel, self._close = TAGS[marker]
            self._state, self._markers = _TAG, _TAG_MARKERS[self._close]
            return
        self.saw_harmony = True
        if state == _HARMONY_TOOL and marker not in (MESSAGE_TOKEN, CONSTRAIN_TOKEN):
            self._end_tool()
            state = _PLAIN
        if marker == START_TOKEN or marker == CHANNEL_TOKEN:
            self._header, self._header_marker = "", marker
            self._header_from = self._channel if state == _BODY else None
            self._state = _HEADER
        elif marker in (END_TOKEN, RETURN_TOKEN, CALL_TOKEN):
            self._enter(_PLAIN, "final")
        elif marker == MESSAGE_TOKEN and state in (_PLAIN, _START):
            self._enter(_BODY, "final")
        # A stray <|message|> or <|constrain|> inside a body is markup: dropped.

    def _on_open_marker(self, out: list[Piece], marker: str) -> None:
        """A marker decides where the held start of a raw Harmony response belongs."""
        if marker in TAGS:  # tag-structured text, not a channel the prompt opened
            self._flush_pending(out, "final")
            self._enter(_PLAIN, "final")
            self._on_marker(out, marker)
            return
        self.saw_harmony = True
        if marker in DEGRADED_SEPARATORS:  # `…reasoningassistantfinalAnswer`
            self._flush_pending(out, "analysis")
            self._enter_degraded(DEGRADED_SEPARATORS[marker])
        elif marker == RETURN_TOKEN:
            self._flush_pending(out, "final")
            self._enter(_PLAIN, "final")
        elif marker == CALL_TOKEN:  # arguments of a call whose header the prompt held
            self._flush_pending(out, "commentary")
            self._enter(_PLAIN, "final")
        elif marker == CONSTRAIN_TOKEN:
            pass  # markup without a header around it: dropped
        else:  # <|end|>, or a new message: the prompt had opened the analysis channel
            self._flush_pending(out, "analysis")
            self._enter(_PLAIN, "final")
            if marker != END_TOKEN:
                self._on_marker(out, marker)

    def _read_header(self, out: list[Piece], buf: str) -> tuple[bool, str]:
        """Consume header text; `(True, "")` when all of `buf` was taken, else what is left."""
        head = self._header + buf
        found = HEADER_END_RE.search(head)
        end = found.start() if found else -1
        scope = head if end < 0 else head[:end]
        too_long = (end if end >= 0 else len(head) - LONGEST_HEADER_END + 1) > MAX_HEADER
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
        headless = headless_message(self._header_marker + head)
        if headless is not None:
            self.saw_harmony = True
            recipient, channel, rest = headless
            if recipient:
                self._start_tool(recipient)
            else:
                self._enter_body(channel)
            return rest
        if self._header_from is None:
            self._enter(_PLAIN, "final")
        else:
            self._enter(_BODY, self._header_from)
        self._emit(out, self._header_marker)
        return head

    def _open_message(self) -> None:
        self.saw_harmony = True
        header, self._header = self._header_marker + self._header, ""
        recipient, channel = message_target(header)
        if recipient:
            self._start_tool(recipient)
        else:
            self._enter_body(channel)

    def _end_tool(self) -> None:
        """Record the tool call whose arguments have just been read."""
        name, body = self._tool_name, self._tool_body
        self._tool_name = self._tool_body = ""
        call = leaked_tool_call(name, body, f"leaked_{len(self.leaked_tool_calls)}")
        if call is not None:
            self.leaked_tool_calls.append(call)


def _merge(out: list[Piece], pieces: list[Piece]) -> None:
    for channel, text in pieces:
        if not text:
            continue
        if out and out[-1][0] == channel:
            out[-1] = (channel, out[-1][1] + text)
        else:
            out.append((channel, text))

"""The Harmony format as Koma reads it: tokens, channels, headers, recipients, tool calls.

gpt-oss writes Harmony (`<|start|>assistant<|channel|>analysis<|message|>…<|end|>`), and
servers hand it over intact, stripped of its special tokens, or split into fields. This module
holds what the format *is* — its vocabulary, the header and recipient forms, which recipient
is a tool, how a call whose header leaked into the text is recovered — as constants and pure
functions.

Raw Harmony is read the way llama.cpp's gpt-oss parser and openai/harmony's non-strict parser
read it: the recipient may stand in the role header (` to=functions.f<|channel|>…`, also at the
very start of a response whose prompt ended in `<|start|>assistant`) or in the channel header,
with or without `<|constrain|>json`; a message addressed to a function or a built-in tool
(`browser.*`, `python`, `container.*`) becomes a tool call, never text; `commentary
to=assistant` is a stray header word, not a recipient; a header without `<|message|>` still
opens its channel; the last `<|channel|>` of a header wins. docs/protocol.md lists every form.

`channels.ChannelParser` is the state machine that applies all this to a stream one chunk at a
time; keeping the grammar here means a new header form is a change to one table or function,
not to the parser's states.
"""

from __future__ import annotations

import re
from typing import Literal

from koma.types import Channel, ToolCall, decode_arguments

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
RECIPIENT_PREFIX = " to="
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
MAX_HEADER = 256
# What ends a header: its `<|message|>`, or (header without one) the end of the message.
_HEADER_ENDS = (MESSAGE_TOKEN, END_TOKEN, RETURN_TOKEN, CALL_TOKEN)
HEADER_END_RE = re.compile("|".join(re.escape(t) for t in _HEADER_ENDS))
LONGEST_HEADER_END = max(len(t) for t in _HEADER_ENDS)
# A Harmony header cut off by the end of the stream (role, recipient, channel, constraint).
PARTIAL_HEADER_RE = re.compile(
    r"(?:assistant|functions\.[\w.\-]*|[a-z]*)?(?:\s*to=[\w.\-:/]*)?(?:<\|channel\|>[a-z]*)?"
    r"(?:\s*to=[\w.\-:/]*)?\s*(?:<\|constrain\|>)?\s*[a-z]*(?:<\|?[a-z]*\|?)?"
)
# Model names of the Harmony family (gpt-oss:20b, openai/gpt-oss-120b, gpt_oss…).
_HARMONY_MODEL_RE = re.compile(r"gpt[-_ ]?oss", re.IGNORECASE)


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


def tool_recipient(recipient: str) -> str:
    """The recipient when it names a tool, else "" (`to=assistant` and friends)."""
    return "" if recipient in _NOT_TOOLS else recipient


def message_target(header: str) -> tuple[str, Channel]:
    """Where a complete header (up to its `<|message|>`) sends the message: `(recipient, "")`
    for a tool call (the last recipient wins), else `("", channel)`; the last `<|channel|>`
    wins, and a message written in a tool's role is commentary, never an answer."""
    recipients = [r for r in _RECIPIENT_RE.findall(header) if r not in _NOT_TOOLS]
    if recipients:
        return recipients[-1], "commentary"
    channels = _CHANNEL_RE.findall(header)
    channel = HARMONY_CHANNELS.get(channels[-1], "final") if channels else "final"
    role = _ROLE_RE.match(header)
    if role and role.group(1) != "assistant":
        channel = "commentary"
    return "", channel


def headless_message(text: str) -> tuple[str, Channel, str] | None:
    """A header that lost its `<|message|>` (`<|channel|>analysis Plan…`, openai/harmony's
    non-strict reading): `(recipient, channel, message text)`, the recipient "" unless it names
    a tool, whose content type (`json`) is dropped from the text; None when `text` is not one
    (the header's marker was then literal text)."""
    found = _HEADLESS_RE.match(text)
    if found is None:
        return None
    recipient = tool_recipient(found.group("to1") or found.group("to2") or "")
    rest = text[found.end() :]
    if recipient:
        typed = _CONTENT_TYPE_RE.match(rest)
        return recipient, "commentary", rest[typed.end() :] if typed else rest
    return "", HARMONY_CHANNELS[found.group("channel")], rest


def role_head(buf: str) -> bool | None:
    """At a response start: True when `buf` continues a Harmony header the prompt began,
    False when it cannot, None when more text is needed to tell."""
    undecided = False
    for head in ROLE_HEADS:
        if buf.startswith(head):
            return True
        if head.startswith(buf):
            undecided = True
    return None if undecided else False


def degraded_head(buf: str) -> tuple[Channel, int] | Literal[False] | None:
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
                if len(rest) < len(RECIPIENT_PREFIX) and RECIPIENT_PREFIX.startswith(rest):
                    return None
                if rest.startswith(RECIPIENT_PREFIX):
                    return channel, len(head)
            return False
    for head, _, _ in _DEGRADED_HEADS:
        if head.startswith(buf):
            return None
    return False


def leaked_tool_call(name: str, body: str, call_id: str) -> ToolCall | None:
    """The tool call a Harmony message addressed to `name` carries in `body`.

    Without a name (degraded Harmony: `functions.NAME json{…}` all in the body) the name is
    read from the body's start, and None means there is none. `functions.` is the namespace
    of the caller's tools and is dropped; a built-in recipient keeps its name.
    """
    if not name:
        found = _TOOL_NAME_RE.match(body)
        if not found:
            return None
        name, body = found.group(1), body[found.end() :]
        preamble = _TOOL_PREAMBLE_RE.match(body)
        if preamble:
            body = body[preamble.end() :]
    return ToolCall(name.removeprefix("functions."), decode_arguments(body), id=call_id)

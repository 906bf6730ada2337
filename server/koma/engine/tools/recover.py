"""Tool calls that did not arrive as tool calls, and the text protocol for models without tools.

Local models often write a call as text: a JSON object (`{"name": "read_file", "arguments":
{…}}`), bare or in a ```json fence, in their final answer. `find_calls` recognises those; with
native tools on, only objects naming a tool that exists count, so an answer that merely shows
some JSON is left alone. Harmony leaks (`to=functions.x`) are recovered earlier, by the channel
parser.

A model whose server says it "does not support tools" gets the *text protocol*: the tools are
described in the system prompt, it answers with such a JSON object, and earlier calls and
results are replayed as plain messages (`text_protocol_messages`), since its template has no
slot for them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from koma.types import Message, ToolCall

_NAME_KEYS = ("name", "tool", "tool_name", "function", "recipient")
_ARGS_KEYS = ("arguments", "parameters", "args", "input", "params")
MAX_SCAN_CHARS = 200_000
MAX_OBJECT_STARTS = 400
_FENCE_RE = re.compile(r"```(?:json|JSON)?[ \t]*\n?(.*?)\n?```", re.DOTALL)


@dataclass
class FoundCalls:
    calls: list[ToolCall]
    rest: str  # the text around the calls (fences removed), usually empty


def _as_call(obj: Any, names: Sequence[str] | None) -> ToolCall | None:
    """A call from one decoded object, if it has the shape of one (and a known name)."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict) and "name" in obj["function"]:
        obj = obj["function"]  # {"type": "function", "function": {...}}
    name = next((obj[k] for k in _NAME_KEYS if isinstance(obj.get(k), str)), None)
    if name is None:
        return None
    name = name.strip().removeprefix("functions.")
    args_key = next((k for k in _ARGS_KEYS if k in obj), None)
    if args_key is None:
        if set(obj) - set(_NAME_KEYS) - {"type", "id"}:
            return None  # some other object that happens to have a "name"
        arguments: Any = {}
    else:
        arguments = obj[args_key]
    if names is not None and name not in names:
        return None
    if isinstance(arguments, str):
        try:
            decoded = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            decoded = arguments
        arguments = decoded if isinstance(decoded, dict) else arguments
    if not isinstance(arguments, dict | str):
        arguments = json.dumps(arguments)
    return ToolCall(name=name, arguments=arguments)


def find_calls(text: str, names: Sequence[str] | None) -> FoundCalls | None:
    """Calls written as JSON in `text`; `names=None` accepts any name (text protocol)."""
    if "{" not in text or len(text) > MAX_SCAN_CHARS:
        return None
    decoder = json.JSONDecoder()
    calls: list[ToolCall] = []
    spans: list[tuple[int, int]] = []
    position = starts = 0
    while starts < MAX_OBJECT_STARTS:
        start = text.find("{", position)
        if start < 0:
            break
        starts += 1
        try:
            obj, end = decoder.raw_decode(text, start)
        except ValueError:
            position = start + 1
            continue
        items = obj if isinstance(obj, list) else [obj]
        found = [c for c in (_as_call(i, names) for i in items) if c is not None]
        if found:
            calls += found
            spans.append((start, end))
        position = end
    if not calls:
        return None
    rest, last = [], 0
    for start, end in spans:
        rest.append(text[last:start])
        last = end
    rest.append(text[last:])
    leftover = _FENCE_RE.sub(lambda m: m.group(0) if m.group(1).strip() else "", "".join(rest))
    return FoundCalls(calls, leftover.strip())


def could_be_call(text: str) -> bool | None:
    """While the final channel streams: True/False once it is clear whether the answer opens
    with a JSON call, None while it is too early to tell."""
    stripped = text.lstrip()
    if not stripped:
        return None
    if stripped.startswith("{"):
        return True
    if stripped.startswith("```"):
        newline = stripped.find("\n")
        if newline < 0:
            return None if len(stripped) < 12 else False
        if stripped[3:newline].strip().lower() not in ("", "json"):
            return False
        body = stripped[newline + 1 :].lstrip()
        return None if not body else body.startswith("{")
    if "```".startswith(stripped):  # "`" or "``" so far
        return None
    return False


def text_protocol_prompt(definitions: Sequence[dict[str, Any]]) -> str:
    """The tools described in words, for a model without native tool calling."""
    lines = [
        "You can use tools. To call one, reply with nothing but one JSON object:",
        '{"tool": "<tool name>", "arguments": {<arguments as in the schema>}}',
        "You will then receive the result in a message starting with 'Tool result'. Call one "
        "tool at a time. When you can answer, reply normally, without such an object.",
        "",
        "Tools:",
    ]
    for definition in definitions:
        fn = definition.get("function", definition)
        schema = json.dumps(fn.get("parameters", {}), ensure_ascii=False, separators=(",", ":"))
        lines.append(f"- {fn.get('name')}: {fn.get('description', '')}\n  arguments: {schema}")
    return "\n".join(lines)


def text_protocol_messages(messages: Sequence[Message], prompt: str) -> list[Message]:
    """Messages for a model without tools: calls and results become ordinary text."""
    out: list[Message] = []
    for message in messages:
        if message.role == "assistant" and message.tool_calls:
            calls = "\n".join(
                json.dumps({"tool": c.name, "arguments": c.arguments}, ensure_ascii=False)
                for c in message.tool_calls
            )
            content = f"{message.content}\n{calls}".strip()
            out.append(Message("assistant", content, message.thinking))
        elif message.role == "tool":
            out.append(Message.user(f"Tool result ({message.tool_name}):\n{message.content}"))
        else:
            out.append(message)
    if not prompt:
        return out
    if out and out[0].role == "system":
        out[0] = Message.system(f"{out[0].content}\n\n{prompt}")
    else:
        out.insert(0, Message.system(prompt))
    return out

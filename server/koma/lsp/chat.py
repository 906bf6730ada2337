"""`koma.chat`, `koma.explain`, `koma.chat.cancel`: streamed chat over `workspace/executeCommand`.

A chat turn runs in its own task so `koma.chat.cancel` can stop it: cancelling the task unwinds
the provider's stream, which closes the upstream HTTP response and stops the model at once.
While it runs, every stream event becomes a `koma/chat/event` notification (protocol.md); the
command's reply carries the whole answer. Failures never escape as JSON-RPC errors: the client
gets an `error` event and a reply with an `error` field, and the conversation stays usable.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from pygls.uris import to_fs_path

from koma.choices import EFFORTS
from koma.errors import KomaError

# The engine is imported by the handlers, not before the `initialize` reply (cold start).
if TYPE_CHECKING:
    from koma.engine.chat import TurnEvent
    from koma.lsp.server import KomaLanguageServer
    from koma.types import Effort, Metrics

logger = logging.getLogger("koma.lsp.chat")

EVENT_METHOD = "koma/chat/event"
# The share of the context window a file or selection may take in a chat message.
CONTEXT_SHARE = 0.5
# The most of a file Explain reads from disk (its selection is then cut from it).
EXPLAIN_MAX_BYTES = 2_000_000


def metrics_payload(metrics: Metrics | None) -> dict[str, Any]:
    if metrics is None:
        return {}
    out: dict[str, Any] = {}
    if metrics.ttft_ms is not None:
        out["ttftMs"] = round(metrics.ttft_ms)
    if metrics.tokens_per_second is not None:
        out["tokensPerSecond"] = round(metrics.tokens_per_second, 1)
    if metrics.total_ms is not None:
        out["totalMs"] = round(metrics.total_ms)
    return out


def first_argument(args: tuple[Any, ...]) -> dict[str, Any]:
    """Commands take one object argument; anything else counts as an empty one."""
    if args and isinstance(args[0], dict):
        return args[0]
    return {}


def parse_range(raw: Any) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """An LSP range object as position pairs; None when absent or malformed."""
    try:
        start, end = raw["start"], raw["end"]
        return (int(start["line"]), int(start["character"])), (
            int(end["line"]),
            int(end["character"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def display_path(ls: KomaLanguageServer, uri: str) -> str:
    path = to_fs_path(uri) or uri
    root = ls.workspace_root
    if root is not None:
        try:
            return str(PurePath(path).relative_to(root))
        except ValueError:
            pass
    return path


def language_of(ls: KomaLanguageServer, uri: str) -> str:
    try:
        language = ls.workspace.get_text_document(uri).language_id
    except RuntimeError:  # no workspace before `initialize`: the file suffix will do
        language = None
    return language or PurePath(uri).suffix.lstrip(".")


def selection_lines(
    text: str, span: tuple[tuple[int, int], tuple[int, int]] | None
) -> tuple[int, int, str]:
    """Whole lines of a selection (all lines without one), clamped to the document."""
    lines = text.split("\n")
    if span is None:
        return 0, len(lines) - 1, text
    first = min(max(span[0][0], 0), len(lines) - 1)
    last = min(max(span[1][0], first), len(lines) - 1)
    if last > first and span[1][1] == 0:
        last -= 1
    return first, last, "\n".join(lines[first : last + 1])


async def with_file_context(
    ls: KomaLanguageServer, message: str, uri: Any, raw_range: Any, max_chars: int
) -> str:
    """Prefix the user's message with the file or selection they are looking at.

    The URI is the client's word, so it passes the tools' jail and secret patterns first
    (`read_document`); a refused file is named with the reason, never shared. Known secret
    values in it (the API key pasted into a settings file) are redacted as in tool results.
    """
    if not uri:
        return message
    from koma.lsp.exposure import redactor
    from koma.lsp.tools import DocumentRefused, read_document  # lazy: keeps the start fast

    path = display_path(ls, uri) if isinstance(uri, str) else repr(uri)
    try:
        text = await read_document(ls, uri, max_chars * 4 + 4)
    except DocumentRefused as err:
        return f"(The file {path} could not be read: {err}.)\n\n{message}"
    span = parse_range(raw_range)
    if span is not None and span[0] == span[1]:
        span = None  # a bare cursor shares the file, not an empty selection
    first, last, code = selection_lines(text, span)
    code = redactor(ls)(code)
    clipped = ""
    if len(code) > max_chars:
        code = code[:max_chars]
        clipped = " (clipped)"
    what = "selection" if span is not None else "file"
    fence = "````" if "```" in code else "```"
    return (
        f"The user's {what}: {path}, lines {first + 1}-{last + 1}{clipped}\n"
        f"{fence}{language_of(ls, uri)}\n{code}\n{fence}\n\n{message}"
    )


class ChatRunner:
    """Running turns by chat id, so they can be cancelled and do not interleave."""

    def __init__(self) -> None:
        self.running: dict[str, asyncio.Task[Any]] = {}
        self.locks: dict[str, asyncio.Lock] = {}

    def cancel(self, chat_id: str) -> bool:
        task = self.running.get(chat_id)
        if task is None or task.done():
            return False
        task.cancel()
        return True


def _event_payload(chat_id: str, event: TurnEvent) -> dict[str, Any]:
    from koma.engine.chat import ToolResultEvent
    from koma.types import ChannelEnd, ChannelStart, TextDelta, ToolCallEvent

    if isinstance(event, ChannelStart):
        return {"chatId": chat_id, "type": "channelStart", "channel": event.channel}
    if isinstance(event, TextDelta):
        return {"chatId": chat_id, "type": "delta", "channel": event.channel, "text": event.text}
    if isinstance(event, ChannelEnd):
        return {"chatId": chat_id, "type": "channelEnd", "channel": event.channel}
    if isinstance(event, ToolCallEvent):
        call = {"id": event.call.id, "name": event.call.name, "arguments": event.call.arguments}
        return {"chatId": chat_id, "type": "toolCall", "tool": call}
    if isinstance(event, ToolResultEvent):
        tool = {
            "id": event.call.id,
            "name": event.call.name,
            "ok": event.outcome.ok,
            "content": event.outcome.content,
        }
        return {"chatId": chat_id, "type": "toolResult", "tool": tool}
    result = event.result
    return {
        "chatId": chat_id,
        "type": "done",
        "result": {"text": result.text, "channels": dict(result.channels)},
        "metrics": metrics_payload(result.metrics),
    }


def error_reply(
    ls: KomaLanguageServer, chat_id: str, text: str, partial: dict[str, str] | None = None
) -> dict[str, Any]:
    """Send the `error` event and build the reply: what streamed so far, plus the error."""
    ls.protocol.notify(EVENT_METHOD, {"chatId": chat_id, "type": "error", "message": text})
    channels = partial or {}
    return {
        "chatId": chat_id,
        "text": channels.get("final", ""),
        "channels": channels,
        "metrics": {},
        "error": text,
    }


async def run_chat(
    ls: KomaLanguageServer, chat_id: str | None, message: Any, effort: Any, context: dict[str, Any]
) -> dict[str, Any]:
    """One chat turn from request to reply; see the module docstring for the failure rules."""
    await ls.engine_loaded()  # imported off the event loop: koma.status answers meanwhile
    from koma.engine.chat import CHARS_PER_TOKEN, estimate_tokens, run_turn
    from koma.types import GenerationSettings, TextDelta

    runner = _runner(ls)
    chat_id = chat_id if isinstance(chat_id, str) and chat_id else ls.chats.new_id()

    def notify(payload: dict[str, Any]) -> None:
        ls.protocol.notify(EVENT_METHOD, payload)

    def failed(text: str, partial: dict[str, str] | None = None) -> dict[str, Any]:
        return error_reply(ls, chat_id, text, partial)

    if not isinstance(message, str) or not message.strip():
        return failed("koma.chat needs a non-empty `message` string")
    if effort is not None and effort not in EFFORTS:
        return failed(f"effort {effort!r} is not one of low, medium, high")
    chosen: Effort = effort if effort is not None else ls.effort("chat")
    lock = runner.locks.setdefault(chat_id, asyncio.Lock())
    async with lock:
        partial: dict[str, str] = {}

        def on_event(event: TurnEvent) -> None:
            if isinstance(event, TextDelta):
                partial[event.channel] = partial.get(event.channel, "") + event.text
            notify(_event_payload(chat_id, event))

        model = ""
        try:
            provider = await ls.cached_provider()
            model = await ls.resolve_model("chat")
            context_tokens = await ls.context_length(model)
            budget_chars = int(context_tokens * CONTEXT_SHARE * CHARS_PER_TOKEN)
            text = await with_file_context(
                ls, message, context.get("uri"), context.get("range"), budget_chars
            )
            settings = ls.settings
            generation = GenerationSettings(
                reasoning_effort=chosen,
                max_tokens=settings.chat.max_tokens,
                temperature=settings.chat.temperature,
            )
            conversation = ls.chats.open(chat_id, settings.chat.system_prompt)
            logger.debug("chat %s: ~%d tokens of message", chat_id, estimate_tokens(text))
            from koma.lsp.tools import tool_loop  # lazy: keeps the server's start fast

            tools = tool_loop(ls, chat_id, context_tokens)
            async with ls.status.generation(model) as run:
                task = asyncio.ensure_future(
                    run_turn(
                        provider,
                        model,
                        conversation,
                        text,
                        generation,
                        on_event,
                        context_tokens=context_tokens,
                        tools=tools,
                        max_steps=settings.tools.max_steps,
                        stream=tools.stream if tools else None,
                    )
                )
                runner.running[chat_id] = task
                try:
                    result = await task
                except asyncio.CancelledError:
                    if not task.cancelled():
                        raise  # the whole request was cancelled, not just this turn
                    done: dict[str, Any] = {
                        "chatId": chat_id,
                        "type": "done",
                        "cancelled": True,
                        "result": {"text": partial.get("final", ""), "channels": partial},
                        "metrics": {},
                    }
                    notify(done)
                    return {
                        "chatId": chat_id,
                        "text": partial.get("final", ""),
                        "channels": partial,
                        "metrics": {},
                        "cancelled": True,
                    }
                except KomaError as err:
                    run.error = str(err)
                    return failed(str(err), partial)
                finally:
                    runner.running.pop(chat_id, None)
                run.metrics = result.metrics
        except KomaError as err:
            ls.status.set("error", model=model or None, message=str(err))
            return failed(str(err), partial)
        except Exception as err:  # a bug: a failed turn for the user, the traceback in the log
            logger.exception("chat turn failed")
            ls.status.set("error", model=model or None, message=str(err))
            return failed(f"chat failed: {type(err).__name__}: {err}", partial)
    reply: dict[str, Any] = {
        "chatId": chat_id,
        "text": result.text,
        "channels": dict(result.channels),
        "metrics": metrics_payload(result.metrics),
    }
    warnings = list(result.warnings)
    if not result.text.strip() and not warnings:  # the engine usually says why already
        warnings.append("the model returned no answer")
    if warnings:
        reply["warning"] = "; ".join(warnings)
    return reply


_RUNNERS: weakref.WeakKeyDictionary[KomaLanguageServer, ChatRunner] = weakref.WeakKeyDictionary()


def _runner(ls: KomaLanguageServer) -> ChatRunner:
    runner = _RUNNERS.get(ls)
    if runner is None:
        runner = _RUNNERS[ls] = ChatRunner()
    return runner


async def stop_running_turns(ls: KomaLanguageServer, grace_seconds: float) -> None:
    """Cancel every running turn and give each `grace_seconds` to reply as cancelled.

    At shutdown the providers are closed next; a turn still streaming would otherwise fail
    with the HTTP client's "client has been closed" instead of ending as cancelled, and pygls
    would then cancel the request itself while it walks its table of running requests.
    """
    runner = _RUNNERS.get(ls)
    tasks = [task for task in (runner.running.values() if runner else ()) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=grace_seconds)
        for _ in range(3):  # let each command handler send its "cancelled" reply
            await asyncio.sleep(0)


def register(server: KomaLanguageServer) -> None:
    """Register the chat commands."""
    _runner(server)

    @server.command("koma.chat")
    async def chat(ls: KomaLanguageServer, *args: Any) -> dict[str, Any]:
        params = first_argument(args)
        return await run_chat(
            ls, params.get("chatId"), params.get("message"), params.get("effort"), params
        )

    @server.command("koma.explain")
    async def explain(ls: KomaLanguageServer, *args: Any) -> dict[str, Any]:
        params = first_argument(args)
        uri = params.get("uri")
        await ls.engine_loaded()
        from koma.lsp.exposure import redactor
        from koma.lsp.tools import DocumentRefused, read_document

        try:
            text = await read_document(ls, uri, EXPLAIN_MAX_BYTES)
        except DocumentRefused as err:
            chat_id = params.get("chatId")
            chat_id = chat_id if isinstance(chat_id, str) and chat_id else ls.chats.new_id()
            return error_reply(ls, chat_id, f"koma.explain cannot read the document: {err}")
        assert isinstance(uri, str)
        first, last, code = selection_lines(text, parse_range(params.get("range")))
        code = redactor(ls)(code)
        where = f"{display_path(ls, uri)} lines {first + 1}-{last + 1}"
        from koma.engine.actions import explain_prompt

        prompt = explain_prompt(code, language_of(ls, uri), where)
        return await run_chat(ls, params.get("chatId"), prompt, ls.effort("actions"), {})

    @server.command("koma.chat.cancel")
    def cancel(ls: KomaLanguageServer, *args: Any) -> dict[str, Any]:
        chat_id = first_argument(args).get("chatId")
        return {"cancelled": isinstance(chat_id, str) and _runner(ls).cancel(chat_id)}

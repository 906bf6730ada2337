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
from typing import TYPE_CHECKING, Any

from koma.choices import EFFORTS
from koma.errors import KomaError
from koma.lsp import protocol
from koma.lsp.exposure import DocumentRefused, read_document, redactor
from koma.lsp.params import display_path, first_argument, language_of, parse_range

# The engine is imported by the handlers, not before the `initialize` reply (cold start).
if TYPE_CHECKING:
    from koma.engine.chat import TurnEvent
    from koma.lsp.server import KomaLanguageServer
    from koma.types import Effort

logger = logging.getLogger("koma.lsp.chat")

# The most of a file Explain reads from disk (its selection is then cut from it).
EXPLAIN_MAX_BYTES = 2_000_000


async def with_file_context(
    ls: KomaLanguageServer, message: str, uri: Any, raw_range: Any, context_tokens: int
) -> str:
    """Prefix the user's message with the file or selection they are looking at.

    The URI is the client's word, so it passes the tools' jail and secret patterns first
    (`read_document`); a refused file is named with the reason, never shared. Known secret
    values in it (the API key pasted into a settings file) are redacted as in tool results.
    How much of it fits, and the text around it, are the engine's (`engine.chat`).
    """
    if not uri:
        return message
    from koma.engine.chat import shared_code_read_limit, with_shared_code

    path = display_path(ls, uri) if isinstance(uri, str) else repr(uri)
    try:
        text = await read_document(ls, uri, shared_code_read_limit(context_tokens))
    except DocumentRefused as err:
        return f"(The file {path} could not be read: {err}.)\n\n{message}"
    return with_shared_code(
        message,
        path=path,
        language=language_of(ls, uri),
        text=text,
        span=parse_range(raw_range),
        context_tokens=context_tokens,
        redact=redactor(ls),
    )


def error_reply(
    ls: KomaLanguageServer, chat_id: str, text: str, partial: dict[str, str] | None = None
) -> protocol.ChatReply:
    """Send the `error` event and build the reply: what streamed so far, plus the error."""
    ls.protocol.notify(protocol.CHAT_EVENT, protocol.chat_error_event(chat_id, text))
    return protocol.chat_reply(chat_id, partial or {}, error=text)


async def run_chat(
    ls: KomaLanguageServer, chat_id: str | None, message: Any, effort: Any, context: dict[str, Any]
) -> protocol.ChatReply:
    """One chat turn from request to reply; see the module docstring for the failure rules."""
    session = await ls.session()  # the engine is imported off the event loop meanwhile
    from koma.engine.chat import run_turn
    from koma.engine.tokens import estimate_tokens
    from koma.types import TextDelta

    runner = ls.state.chat
    chat_id = chat_id if isinstance(chat_id, str) and chat_id else ls.chats.new_id()

    def notify(payload: protocol.ChatEvent) -> None:
        ls.protocol.notify(protocol.CHAT_EVENT, payload)

    def failed(text: str, partial: dict[str, str] | None = None) -> protocol.ChatReply:
        return error_reply(ls, chat_id, text, partial)

    if not isinstance(message, str) or not message.strip():
        return failed("koma.chat needs a non-empty `message` string")
    if effort is not None and effort not in EFFORTS:
        return failed(f"effort {effort!r} is not one of low, medium, high")
    chosen: Effort | None = effort
    lock = runner.locks.setdefault(chat_id, asyncio.Lock())
    async with lock:
        partial: dict[str, str] = {}

        def on_event(event: TurnEvent) -> None:
            if isinstance(event, TextDelta):
                partial[event.channel] = partial.get(event.channel, "") + event.text
            notify(protocol.chat_event(chat_id, event))

        model = ""
        try:
            # One server for the whole turn (tool steps too), even if settings change meanwhile.
            async with session.use(cached=True) as provider:
                model = await session.model("chat")
                context_tokens = await session.context_length(model)
                text = await with_file_context(
                    ls, message, context.get("uri"), context.get("range"), context_tokens
                )
                generation = session.request_settings("chat", effort=chosen)
                settings = session.settings
                conversation = ls.chats.open(chat_id, settings.chat.system_prompt)
                logger.debug("chat %s: ~%d tokens of message", chat_id, estimate_tokens(text))
                tools = ls.tool_loop(chat_id, context_tokens)
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
                        notify(protocol.chat_cancelled_event(chat_id, partial))
                        return protocol.chat_reply(chat_id, partial, cancelled=True)
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
    warnings = list(result.warnings)
    if not result.text.strip() and not warnings:  # the engine usually says why already
        warnings.append("the model returned no answer")
    return protocol.chat_reply(
        chat_id,
        dict(result.channels),
        protocol.chat_metrics(result.metrics),
        text=result.text,
        warning="; ".join(warnings) if warnings else None,
    )


def register(server: KomaLanguageServer) -> None:
    """Register the chat commands."""

    @server.command("koma.chat")
    async def chat(ls: KomaLanguageServer, *args: Any) -> protocol.ChatReply:
        params = first_argument(args)
        return await run_chat(
            ls, params.get("chatId"), params.get("message"), params.get("effort"), params
        )

    @server.command("koma.explain")
    async def explain(ls: KomaLanguageServer, *args: Any) -> protocol.ChatReply:
        params = first_argument(args)
        uri = params.get("uri")
        await ls.engine_loaded()
        try:
            text = await read_document(ls, uri, EXPLAIN_MAX_BYTES)
        except DocumentRefused as err:
            chat_id = params.get("chatId")
            chat_id = chat_id if isinstance(chat_id, str) and chat_id else ls.chats.new_id()
            return error_reply(ls, chat_id, f"koma.explain cannot read the document: {err}")
        assert isinstance(uri, str)
        from koma.engine.chat import selection_lines

        first, last, code = selection_lines(text, parse_range(params.get("range")))
        code = redactor(ls)(code)
        where = f"{display_path(ls, uri)} lines {first + 1}-{last + 1}"
        from koma.engine.actions import explain_prompt

        prompt = explain_prompt(code, language_of(ls, uri), where)
        effort = (await ls.session()).effort("actions")
        return await run_chat(ls, params.get("chatId"), prompt, effort, {})

    @server.command("koma.chat.cancel")
    def cancel(ls: KomaLanguageServer, *args: Any) -> protocol.ChatCancelReply:
        chat_id = first_argument(args).get("chatId")
        return {"cancelled": isinstance(chat_id, str) and ls.state.chat.cancel(chat_id)}

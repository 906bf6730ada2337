"""`textDocument/inlineCompletion`: ghost text while typing.

The handler is thin on purpose — it is on every keystroke. It reads the document the server
already keeps in sync (never the disk), cuts a window of text around the cursor, and hands
plain strings to the engine's `CompletionPipeline`, which owns the cache, the debounce, the
per-document supersession and the model call. The answer is always sent: an empty list when
there is nothing to show, when a newer keystroke superseded the request, when the client sent
`$/cancelRequest`, or when the provider failed.

Typing rhythm is measured from `didChange` (the server fans that notification out to every
feature), so the adaptive debounce sees real keystrokes even when a client asks for
completions less often than it sends edits.

When the client turned tracing on (`trace: "verbose"` in `initialize`, or `$/setTrace`), each
answer comes with a `$/logTrace` whose `verbose` field is a JSON object: request `id`,
`source`, `reason`, `route`, `adopted`, `tookOver`, `startedCall`, `debounceMs`, `upstreamMs`,
`waitedMs`, `serverMs`. The typing-replay benchmark uses it to tell the server's own overhead
from the model's time.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

from lsprotocol import types

from koma.lsp import exposure, protocol

# The completion engine is imported on first use, not before the `initialize` reply.
if TYPE_CHECKING:
    from koma.engine.completion.pipeline import (
        CompletionInput,
        CompletionPipeline,
        CompletionResult,
        ModelTarget,
    )
    from koma.engine.completion.ring import ContextRing
    from koma.lsp.server import KomaLanguageServer
    from koma.settings import KomaSettings

MAX_CHUNK_CHARS = 4000
MAX_NEIGHBOURS = 8


def pipeline_for(server: KomaLanguageServer) -> CompletionPipeline:
    """The completion pipeline of a server (created on first use), e.g. for `koma.clearCache`."""
    state = server.state.completion
    if state.pipeline is None:
        state.pipeline = _make_pipeline(server)
    return state.pipeline


def _make_pipeline(server: KomaLanguageServer) -> CompletionPipeline:
    from koma.engine.completion.pipeline import CompletionPipeline, ModelTarget

    async def target() -> ModelTarget:
        session = await server.session()
        provider = await session.provider()
        model = await session.model("completion")
        settings = session.request_settings("completion")
        return ModelTarget(
            provider,
            model,
            effort=session.effort("completion"),
            keep_alive=settings.keep_alive,
            num_ctx=settings.num_ctx,
        )

    return CompletionPipeline(
        target, lambda: server.settings.completion, tracker=server.status.generation
    )


def _completion_key(settings: KomaSettings) -> tuple[object, ...]:
    """The settings whose change makes cached suggestions stale."""
    return (
        settings.provider,
        settings.base_url,
        settings.model,
        settings.completion_model,
        settings.completion,
        settings.reasoning_effort.completion,
    )


def build_input(
    ls: KomaLanguageServer, uri: str, position: types.Position, invoked: bool
) -> CompletionInput | None:
    """The text around the cursor as plain data; None for documents or positions we can't use."""
    from koma.engine.completion.prompt import Neighbour
    from koma.engine.completion.request import CompletionInput
    from koma.engine.tokens import completion_read_chars

    documents = ls.workspace.text_documents
    doc = documents.get(uri)
    if doc is None:
        return None  # not open: never read the disk on the keystroke path
    source = doc.source
    if position.line < 0 or position.character < 0 or position.line > source.count("\n"):
        return None
    if "\x00" in source[:8192]:
        return None  # binary content
    if exposure.completion_refusal(ls, uri) is not None:
        return None  # a secret file (`.env`, a key): never sent keystroke by keystroke
    offset = min(doc.offset_at_position(position), len(source))
    completion = ls.settings.completion
    before, after = completion_read_chars(completion.prefix_tokens, completion.suffix_tokens)
    start = max(0, offset - before)
    neighbours: list[Neighbour] = []
    if completion.open_documents_context:
        # Only open files the jail allows (workspace, no `.git/`, no secret patterns), redacted.
        for other_uri, text in exposure.completion_neighbours(ls, uri, documents, MAX_NEIGHBOURS):
            neighbours.append(Neighbour(other_uri, text))
    redact = exposure.cached_redactor(ls)
    prefix, suffix = redact(source[start:offset]), redact(source[offset : offset + after])
    return CompletionInput(
        uri=uri,
        prefix=prefix,
        suffix=suffix,
        # The cursor stays at prefix_offset + len(prefix) when a secret was cut from the prefix.
        prefix_offset=offset - len(prefix),
        language_id=doc.language_id or "python",
        path=doc.path.rsplit("/", 1)[-1] if doc.path else "",
        invoked=invoked,
        neighbours=tuple(neighbours),
    )


def result_range(
    ls: KomaLanguageServer, uri: str, position: types.Position, result: CompletionResult
) -> types.Range:
    """From the cursor, extended over the auto-closed characters the suggestion replaces."""
    end = position
    doc = ls.workspace.text_documents.get(uri) if result.replace_chars else None
    # The document may have changed (even lost lines) while the model was answering.
    lines = doc.source.split("\n", position.line + 1) if doc is not None else []
    if doc is not None and position.line < len(lines):
        line = lines[position.line]
        cursor = doc.offset_at_position(position) - doc.offset_at_position(
            types.Position(position.line, 0)
        )
        replaced = line[cursor : cursor + result.replace_chars]
        units = doc.position_codec.client_num_units(replaced)
        end = types.Position(position.line, position.character + units)
    return types.Range(start=position, end=end)


def trace(ls: KomaLanguageServer, result: CompletionResult, started: float) -> None:
    """Report the request's timings with `$/logTrace` when the client asked for verbose traces.

    Sent two loop turns later, so the answer itself goes out first.
    """
    if ls.protocol.trace != types.TraceValue.Verbose:
        return
    server_ms = (time.perf_counter() - started) * 1000.0
    detail = protocol.inline_completion_trace(ls.protocol.msg_id, result, server_ms)
    params = types.LogTraceParams(
        message=protocol.INLINE_COMPLETION_TRACE, verbose=json.dumps(detail)
    )
    loop = asyncio.get_running_loop()
    loop.call_soon(loop.call_soon, ls.log_trace, params)


async def serve(
    ls: KomaLanguageServer, uri: str, position: types.Position, invoked: bool
) -> tuple[CompletionResult, types.Range | None]:
    """Run one request through the pipeline; shared with the `textDocument/completion` fallback."""
    from koma.engine.completion.request import CompletionResult

    started = time.perf_counter()
    request = build_input(ls, uri, position, invoked)
    if request is None:
        result = CompletionResult(None, reason="skipped")
    else:
        result = await pipeline_for(ls).complete(request)
    trace(ls, result, started)
    if result.text is None:
        return result, None
    return result, result_range(ls, uri, position, result)


def _ring(ls: KomaLanguageServer, pipeline: CompletionPipeline) -> ContextRing:
    """The pipeline's context ring, told the secret patterns in force; a change it records
    (after the handler returns) may warm the server's prompt cache once the user is idle."""
    pipeline.ring.secret_patterns = ls.settings.tools.secret_patterns
    asyncio.get_running_loop().call_soon(pipeline.ring_changed)
    return pipeline.ring


def register(server: KomaLanguageServer) -> None:
    """Attach inline completion and the document listeners it learns typing speed from."""
    # The pipeline is made on first use (the first edit or request), after `initialize`.
    state = server.state.completion

    def on_settings(settings: KomaSettings) -> None:
        key = _completion_key(settings)
        if key != state.settings_key:
            state.settings_key = key
            if state.pipeline is not None:
                state.pipeline.reconfigure()

    def clear_cache() -> int:
        return state.pipeline.clear_cache() if state.pipeline is not None else 0

    server.on_settings_changed(on_settings)
    server.on_clear_cache(clear_cache)  # `koma.clearCache` empties suggestions too

    @server.feature(types.INITIALIZE)
    def on_initialize(ls: KomaLanguageServer, params: types.InitializeParams) -> None:
        # pygls only honours `$/setTrace`; the initial level comes with `initialize`.
        if params.trace is not None:
            ls.protocol.trace = params.trace

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def on_change(ls: KomaLanguageServer, params: types.DidChangeTextDocumentParams) -> None:
        pipeline = pipeline_for(ls)
        uri = params.text_document.uri
        pipeline.note_edit(uri)
        change = params.content_changes[0] if params.content_changes else None
        doc = ls.workspace.text_documents.get(uri)
        if isinstance(change, types.TextDocumentContentChangePartial) and doc is not None:
            text = exposure.ring_text(ls, uri, doc.source)
            if text is not None:
                _ring(ls, pipeline).note_edit(uri, text, change.range.start.line)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def on_open(ls: KomaLanguageServer, params: types.DidOpenTextDocumentParams) -> None:
        item = params.text_document
        text = exposure.ring_text(ls, item.uri, item.text)
        if text is not None:
            _ring(ls, pipeline_for(ls)).note_place(item.uri, text, 0)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def on_save(ls: KomaLanguageServer, params: types.DidSaveTextDocumentParams) -> None:
        doc = ls.workspace.text_documents.get(params.text_document.uri)
        text = exposure.ring_text(ls, doc.uri, doc.source) if doc is not None else None
        if doc is not None and text is not None:
            _ring(ls, pipeline_for(ls)).note_place(doc.uri, text)

    @server.feature(protocol.CONTEXT_CHUNK)
    def on_context_chunk(ls: KomaLanguageServer, params: object) -> None:
        """`koma/contextChunk` {uri?, text}: text the user yanked or copied (protocol.md)."""
        text = getattr(params, "text", None)
        uri = getattr(params, "uri", None)
        if not isinstance(text, str) or not text.strip():
            return
        from koma.engine.completion.ring import short_name

        uri = uri if isinstance(uri, str) else ""
        name = short_name(uri) if uri else "clipboard"
        kept = exposure.ring_text(ls, uri, text[:MAX_CHUNK_CHARS], chosen_by_user=True)
        if kept is not None:
            _ring(ls, pipeline_for(ls)).add(name, kept, uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def on_close(ls: KomaLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
        pipeline = ls.state.completion.pipeline
        if pipeline is not None:
            pipeline.forget(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: KomaLanguageServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        invoked = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
        result, span = await serve(ls, params.text_document.uri, params.position, invoked)
        if result.text is None or span is None:
            return types.InlineCompletionList(items=[])
        return types.InlineCompletionList(
            items=[types.InlineCompletionItem(insert_text=result.text, range=span)]
        )

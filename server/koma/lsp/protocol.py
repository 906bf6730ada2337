"""The shapes of Koma's own messages on the wire, and the functions that build them.

docs/protocol.md is the contract and `clients/vscode/src/protocol.ts` the client's copy of it;
this module is the server's, named to match (`ChatEvent`, `ChatReply`, `StatusPayload`,
`ModelEntry`, `ModelsReply`, …). Every `koma/*` notification and every command reply is built
here, so a field is spelled once and a change to the contract is a change to one file (and its
TypeScript twin). The shapes are `TypedDict`s that exist for the type checker only, as
protocol.ts is types only: on the wire and at run time they are the plain JSON objects they
always were, so building them costs nothing on the keystroke path, and importing this module
costs the `initialize` reply nothing either (no classes to make, no engine imported until a
builder is called).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, cast

if TYPE_CHECKING:
    from typing import NotRequired, TypedDict

    from lsprotocol import types

    from koma.engine.chat import TurnEvent
    from koma.engine.completion.request import CompletionResult
    from koma.engine.completion.routes import RouteChoice
    from koma.trust import ProjectConfig
    from koma.types import Channel, Metrics, ModelInfo

# Server -> client notifications, and the client -> server one (protocol.md).
CHAT_EVENT = "koma/chat/event"
STATUS = "koma/status"
UNTRUSTED_CONFIG = "koma/untrustedConfig"
CONTEXT_CHUNK = "koma/contextChunk"
# The `message` of the `$/logTrace` that reports an inline completion's timings.
INLINE_COMPLETION_TRACE = "koma/inlineCompletion"

ServerState = Literal["idle", "loading", "generating", "error"]
ChatEventType = Literal[
    "channelStart", "delta", "channelEnd", "toolCall", "toolResult", "done", "error"
]


# The shapes, for the type checker only: on the wire (and at run time) they are plain dicts, and
# defining some thirty TypedDict classes would cost the `initialize` reply milliseconds.
if TYPE_CHECKING:

    class ChatMetrics(TypedDict, total=False):
        ttftMs: int
        tokensPerSecond: float
        totalMs: int

    class ToolCallInfo(TypedDict):
        id: str | None
        name: str
        arguments: Any

    class ToolResultInfo(TypedDict):
        id: str | None
        name: str
        ok: bool
        content: str

    class ChatResultPayload(TypedDict):
        text: str
        channels: dict[str, str]

    class ChatEvent(TypedDict):
        """`koma/chat/event` params."""

        chatId: str
        type: ChatEventType
        channel: NotRequired[Channel]
        text: NotRequired[str]
        tool: NotRequired[ToolCallInfo | ToolResultInfo]
        result: NotRequired[ChatResultPayload]
        metrics: NotRequired[ChatMetrics]
        message: NotRequired[str]
        # On `done`: the turn was stopped by `koma.chat.cancel`; `result` holds the partial answer.
        cancelled: NotRequired[bool]

    class ChatReply(TypedDict):
        """`koma.chat` / `koma.explain` reply."""

        chatId: str
        text: str
        channels: dict[str, str]
        metrics: ChatMetrics
        error: NotRequired[str]
        cancelled: NotRequired[bool]
        warning: NotRequired[str]

    class ChatCancelReply(TypedDict):
        cancelled: bool

    class StatusPayload(TypedDict):
        """`koma/status` params (also the base of `koma.status`'s answer)."""

        state: ServerState
        model: str | None
        tokensPerSecond: NotRequired[float]
        ttftMs: NotRequired[int]
        message: NotRequired[str]

    class CompletionRoute(TypedDict):
        model: str
        route: str
        why: str
        endpoint: str

    class StatusReply(StatusPayload):
        """`koma.status`: the last `koma/status` plus where the provider is."""

        provider: str
        baseUrl: str | None
        # `ProjectConfig.to_dict()`, the same object `koma doctor --json` shows.
        projectConfig: dict[str, Any] | None
        completionRoute: CompletionRoute | None

    class ModelEntry(TypedDict):
        name: str
        loaded: bool | None
        sizeBytes: int | None
        quantization: str | None
        capabilities: list[str]
        contextLength: int | None

    class CurrentModels(TypedDict):
        model: str | None
        completionModel: str | None

    class ModelsReply(TypedDict):
        """`koma.models`; `error` when the provider could not be asked (`models` is then empty)."""

        models: list[ModelEntry]
        current: CurrentModels
        error: NotRequired[str]

    class SelectModelReply(CurrentModels):
        """`koma.selectModel`: the models in force, and `error` when nothing changed."""

        error: NotRequired[str]

    class ClearCacheReply(TypedDict):
        cleared: int

    class ModelJobReply(TypedDict):
        """`koma.preload`, `koma.unload` and `koma.pull`."""

        ok: bool
        message: str
        cancelled: NotRequired[bool]

    class PullCancelReply(TypedDict):
        cancelled: bool
        models: list[str]

    class UntrustedConfig(TypedDict):
        """`koma/untrustedConfig` params."""

        path: str
        uri: str
        sha256: str | None
        keys: list[str]
        message: str

    class TrustConfigReply(TypedDict):
        """`koma.trustConfig`: `{trusted: true, path, sha256, keys}` or `{trusted: false,
        message}`."""

        trusted: bool
        path: NotRequired[str]
        sha256: NotRequired[str]
        keys: NotRequired[list[str]]
        message: NotRequired[str]

    class WorkspaceTrustReply(TypedDict, total=False):
        """`koma.setWorkspaceTrust`: the trust in force, or `error` for a bad argument."""

        workspaceTrusted: bool
        error: str

    class PositionJson(TypedDict):
        line: int
        character: int

    class RangeJson(TypedDict):
        start: PositionJson
        end: PositionJson

    class ActionData(TypedDict):
        """A listed code action's `data`: what `codeAction/resolve` is to do (it comes back from the
        client, so resolving checks it again)."""

        action: str
        uri: str
        range: RangeJson
        diagnostic: NotRequired[str]

    class InlineCompletionTrace(TypedDict):
        """The `verbose` JSON of the `$/logTrace` sent after an inline completion."""

        id: object
        source: str
        reason: str
        route: str | None
        adopted: bool
        tookOver: bool
        startedCall: bool
        debounceMs: float
        upstreamMs: float
        waitedMs: float
        serverMs: float


# -- chat ------------------------------------------------------------------------------------


def chat_metrics(metrics: Metrics | None) -> ChatMetrics:
    """Whole milliseconds and tokens/s to one decimal; unknown values are left out."""
    out: ChatMetrics = {}
    if metrics is None:
        return out
    if metrics.ttft_ms is not None:
        out["ttftMs"] = round(metrics.ttft_ms)
    if metrics.tokens_per_second is not None:
        out["tokensPerSecond"] = round(metrics.tokens_per_second, 1)
    if metrics.total_ms is not None:
        out["totalMs"] = round(metrics.total_ms)
    return out


def chat_event(chat_id: str, event: TurnEvent) -> ChatEvent:
    """The notification for one event of a running turn."""
    from koma.engine.chat import ToolResultEvent
    from koma.types import ChannelEnd, ChannelStart, TextDelta, ToolCallEvent

    if isinstance(event, ChannelStart):
        return {"chatId": chat_id, "type": "channelStart", "channel": event.channel}
    if isinstance(event, TextDelta):
        return {"chatId": chat_id, "type": "delta", "channel": event.channel, "text": event.text}
    if isinstance(event, ChannelEnd):
        return {"chatId": chat_id, "type": "channelEnd", "channel": event.channel}
    if isinstance(event, ToolCallEvent):
        call = event.call
        tool: ToolCallInfo = {"id": call.id, "name": call.name, "arguments": call.arguments}
        return {"chatId": chat_id, "type": "toolCall", "tool": tool}
    if isinstance(event, ToolResultEvent):
        call, outcome = event.call, event.outcome
        info: ToolResultInfo = {
            "id": call.id,
            "name": call.name,
            "ok": outcome.ok,
            "content": outcome.content,
        }
        return {"chatId": chat_id, "type": "toolResult", "tool": info}
    result = event.result
    return {
        "chatId": chat_id,
        "type": "done",
        "result": {"text": result.text, "channels": dict(result.channels)},
        "metrics": chat_metrics(result.metrics),
    }


def chat_error_event(chat_id: str, message: str) -> ChatEvent:
    """The `error` event that ends a failed turn."""
    return {"chatId": chat_id, "type": "error", "message": message}


def chat_cancelled_event(chat_id: str, partial: dict[str, str]) -> ChatEvent:
    """The `done` event of a cancelled turn: what streamed before it was stopped."""
    return {
        "chatId": chat_id,
        "type": "done",
        "cancelled": True,
        "result": {"text": partial.get("final", ""), "channels": partial},
        "metrics": {},
    }


def chat_reply(
    chat_id: str,
    channels: dict[str, str],
    metrics: ChatMetrics | None = None,
    *,
    text: str | None = None,
    error: str | None = None,
    cancelled: bool = False,
    warning: str | None = None,
) -> ChatReply:
    """A turn's reply; `text` defaults to the final channel (what streamed of it)."""
    reply: ChatReply = {
        "chatId": chat_id,
        "text": channels.get("final", "") if text is None else text,
        "channels": channels,
        "metrics": metrics if metrics is not None else {},
    }
    if error is not None:
        reply["error"] = error
    if cancelled:
        reply["cancelled"] = True
    if warning is not None:
        reply["warning"] = warning
    return reply


# -- status and models -----------------------------------------------------------------------


def status_payload(
    state: ServerState,
    model: str | None = None,
    tokens_per_second: float | None = None,
    ttft_ms: float | None = None,
    message: str | None = None,
) -> StatusPayload:
    """Fields left `None` are omitted, except `model`, which is always there."""
    payload: StatusPayload = {"state": state, "model": model}
    if tokens_per_second is not None:
        payload["tokensPerSecond"] = round(tokens_per_second, 1)
    if ttft_ms is not None:
        payload["ttftMs"] = round(ttft_ms)
    if message:
        payload["message"] = message
    return payload


def completion_route(model: str, choice: RouteChoice) -> CompletionRoute:
    """The route inline completion took for `model`, and why (`koma.status`)."""
    return cast("CompletionRoute", {"model": model, **choice.to_dict()})


def model_entry(model: ModelInfo) -> ModelEntry:
    return {
        "name": model.name,
        "loaded": model.loaded,
        "sizeBytes": model.size_bytes,
        "quantization": model.quantization,
        "capabilities": list(model.capabilities),
        "contextLength": model.context_length,
    }


# -- trust -----------------------------------------------------------------------------------


def untrusted_config(project: ProjectConfig, message: str) -> UntrustedConfig:
    return {
        "path": str(project.path),
        "uri": project.path.as_uri(),
        "sha256": project.sha256,
        "keys": list(project.ignored),
        "message": message,
    }


# -- code actions and inline completion ------------------------------------------------------


def range_json(r: types.Range) -> RangeJson:
    start, end = r.start, r.end
    return {
        "start": {"line": start.line, "character": start.character},
        "end": {"line": end.line, "character": end.character},
    }


def action_data(action: str, uri: str, r: types.Range, diagnostic: str | None = None) -> ActionData:
    data: ActionData = {"action": action, "uri": uri, "range": range_json(r)}
    if diagnostic is not None:
        data["diagnostic"] = diagnostic
    return data


def inline_completion_trace(
    request_id: object, result: CompletionResult, server_ms: float
) -> InlineCompletionTrace:
    return {
        "id": request_id,
        "source": result.source,
        "reason": result.reason,
        "route": result.route,
        "adopted": result.adopted,
        "tookOver": result.took_over,
        "startedCall": result.started_call,
        "debounceMs": round(result.debounce_ms, 3),
        "upstreamMs": round(result.upstream_ms, 3),
        "waitedMs": round(result.waited_ms, 3),
        "serverMs": round(server_ms, 3),
    }

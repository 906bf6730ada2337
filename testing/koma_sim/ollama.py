"""Ollama's native API (`/api/*`): NDJSON streaming chat/generate plus model management.

Shapes follow Ollama's docs/api.md and api/types.go; durations are nanoseconds computed from
the simulated timing so tokens/s checks are meaningful.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from koma_sim.playback import finish_time, play
from koma_sim.script import (
    Reply,
    SimModel,
    count_tokens,
    last_user_text,
    prompt_text,
    render_messages,
)
from koma_sim.store import KeepAliveError, parse_keep_alive
from koma_sim.transport import Exchange, Route

if TYPE_CHECKING:
    from koma_sim.simulator import Simulator

NDJSON = "application/x-ndjson"


def now_iso() -> str:
    """Ollama's `created_at` (RFC 3339, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def line(ex: Exchange, obj: dict[str, Any]) -> None:
    """One NDJSON line of a streamed response."""
    ex.stream((json.dumps(obj, separators=(",", ":")) + "\n").encode(), NDJSON)


def details(model: SimModel) -> dict[str, Any]:
    """The `details` object of tags/ps/show."""
    return {
        "parent_model": "",
        "format": model.format,
        "family": model.family,
        "families": [model.family],
        "parameter_size": model.parameter_size,
        "quantization_level": model.quantization,
    }


def body_dict(ex: Exchange) -> dict[str, Any] | None:
    """The JSON object body, or None after answering 400."""
    if ex.body is None:
        ex.sim.send_error(ex, 400, "missing request body")
        return None
    if not isinstance(ex.body, dict):
        ex.sim.send_error(ex, 400, "invalid request: body must be a JSON object")
        return None
    return ex.body


def require_model(ex: Exchange, body: dict[str, Any]) -> SimModel | None:
    """The installed model named by `model` (or legacy `name`), or None after 400/404."""
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name:
        ex.sim.send_error(ex, 400, "model is required")
        return None
    model = ex.sim.store.find(name)
    if model is None:
        ex.sim.send_error(ex, 404, f'model "{name}" not found, try pulling it first')
    return model


def _stop_words(value: Any) -> list[str]:
    """`stop` as the servers take it: one string or a list of strings."""
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _int_option(options: Any, key: str) -> int | None:
    value = options.get(key) if isinstance(options, dict) else None
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _capability_error(model: SimModel, body: dict[str, Any], endpoint: str) -> str | None:
    caps = model.capabilities
    if "completion" not in caps:
        return f'"{model.name}" does not support {endpoint}'
    if endpoint == "chat" and body.get("tools") and "tools" not in caps:
        return f'"{model.name}" does not support tools'
    if endpoint == "generate" and body.get("suffix") and "insert" not in caps:
        return f'"{model.name}" does not support insert'
    think = body.get("think")
    if think not in (None, False) and "thinking" not in caps:
        return f'"{model.name}" does not support thinking'
    return None


def _tool_calls(reply_calls: list[dict[str, Any]], args_of: Any) -> list[dict[str, Any]]:
    out = []
    for index, call in enumerate(reply_calls):
        item: dict[str, Any] = {
            "function": {"index": index, "name": call["name"], "arguments": args_of(call)}
        }
        if call.get("id"):
            item["id"] = call["id"]
        out.append(item)
    return out


def _run(ex: Exchange, endpoint: str) -> None:
    """Shared body of /api/chat and /api/generate."""
    sim = ex.sim
    body = body_dict(ex)
    if body is None:
        return
    model = require_model(ex, body)
    if model is None:
        return
    try:
        keep_alive = parse_keep_alive(body.get("keep_alive"))
    except KeepAliveError as exc:
        sim.send_error(ex, 400, str(exc))
        return
    options = body.get("options")
    num_ctx = _int_option(options, "num_ctx")
    chat = endpoint == "chat"
    if chat:
        messages = body.get("messages")
        if messages is not None and not isinstance(messages, list):
            sim.send_error(ex, 400, "messages must be an array")
            return
        empty = not messages
    else:
        empty = not body.get("prompt") and not body.get("suffix")
    if empty:
        _load_or_unload(ex, model, keep_alive, num_ctx, chat)
        return
    problem = _capability_error(model, body, endpoint)
    if problem:
        sim.send_error(ex, 400, problem)
        return
    if chat:
        text = last_user_text(body.get("messages"))
        rendered = render_messages(body.get("messages"), body.get("tools"))
    else:
        text = prompt_text(body.get("prompt"))
        rendered = f"{body.get('system') or ''}{text}{body.get('suffix') or ''}"
    reply = sim.pick_reply(endpoint, model.name, text)
    ex.record.reply = reply
    failure = reply.http_error()
    if failure:
        sim.send_error(ex, *failure)
        return
    fresh = sim.store.acquire(model, keep_alive, num_ctx)
    try:
        entry = sim.store.loaded_entry(model.name)
        ctx = entry.num_ctx if entry else model.num_ctx
        prompt_tokens = reply.prompt_eval_count
        if prompt_tokens is None:
            prompt_tokens = min(count_tokens(rendered), ctx)
        think = body.get("think")
        # gpt-oss ignores think=false (its trace cannot be turned off); others honour it. A raw
        # prompt skips the template, so nothing opens a reasoning section: plain continuation.
        with_thinking = (think is not False or model.family == "gptoss") and body.get(
            "raw"
        ) is not True
        _respond(ex, model, reply, endpoint, body, fresh, prompt_tokens, with_thinking)
    finally:
        sim.store.release(model)


def _respond(
    ex: Exchange,
    model: SimModel,
    reply: Reply,
    endpoint: str,
    body: dict[str, Any],
    fresh: bool,
    prompt_tokens: int,
    with_thinking: bool,
) -> None:
    chat = endpoint == "chat"
    stream = body.get("stream", True) is not False
    name = body.get("model") or model.name
    text_key = "content" if chat else "response"

    def chunk(payload: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"model": name, "created_at": now_iso()}
        if chat:
            out["message"] = {"role": "assistant", "content": payload.pop("content", "")}
            out["message"].update(payload.pop("message", {}))
        out.update(payload)
        return out

    def emit(kind: str, text: str) -> None:
        if not stream:
            return
        if chat:
            fields = {"message": {"thinking": text}} if kind == "thinking" else {"content": text}
            line(ex, chunk({**fields, "done": False}))
        else:
            key = "thinking" if kind == "thinking" else "response"
            line(ex, chunk({"response": "", key: text, "done": False}))

    options = body.get("options")
    result = play(
        ex,
        reply,
        emit,
        load_s=model.load_ms / 1000.0 if fresh else 0.0,
        limit=_int_option(body.get("options"), "num_predict"),
        with_thinking=with_thinking,
        stop=_stop_words(options.get("stop") if isinstance(options, dict) else None),
    )
    if result.finish == "error":
        error_text = reply.error or "an error was encountered while running the model"
        if stream:
            line(ex, {"error": error_text})
        else:
            ex.sim.send_error(ex, reply.status if reply.status >= 400 else 500, error_text)
        return
    calls = _tool_calls(result.tool_calls, reply.arguments_of) if chat else []
    if calls and stream:
        line(ex, chunk({"message": {"tool_calls": calls}, "done": False}))
    finish_time(result)
    done_reason = "stop" if result.finish == "tool_calls" else result.finish
    final: dict[str, Any] = {"done": True, "done_reason": done_reason}
    final.update(result.ollama_durations(prompt_tokens))
    if stream:
        line(ex, chunk({text_key: "", **final}) if not chat else chunk(final))
        return
    if chat:
        message: dict[str, Any] = {"content": result.content}
        if result.thinking:
            message["thinking"] = result.thinking
        if calls:
            message["tool_calls"] = calls
        ex.send_json(200, chunk({"message": message, **final}))
    else:
        extra = {"thinking": result.thinking} if result.thinking else {}
        ex.send_json(200, chunk({"response": result.content, **extra, **final}))


def _load_or_unload(
    ex: Exchange, model: SimModel, keep_alive: float | None, num_ctx: int | None, chat: bool
) -> None:
    """`{"model": m}` loads; with `"keep_alive": 0` it unloads (done_reason says which)."""
    store = ex.sim.store
    if keep_alive == 0:
        store.unload(model.name)
        reason = "unload"
    else:
        if store.loaded_entry(model.name) is None:
            ex.wait(model.load_ms / 1000.0)
        store.load(model, keep_alive, num_ctx)
        reason = "load"
    out: dict[str, Any] = {"model": model.name, "created_at": now_iso()}
    if chat:
        out["message"] = {"role": "assistant", "content": ""}
    else:
        out["response"] = ""
    out.update({"done": True, "done_reason": reason})
    ex.send_json(200, out)


def chat(ex: Exchange) -> None:
    """POST /api/chat."""
    _run(ex, "chat")


def generate(ex: Exchange) -> None:
    """POST /api/generate."""
    _run(ex, "generate")


def tags(ex: Exchange) -> None:
    """GET /api/tags: installed models."""
    models = [
        {
            "name": m.name,
            "model": m.name,
            "modified_at": m.modified_at,
            "size": m.size,
            "digest": m.digest,
            "details": details(m),
        }
        for m in ex.sim.store.installed()
    ]
    ex.send_json(200, {"models": models})


def ps(ex: Exchange) -> None:
    """GET /api/ps: loaded models with expiry and context size."""
    models = [
        {
            "name": e.model.name,
            "model": e.model.name,
            "size": e.model.size,
            "digest": e.model.digest,
            "details": details(e.model),
            "expires_at": e.expires_at(),
            "size_vram": e.model.size,
            "context_length": e.num_ctx,
        }
        for e in ex.sim.store.loaded()
    ]
    ex.send_json(200, {"models": models})


def show(ex: Exchange) -> None:
    """POST /api/show: capabilities, details, model_info, parameters, template."""
    body = body_dict(ex)
    if body is None:
        return
    model = require_model(ex, body)
    if model is None:
        return
    out: dict[str, Any] = {
        "license": "",
        "modelfile": model.modelfile(),
        "parameters": model.parameters_text(),
        "template": model.template,
        "details": details(model),
        "model_info": model.full_model_info(),
        "capabilities": list(model.capabilities),
        "modified_at": model.modified_at,
    }
    if model.system:
        out["system"] = model.system
    ex.send_json(200, out)


def version(ex: Exchange) -> None:
    """GET /api/version."""
    ex.send_json(200, {"version": ex.sim.version})


def root(ex: Exchange) -> None:
    """GET / — Ollama's liveness text."""
    ex.send_bytes(200, b"Ollama is running", "text/plain; charset=utf-8")


def routes(sim: Simulator) -> dict[tuple[str, str], tuple[str, Route]]:
    """Ollama native endpoints."""
    from koma_sim import manage  # manage builds on this module's helpers

    return {
        ("GET", "/"): ("root", root),
        ("POST", "/api/chat"): ("chat", chat),
        ("POST", "/api/generate"): ("generate", generate),
        ("GET", "/api/tags"): ("tags", tags),
        ("GET", "/api/ps"): ("ps", ps),
        ("POST", "/api/show"): ("show", show),
        ("POST", "/api/pull"): ("pull", manage.pull),
        ("POST", "/api/create"): ("create", manage.create),
        ("DELETE", "/api/delete"): ("delete", manage.delete),
        ("GET", "/api/version"): ("version", version),
    }

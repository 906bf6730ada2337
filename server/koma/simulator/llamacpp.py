"""llama.cpp server extras (`/health`, `/props`, `/infill`) and vLLM's `/health`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from koma.simulator.openai import sse
from koma.simulator.playback import finish_time, play
from koma.simulator.transport import Exchange, Route

if TYPE_CHECKING:
    from koma.simulator.simulator import Simulator


def health(ex: Exchange) -> None:
    """GET /health: llama.cpp answers JSON, vLLM an empty 200."""
    if ex.sim.flavor == "vllm":
        ex.send_bytes(200, b"", "application/json")
    else:
        ex.send_json(200, {"status": "ok"})


def props(ex: Exchange) -> None:
    """GET /props: the served model, its context size and chat template."""
    installed = ex.sim.store.installed()
    model = installed[0] if installed else None
    n_ctx = model.num_ctx if model else 0
    ex.send_json(
        200,
        {
            "default_generation_settings": {
                "n_ctx": n_ctx,
                "params": {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "n_predict": -1},
            },
            "total_slots": 1,
            "model_path": f"/models/{model.name}.gguf" if model else "",
            "chat_template": model.template if model else "",
            "modalities": {"vision": False, "audio": False},
            "build_info": "b6000-simulated",
        },
    )


def infill(ex: Exchange) -> None:
    """POST /infill: FIM with `input_prefix` / `input_suffix`; streams `content` events."""
    sim = ex.sim
    body = ex.body
    if not isinstance(body, dict):
        sim.send_error(ex, 400, "request body must be a JSON object")
        return
    installed = sim.store.installed()
    model = installed[0] if installed else None
    if model is None or "insert" not in model.capabilities:
        sim.send_error(ex, 501, "Infill is not supported by this model: prefix token is missing.")
        return
    prefix = body.get("input_prefix") if isinstance(body.get("input_prefix"), str) else ""
    reply = sim.pick_reply("infill", model.name, prefix or "")
    ex.record.reply = reply
    failure = reply.http_error()
    if failure:
        sim.send_error(ex, *failure)
        return
    stream = body.get("stream") is True
    limit = body.get("n_predict") if isinstance(body.get("n_predict"), int) else None

    def emit(kind: str, text: str) -> None:
        if stream:
            sse(ex, {"content": text, "stop": False})

    fresh = sim.store.acquire(model, None)
    try:
        result = play(
            ex,
            reply,
            emit,
            load_s=model.load_ms / 1000.0 if fresh else 0.0,
            limit=limit if limit is not None and limit >= 0 else None,
            with_thinking=False,
        )
    finally:
        sim.store.release(model)
    finish_time(result)
    if result.finish == "error":
        from koma.simulator.simulator import openai_error

        error = openai_error(sim.flavor, 500, reply.error or "internal error")
        if stream:
            sse(ex, {"error": error})
        else:
            ex.send_json(500, {"error": error})
        return
    final: dict[str, Any] = {
        "content": "" if stream else result.content,
        "stop": True,
        "stop_type": "limit" if result.finish == "length" else "eos",
        "tokens_predicted": result.count,
        "model": model.name,
    }
    if stream:
        sse(ex, final)
    else:
        ex.send_json(200, final)


def routes(sim: Simulator) -> dict[tuple[str, str], tuple[str, Route]]:
    """llama.cpp (or vLLM) extras."""
    table: dict[tuple[str, str], tuple[str, Route]] = {("GET", "/health"): ("health", health)}
    if sim.flavor == "llamacpp":
        table[("GET", "/props")] = ("props", props)
        table[("POST", "/infill")] = ("infill", infill)
    return table

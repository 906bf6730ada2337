"""llama.cpp server extras (`/health`, `/props`, `/infill`) and vLLM's `/health`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from koma_sim.oai_meta import timings
from koma_sim.openai import _cache_tokens, _stop_words, sse
from koma_sim.playback import finish_time, play
from koma_sim.script import count_tokens
from koma_sim.transport import Exchange, Route

if TYPE_CHECKING:
    from koma_sim.simulator import Simulator


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


def _extra_problem(extra: Any) -> str | None:
    """llama-server's check of `input_extra`: an array of {"filename"?: str, "text": str}."""
    if extra is None:
        return None
    message = '"input_extra" must be an array of {"filename": string, "text": string}'
    if not isinstance(extra, list):
        return message
    for chunk in extra:
        if not isinstance(chunk, dict) or not isinstance(chunk.get("text", ""), str):
            return message
        if not isinstance(chunk.get("filename", ""), str):
            return message
    return None


def _rendered(body: dict[str, Any]) -> str:
    """The prompt llama-server builds for /infill: extra chunks, prefix + `prompt`, suffix.

    (tools/server: `format_infill` puts the `input_extra` chunks first, each after a file
    separator, then FIM_PRE, `input_prefix` followed by the `prompt` text, FIM_SUF, the
    suffix, and FIM_MID.)
    """
    parts = []
    for chunk in body.get("input_extra") or []:
        parts.append(f"<|file_sep|>{chunk.get('filename', '')}\n{chunk.get('text', '')}")
    parts.append(f"<|fim_prefix|>{_text(body.get('input_prefix'))}{_text(body.get('prompt'))}")
    parts.append(f"<|fim_suffix|>{_text(body.get('input_suffix'))}<|fim_middle|>")
    return "".join(parts)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def infill(ex: Exchange) -> None:
    """POST /infill: FIM from `input_prefix` / `input_suffix` (+ `input_extra`, `prompt`).

    As llama-server documents it: a model without FIM tokens gets 501; `n_predict: 0` evaluates
    the prompt only (a cache warm-up); the stream is `data:` events of `content` ending with one
    holding `stop: true`, `tokens_cached`, `tokens_evaluated` and `timings`; no `[DONE]`.
    """
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
    problem = _extra_problem(body.get("input_extra"))
    if problem:
        sim.send_error(ex, 400, problem)
        return
    rendered = _rendered(body)
    cache_n = _cache_tokens(sim, rendered, body)
    prompt_tokens = max(count_tokens(rendered), cache_n)
    prefix = _text(body.get("input_prefix")) + _text(body.get("prompt"))
    reply = sim.pick_reply("infill", model.name, prefix)
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
            stop=_stop_words(body.get("stop")),
        )
    finally:
        sim.store.release(model)
    finish_time(result)
    if result.finish == "error":
        from koma_sim.simulator import openai_error

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
        "tokens_evaluated": prompt_tokens,
        "tokens_cached": cache_n,
        "timings": timings(result, prompt_tokens, cache_n),
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

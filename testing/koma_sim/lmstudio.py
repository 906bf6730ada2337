"""LM Studio's native REST API (`/api/v0/*`, `/api/v1/models/load|unload`) and its quirks."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from koma_sim.openai import native_chat_completions
from koma_sim.script import SimModel
from koma_sim.transport import Exchange, Route

if TYPE_CHECKING:
    from koma_sim.simulator import Simulator


def _entry(sim: Simulator, model: SimModel) -> dict[str, Any]:
    loaded = sim.store.loaded_entry(model.name)
    caps = model.capabilities
    kind = "embeddings" if "embedding" in caps else "vlm" if "vision" in caps else "llm"
    publisher = model.publisher or (model.name.split("/")[0] if "/" in model.name else "local")
    out: dict[str, Any] = {
        "id": model.name,
        "object": "model",
        "type": kind,
        "publisher": publisher,
        "arch": model.arch,
        "compatibility_type": model.format,
        "quantization": model.quantization,
        "state": "loaded" if loaded else "not-loaded",
        "max_context_length": model.context_length,
    }
    if loaded:
        out["loaded_context_length"] = loaded.num_ctx
    if "tools" in caps:
        out["capabilities"] = ["tool_use"]
    return out


def models(ex: Exchange) -> None:
    """GET /api/v0/models: every downloaded model with its loaded state."""
    data = [_entry(ex.sim, m) for m in ex.sim.store.installed()]
    ex.send_json(200, {"object": "list", "data": data})


def _body(ex: Exchange) -> dict[str, Any] | None:
    if not isinstance(ex.body, dict):
        ex.sim.send_error(ex, 400, "request body must be a JSON object")
        return None
    return ex.body


def load(ex: Exchange) -> None:
    """POST /api/v1/models/load {"model", "context_length"?}."""
    body = _body(ex)
    if body is None:
        return
    name = body.get("model")
    model = ex.sim.store.find(name) if isinstance(name, str) else None
    if model is None:
        ex.sim.send_error(ex, 404, f'Model "{name}" not found', "model_not_found")
        return
    ctx = body.get("context_length")
    num_ctx = ctx if isinstance(ctx, int) and not isinstance(ctx, bool) and ctx > 0 else None
    if num_ctx is not None and num_ctx > model.context_length:
        message = f"context_length {num_ctx} exceeds the model maximum {model.context_length}"
        ex.sim.send_error(ex, 400, message)
        return
    started = time.perf_counter()
    if ex.sim.store.loaded_entry(model.name) is None:
        ex.wait(model.load_ms / 1000.0)
    ttl = body.get("ttl")
    keep = float(ttl) if isinstance(ttl, int | float) and ttl >= 0 else None
    ex.sim.store.load(model, keep, num_ctx)
    ex.send_json(
        200,
        {
            "type": "llm",
            "instance_id": model.name,
            "load_time_seconds": time.perf_counter() - started,
            "status": "loaded",
        },
    )


def unload(ex: Exchange) -> None:
    """POST /api/v1/models/unload {"instance_id"}."""
    body = _body(ex)
    if body is None:
        return
    name = body.get("instance_id") or body.get("model")
    if not isinstance(name, str) or not ex.sim.store.unload(name):
        ex.sim.send_error(ex, 404, f'No loaded model with instance_id "{name}"')
        return
    ex.send_json(200, {"instance_id": name})


def routes(sim: Simulator) -> dict[tuple[str, str], tuple[str, Route]]:
    """LM Studio native endpoints."""
    return {
        ("GET", "/api/v0/models"): ("v0_models", models),
        ("POST", "/api/v0/chat/completions"): ("chat_completions", native_chat_completions),
        ("POST", "/api/v1/models/load"): ("load", load),
        ("POST", "/api/v1/models/unload"): ("unload", unload),
    }


def dynamic_route(sim: Simulator, method: str, path: str) -> tuple[str, Route] | None:
    """GET /api/v0/models/{id} (ids may contain slashes)."""
    prefix = "/api/v0/models/"
    if method != "GET" or not path.startswith(prefix):
        return None
    wanted = path[len(prefix) :]

    def one(ex: Exchange) -> None:
        model = ex.sim.store.find(wanted)
        if model is None:
            ex.send_json(404, {"error": f"Model {wanted} not found"})
        else:
            ex.send_json(200, _entry(ex.sim, model))

    return "v0_model", one

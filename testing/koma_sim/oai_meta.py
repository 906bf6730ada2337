"""Per-flavour metadata of the OpenAI-compatible layer: model lookup and listing, context
overflow messages, llama.cpp `timings` and LM Studio `stats`.
"""

from __future__ import annotations

import time
from typing import Any

from koma_sim.playback import Playback
from koma_sim.script import SimModel
from koma_sim.transport import Exchange


def resolve_model(ex: Exchange, name: Any) -> SimModel | None:
    """The model a /v1 request addresses, or None after a flavour-shaped 400/404.

    llama.cpp serves one model whatever the request names; LM Studio and vLLM fall back to
    their loaded/default model when `model` is omitted; Ollama requires it.
    """
    sim = ex.sim
    store = sim.store
    installed = store.installed()
    if sim.flavor == "llamacpp":
        found = store.find(name) if isinstance(name, str) else None
        if found is None and not installed:
            sim.send_error(ex, 503, "Loading model", None)
            return None
        return found or installed[0]
    if not isinstance(name, str) or not name:
        if sim.flavor == "ollama":
            sim.send_error(ex, 400, "model is required")
            return None
        loaded = store.loaded()
        if loaded:
            return loaded[0].model
        if installed:
            return installed[0]
        sim.send_error(ex, 404, "No models loaded", "model_not_found")
        return None
    found = store.find(name)
    if found is not None:
        return found
    if sim.flavor == "ollama":
        sim.send_error(ex, 404, f'model "{name}" not found, try pulling it first')
    elif sim.flavor == "lmstudio":
        sim.send_error(ex, 404, f'Invalid model identifier "{name}".', "model_not_found")
    else:
        sim.send_error(ex, 404, f"The model `{name}` does not exist.", "model_not_found")
    return None


def overflow_message(flavor: str, tokens: int, ctx: int) -> str:
    """What a server says when the prompt does not fit its context."""
    if flavor == "llamacpp":
        return (
            "the request exceeds the available context size, try increasing it "
            f"(n_prompt_tokens={tokens}, n_ctx={ctx})"
        )
    if flavor == "vllm":
        return (
            f"This model's maximum context length is {ctx} tokens. However, you requested "
            f"{tokens} tokens in the messages. Please reduce the length of the messages."
        )
    return (
        f"The number of tokens to keep from the initial prompt ({tokens}) is greater than "
        f"the context length ({ctx})."
    )


def timings(result: Playback, prompt_tokens: int, cache_n: int) -> dict[str, Any]:
    """llama.cpp's `timings` object."""
    prompt_n = max(prompt_tokens - cache_n, 0)
    prompt_ms = result.prompt_s * 1000.0
    predicted_n = result.completion_tokens
    predicted_ms = result.eval_s * 1000.0
    return {
        "cache_n": cache_n,
        "prompt_n": prompt_n,
        "prompt_ms": prompt_ms,
        "prompt_per_token_ms": prompt_ms / max(prompt_n, 1),
        "prompt_per_second": prompt_n / result.prompt_s,
        "predicted_n": predicted_n,
        "predicted_ms": predicted_ms,
        "predicted_per_token_ms": predicted_ms / max(predicted_n, 1),
        "predicted_per_second": predicted_n / result.eval_s,
    }


def lmstudio_stats(result: Playback, model: SimModel) -> dict[str, Any]:
    """LM Studio /api/v0 `stats`, `model_info` and `runtime` (times in seconds)."""
    stop = {"tool_calls": "toolCalls", "length": "maxPredictedTokensReached"}
    return {
        "stats": {
            "tokens_per_second": result.completion_tokens / result.eval_s,
            "time_to_first_token": result.prompt_s,
            "generation_time": result.eval_s,
            "stop_reason": stop.get(result.finish, "eosFound"),
        },
        "model_info": {
            "arch": model.arch,
            "quant": model.quantization,
            "format": model.format,
            "context_length": model.num_ctx,
        },
        "runtime": {
            "name": "llama.cpp-linux-x86_64-avx2",
            "version": "1.50.0",
            "supported_formats": ["gguf"],
        },
    }


def list_models(ex: Exchange) -> None:
    """GET /v1/models in the flavour's shape."""
    sim = ex.sim
    created = int(time.time())
    data = []
    for model in sim.store.installed():
        item: dict[str, Any] = {"id": model.name, "object": "model", "created": created}
        if sim.flavor == "ollama":
            item["owned_by"] = "library"
        elif sim.flavor == "lmstudio":
            item = {"id": model.name, "object": "model", "owned_by": "organization_owner"}
        elif sim.flavor == "llamacpp":
            item["owned_by"] = "llamacpp"
            item["meta"] = {
                "n_ctx_train": model.context_length,
                "n_embd": model.embedding_length or 0,
                "n_params": model.full_model_info()["general.parameter_count"],
                "size": model.size,
            }
        else:
            item.update(
                {
                    "owned_by": "vllm",
                    "root": model.name,
                    "parent": None,
                    "max_model_len": model.context_length,
                }
            )
        data.append(item)
    ex.send_json(200, {"object": "list", "data": data})

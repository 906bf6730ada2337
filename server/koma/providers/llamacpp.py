"""llama.cpp's own `llama-server`: `/infill`, `/props`, and telling it apart from other servers.

Only llama-server has `POST /infill` (fill-in-the-middle built from the model's FIM tokens, with
`input_extra` chunks of other files ahead of the prefix), `timings` and `tokens_cached` in its
answers. Its OpenAI-compatible `/v1/completions` ignores `suffix`, so FIM on llama-server goes
through `/infill`; a model without FIM tokens is refused there with HTTP 501 ("Infill is not
supported by this model"), which is also how the route is detected: a zero-token `/infill`
either succeeds (and warms the prompt cache) or says why not.

The stream is llama.cpp's native one (tools/server/README.md, `/completion`): `data:` events of
`{"content": …, "stop": false}`, then one with `"stop": true`, `tokens_evaluated` (the prompt's
tokens), `timings` (`cache_n`: how many of them came from the prompt cache) and
`tokens_cached`, and no `[DONE]`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from koma.errors import KomaError, StreamError
from koma.providers.base import CompletionRequest, WireChunk, llama_samplers
from koma.providers.openai_stream import metrics_from_timings
from koma.providers.stream_records import SSE_DONE, iter_sse
from koma.types import Metrics, Usage

if TYPE_CHECKING:
    from koma.providers.openai_compat import OpenAICompatProvider

INFILL_PATH = "/infill"


def infill_body(request: CompletionRequest) -> dict[str, Any]:
    """The `/infill` body: lines above the cursor as `input_prefix`, the cursor line as `prompt`.

    llama-server lays the prompt out as `input_extra` chunks, FIM prefix, `input_prefix` +
    `prompt`, FIM suffix, `input_suffix`, FIM middle: a keystroke changes the prompt from the
    cursor line on, so `cache_prompt` reuses the chunks and the lines above, and the cursor
    line and the suffix window are evaluated again (keep `completion.suffixTokens` small).
    """
    options = request.infill
    cut = request.prompt.rfind("\n") + 1
    body: dict[str, Any] = {
        "input_prefix": request.prompt[:cut],
        "prompt": request.prompt[cut:],
        "input_suffix": request.suffix or "",
        "stream": True,
        "cache_prompt": True if options is None else options.cache_prompt,
    }
    settings = request.settings
    if settings.max_tokens is not None:
        body["n_predict"] = settings.max_tokens
    body.update(llama_samplers(settings))
    if options is not None:
        if options.extra:
            body["input_extra"] = [{"filename": name, "text": text} for name, text in options.extra]
        if options.n_indent is not None:
            body["n_indent"] = options.n_indent
        if options.t_max_predict_ms is not None:
            body["t_max_predict_ms"] = options.t_max_predict_ms
        if options.n_predict is not None:
            body["n_predict"] = options.n_predict
    return body


def _root(provider: OpenAICompatProvider) -> str:
    from koma.providers.openai_compat import server_root

    return server_root(provider.base_url)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _metrics(final: dict[str, Any]) -> Metrics | None:
    timings = final.get("timings")
    if not isinstance(timings, dict):
        return None
    return metrics_from_timings(timings)


async def stream_infill(
    provider: OpenAICompatProvider, request: CompletionRequest
) -> AsyncIterator[WireChunk]:
    """Stream one `/infill` answer as wire chunks; the last carries timings and cache reuse."""
    url = _root(provider) + INFILL_PATH
    body = infill_body(request)
    where = f"llama-server at {_root(provider)}"
    finished = False
    async with provider._open_stream(url, body, request.model) as response:
        async for obj in iter_sse(response, provider.label, request.model):
            if obj is SSE_DONE:
                break
            if not isinstance(obj, dict):
                raise StreamError(f"{where} sent an event that is not a JSON object")
            content = obj.get("content", "")
            if not isinstance(content, str):
                raise StreamError(f"{where} sent a non-text `content`")
            if obj.get("stop") is True:
                finished = True
                predicted = obj.get("tokens_predicted")
                cached = obj.get("tokens_cached")
                stop_type = obj.get("stop_type")
                yield WireChunk(
                    content=content,
                    done=True,
                    finish_reason="length" if stop_type == "limit" else "stop",
                    usage=Usage(
                        prompt_tokens=_int(obj.get("tokens_evaluated")),
                        completion_tokens=_int(predicted),
                        # `timings.cache_n`: prompt tokens reused from the slot's cache
                        # (`tokens_cached` counts the whole cache after generation).
                        cached_tokens=_int(_dict(obj.get("timings")).get("cache_n", cached)),
                    ),
                    metrics=_metrics(obj),
                    raw=obj,
                )
                break
            if content:
                yield WireChunk(content=content)
    if not finished:
        raise StreamError(f"{where} ended the /infill stream before it was done")


async def is_llama_server(provider: OpenAICompatProvider) -> bool:
    """True when `GET /props` answers the way llama-server does (never raises)."""
    try:
        props = await provider._json("GET", _root(provider) + "/props")
    except KomaError:
        return False
    return isinstance(props, dict) and (
        "default_generation_settings" in props or "build_info" in props
    )


async def probe_infill(provider: OpenAICompatProvider, model: str) -> tuple[bool, str]:
    """A zero-token `/infill`: (True, "") when the model has FIM tokens, else (False, why).

    Generating nothing, it costs one prompt evaluation of an empty prompt and leaves the
    server's cache warm; llama-server checks the FIM tokens before anything else.
    """
    body = {"input_prefix": "", "input_suffix": "", "n_predict": 0, "cache_prompt": True}
    try:
        await provider._json("POST", _root(provider) + INFILL_PATH, body, model=model)
    except KomaError as exc:
        return False, exc.message
    return True, ""

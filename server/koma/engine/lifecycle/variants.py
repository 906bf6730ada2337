"""Custom model variants: `koma model create` through `/api/create`'s structured fields.

Local files named by FROM or ADAPTER are uploaded as blobs first (`/api/blobs/sha256:…`, skipped
when the server already has them), then the create request names them by digest. Before
anything is sent, the variant is checked against its base model: a ChatML TEMPLATE on gpt-oss
(whose format is Harmony) would break its reasoning channels and tool calls, so it is reported.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, cast

from koma.engine.lifecycle.modelfile import CreateRequest
from koma.errors import CapabilityMissing, ConfigError, StreamError
from koma.providers.base import Provider

StatusCallback = Callable[[str], "Awaitable[None] | None"]
_CHATML_MARKERS = ("<|im_start|>", "<|im_end|>")


def harmony_warnings(request: CreateRequest, base_architecture: str | None) -> list[str]:
    """Problems of a variant of gpt-oss: a ChatML template or ChatML stop tokens."""
    base = str(request.body.get("from") or "")
    if base_architecture != "gptoss" and "gpt-oss" not in base.lower():
        return []
    found = []
    template = str(request.body.get("template") or "")
    if any(marker in template for marker in _CHATML_MARKERS):
        found.append(
            "TEMPLATE uses ChatML (<|im_start|>), but gpt-oss speaks Harmony: its reasoning "
            "channels and tool calls would break. Leave TEMPLATE out to keep the model's own."
        )
    stops = request.body.get("parameters", {}).get("stop", [])
    if any(stop in _CHATML_MARKERS for stop in stops):
        found.append(
            "stop <|im_end|> is a ChatML token that gpt-oss never writes; Harmony turns end "
            "with <|return|> or <|call|>, which Ollama already stops on"
        )
    return found


async def create_variant(
    provider: Provider, request: CreateRequest, on_status: StatusCallback | None = None
) -> str:
    """Upload the request's local files, stream `/api/create`, return the last status.

    Raises CapabilityMissing on servers without `/api/create` (LM Studio, llama.cpp, vLLM),
    ConfigError for a local file that does not exist, StreamError when creation fails.
    """
    create = getattr(provider, "create", None)
    push_blob = getattr(provider, "push_blob", None)
    if create is None or push_blob is None:
        raise CapabilityMissing(
            f"{provider.name} cannot create model variants",
            "custom variants are an Ollama feature; set temperature and system prompt in "
            "Koma's settings (chat.temperature, chat.systemPrompt) instead",
        )
    body = dict(request.body)
    for field, paths in (("files", request.files), ("adapters", request.adapters)):
        if not paths:
            continue
        digests: dict[str, str] = {}
        for name, path in paths.items():
            if not path.is_file():
                raise ConfigError(f"{path} does not exist", "check the FROM / ADAPTER path")
            await _report(on_status, f"uploading {path.name}")
            digests[name] = await push_blob(path)
        body[field] = digests
    last = ""
    stream = cast(AsyncGenerator[dict[str, Any], None], create(body))
    async with aclosing(stream) as statuses:
        async for obj in statuses:
            last = str(obj.get("status") or last)
            await _report(on_status, last)
    if last != "success":
        raise StreamError(
            f"creating {body.get('model')} ended before it finished ({last or 'no status'})",
            "run the command again",
        )
    return last


async def _report(callback: StatusCallback | None, text: str) -> None:
    if callback is None:
        return
    outcome = callback(text)
    if inspect.isawaitable(outcome):
        await outcome

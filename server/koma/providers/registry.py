"""Pick and build a provider from a name or from settings, including `auto` discovery.

`auto` probes Ollama and LM Studio at once with a short connect timeout, so an editor starting
Koma on a machine with no server waits a fraction of a second, not seconds, before falling back
to the embedded model.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
from typing import Any

import httpx

from koma.errors import ConfigError, ProviderUnreachable
from koma.providers.base import Provider
from koma.providers.http_provider import HttpProvider
from koma.providers.lmstudio import LMStudioProvider
from koma.providers.ollama import ContextPolicy, OllamaProvider
from koma.providers.openai_compat import PRESETS, OpenAICompatProvider, server_root
from koma.providers.stream_waits import StreamTimeouts
from koma.settings import KomaSettings

DEFAULT_URLS: dict[str, str] = {
    "ollama": "http://localhost:11434",
    "lmstudio": PRESETS["lmstudio"],
    "openai": PRESETS["lmstudio"],
    "llamacpp": PRESETS["llamacpp"],
    "vllm": PRESETS["vllm"],
}
PROVIDER_NAMES = ("ollama", "lmstudio", "openai", "llamacpp", "vllm", "embedded")

# (provider name, base URL, probe path) in order of preference; tests point these elsewhere.
AUTO_CANDIDATES: list[tuple[str, str, str]] = [
    ("ollama", "http://127.0.0.1:11434", "/api/version"),
    ("lmstudio", "http://127.0.0.1:1234/v1", "/models"),
]
# Refused connections fail at once; the timeout only bounds hosts that swallow packets.
PROBE_TIMEOUT = httpx.Timeout(1.0, connect=0.25)


def create_provider(
    name: str,
    base_url: str | None = None,
    api_key: str | None = None,
    *,
    settings: KomaSettings | None = None,
    context_policy: ContextPolicy | None = None,
) -> Provider:
    """Build the named provider (see `_create_provider`) with the settings' two stream waits.

    Every caller — CLI, language server, Python API — builds its provider here, so the
    first-byte and idle timeouts hold wherever an answer is read.
    """
    provider = _create_provider(
        name, base_url, api_key, settings=settings, context_policy=context_policy
    )
    if isinstance(provider, HttpProvider):
        settings = settings or KomaSettings()
        provider.stream_timeouts = StreamTimeouts(
            first_byte=settings.first_byte_timeout_seconds,
            idle=settings.idle_timeout_seconds,
        )
    return provider


def _create_provider(
    name: str,
    base_url: str | None = None,
    api_key: str | None = None,
    *,
    settings: KomaSettings | None = None,
    context_policy: ContextPolicy | None = None,
) -> Provider:
    """Build the named provider; settings supply keep-alive, context size and GPU placement.

    `context_policy` picks Ollama's num_ctx per model when `numCtx` is not set (the engine's
    largest-safe-context computation); without it the provider's fixed fallback applies.
    """
    settings = settings or KomaSettings()
    if api_key is None and settings.api_key is not None:
        # Already cleared by the config when its base URL is less trusted than the key.
        api_key = settings.api_key.get_secret_value()
    if name == "ollama":
        gpu = settings.gpu
        return OllamaProvider(
            base_url or DEFAULT_URLS["ollama"],
            keep_alive=settings.keep_alive,
            num_ctx=settings.num_ctx,
            num_gpu=gpu.num_gpu,
            num_thread=gpu.num_thread,
            main_gpu=gpu.main_gpu,
            use_mmap=gpu.use_mmap,
            context_policy=context_policy,
        )
    if name == "lmstudio":
        return LMStudioProvider(base_url, api_key, context_length=settings.num_ctx)
    if name == "openai":
        url = base_url or os.environ.get("KOMA_BASE_URL") or DEFAULT_URLS["openai"]
        return OpenAICompatProvider(url, api_key)
    if name in ("llamacpp", "vllm"):
        return OpenAICompatProvider(base_url, api_key, name)
    if name == "embedded":
        return _embedded(settings)
    if name == "auto":
        raise ConfigError(
            "provider 'auto' must be resolved by probing", "use `await resolve_provider(settings)`"
        )
    raise ConfigError(f"unknown provider {name!r}", f"use one of: {', '.join(PROVIDER_NAMES)}")


async def resolve_provider(
    settings: KomaSettings,
    candidates: list[tuple[str, str, str]] | None = None,
    *,
    context_policy: ContextPolicy | None = None,
) -> Provider:
    """The provider the settings ask for; for `auto`, the first server that answers."""
    if settings.provider != "auto":
        return create_provider(
            settings.provider, settings.base_url, settings=settings, context_policy=context_policy
        )
    tried = list(candidates if candidates is not None else AUTO_CANDIDATES)
    if settings.base_url:
        # `auto` with an explicit URL: find out which kind of server lives there.
        root = server_root(settings.base_url.rstrip("/"))
        tried = [("ollama", root, "/api/version"), ("lmstudio", root + "/v1", "/models")]
    found = await probe(tried)
    if found is not None:
        name, url = found
        return create_provider(name, url, settings=settings, context_policy=context_policy)
    if embedded_available():
        return _embedded(settings)
    where = ", ".join(f"{n} at {u}" for n, u, _ in tried)
    raise ProviderUnreachable(
        f"no model server answered (tried {where}) and the embedded model is not installed",
        "start Ollama (`ollama serve`) or LM Studio's server, or install the embedded model"
        " (`./scripts/install.sh` in a Koma checkout)",
    )


async def probe(candidates: list[tuple[str, str, str]]) -> tuple[str, str] | None:
    """Probe all candidates concurrently; return the most preferred one that answered."""
    if not candidates:
        return None
    async with httpx.AsyncClient(timeout=PROBE_TIMEOUT, trust_env=False) as client:
        tasks = [asyncio.create_task(_answers(client, n, u, p)) for n, u, p in candidates]
        try:
            for (name, url, _), task in zip(candidates, tasks, strict=True):
                # In preference order: a later server only wins if every earlier one failed.
                if await task:
                    return name, url
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return None


async def _answers(client: httpx.AsyncClient, name: str, url: str, path: str) -> bool:
    """True when the server at `url` answers `path` like the expected kind of server."""
    try:
        response = await client.get(url.rstrip("/") + path)
        body: Any = response.json()
    except (httpx.HTTPError, ValueError):
        return False
    if response.status_code != 200 or not isinstance(body, dict):
        return False
    if name == "ollama":
        return "version" in body
    return isinstance(body.get("data"), list)


def embedded_available() -> bool:
    """The embedded provider needs its module and llama-cpp-python."""
    try:
        importlib.import_module("koma.providers.embedded")
    except ImportError:
        return False
    try:
        return importlib.util.find_spec("llama_cpp") is not None
    except (ImportError, ValueError):
        return False


def _embedded(settings: KomaSettings) -> Provider:
    try:
        module = importlib.import_module("koma.providers.embedded")
    except ImportError as exc:
        raise ConfigError(
            f"the embedded provider is not available: {exc}",
            "run ./scripts/install.sh in a Koma checkout (installs the embedded extra)",
        ) from exc
    kwargs: dict[str, Any] = {}
    if settings.model and settings.model.endswith(".gguf"):
        kwargs["model_path"] = settings.model
    if settings.num_ctx:
        kwargs["n_ctx"] = settings.num_ctx
    provider: Provider = module.EmbeddedProvider(**kwargs)
    return provider

"""One object turns Koma's settings into a provider, a model and the settings of each request.

The CLI (one per command), the language server (one per server, reconfigured on every settings
change) and the Python API (`koma.generate` and friends, one per call) each hold a `Session`,
so the three ask the model server the same way for the same settings:

- **provider**: resolved from the settings (`auto` probes) with the memory-aware context
  policy, so Ollama gets the largest `num_ctx` that fits this machine unless `numCtx` is set.
  The API key reaches only the base URL the configuration trusted it for (`koma.settings.layers`
  clears it otherwise); a session never adds or moves a key.
- **cached provider**: the provider behind the response cache, which follows `cache.mode`,
  `cache.maxEntries` and `cache.persistent` for every holder. Its in-memory part lives as long
  as the cache object: the language server's session owns one; the Python API shares the
  process-wide `ResponseCache.local_model_cache()`; a CLI run is a new process, so there only
  the persistent store (when `cache.persistent` is on) can ever answer.
- **model**: `completionModel` for completion, else `model`, else the server's choice: a model
  that is loaded already (no wait for a load, no second model pushed into memory), else the
  first one listed. Remembered until the provider or the model settings change.
- **context length**: `numCtx`, else the context the model really runs with
  (`engine.lifecycle.context`), else `tokens.DEFAULT_CONTEXT_TOKENS`.
- **request settings**: effort, output limit, temperature and placement (`numCtx`,
  `keepAlive`, `gpu.*`) from the settings, each overridable by the caller (a CLI flag, the
  effort a chat request names).

`reconfigure(settings)` applies a change: a change of the keys in `PROVIDER_KEYS` retires the
provider. A retired provider finishes what it is doing — a stream in flight, a call, a whole
chat turn held with `use()` — and is closed as soon as nothing uses it any more; a call that
starts on it after that fails with a clear error instead of reaching the old server. `aclose()`
closes everything the session opened (not a provider the caller passed in).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Literal

from koma.engine.cache import ResponseCache
from koma.engine.inflight import InFlightProvider
from koma.engine.tokens import DEFAULT_CONTEXT_TOKENS
from koma.errors import ModelNotFound
from koma.providers.base import Provider
from koma.settings import KomaSettings
from koma.types import Effort, GenerationSettings, ModelInfo

logger = logging.getLogger(__name__)

Feature = Literal["chat", "actions", "completion"]

# Settings whose change means a different provider object (URL, backend, key, placement,
# timeouts): the old one is retired.
PROVIDER_KEYS = (
    "provider",
    "base_url",
    "api_key",
    "keep_alive",
    "num_ctx",
    "gpu",
    "first_byte_timeout_seconds",
    "idle_timeout_seconds",
)
# Settings that choose the model: a change forgets the model the server chose.
MODEL_KEYS = ("model", "completion_model")


class Session:
    """Settings → provider, model and request settings; see the module docstring."""

    def __init__(
        self,
        settings: KomaSettings,
        *,
        provider: Provider | None = None,
        cache: ResponseCache | None = None,
    ) -> None:
        """`provider`: the caller's own (used as is: not cached, not closed, not replaced).
        `cache`: the response cache to use (default: one of the session's own, made on first
        use)."""
        self._settings = settings
        self._given = provider
        self._cache = cache
        self._cache_configured = False
        self._provider: InFlightProvider | None = None
        self._cached: Provider | None = None
        self._lock = asyncio.Lock()
        self._retired: list[InFlightProvider] = []
        self._chosen_model: str | None = None
        self._context_lengths: dict[str, int] = {}
        # Counts the changes that forget what a server said (its model choice, its contexts),
        # so an answer that arrives after such a change is not remembered for the new server.
        self._generation = 0

    @property
    def settings(self) -> KomaSettings:
        return self._settings

    # -- provider ------------------------------------------------------------------------------

    async def provider(self) -> Provider:
        """The provider for the current settings, resolved on first use and then reused.

        Raises `KomaError` (e.g. `ProviderUnreachable`) when none can be resolved; the failure
        is not remembered, so the next call tries again.
        """
        if self._given is not None:
            return self._given
        async with self._lock:
            while self._provider is None:
                from koma.engine.lifecycle.context import SafeContextPolicy
                from koma.providers.registry import resolve_provider

                wanted = self._settings
                resolved = await resolve_provider(wanted, context_policy=SafeContextPolicy())
                if _provider_changed(wanted, self._settings):
                    # The settings moved while `auto` probed: never hand out the old server.
                    await resolved.aclose()
                    continue
                self._provider = InFlightProvider(resolved)
            return self._provider

    @property
    def current_provider(self) -> Provider | None:
        """The provider if one has been resolved already (never probes)."""
        return self._given if self._given is not None else self._provider

    @property
    def response_cache(self) -> ResponseCache:
        """The response cache, made on first use; `reconfigure` keeps it in step with `cache.*`.

        A cache passed in (the Python API's process-wide one) is configured on first use too.
        """
        cache = self._settings.cache
        if self._cache is None:
            self._cache = ResponseCache(
                max_entries=cache.max_entries, persistent=cache.persistent, mode=cache.mode
            )
        elif not self._cache_configured:
            self._configure_cache()
        self._cache_configured = True
        return self._cache

    def _configure_cache(self) -> None:
        if self._cache is not None:
            cache = self._settings.cache
            self._cache.configure(
                mode=cache.mode, max_entries=cache.max_entries, persistent=cache.persistent
            )

    async def cached_provider(self) -> Provider:
        """The provider behind the response cache, for chat and actions.

        Inline completion keeps its own cache of suggestions and uses `provider()`. A provider
        the caller passed in is returned as it is: its caching is the caller's choice.
        """
        return self._with_cache(await self.provider())

    def _with_cache(self, base: Provider) -> Provider:
        if base is self._given or self._settings.cache.mode == "off":
            return base
        if self._cached is None or getattr(self._cached, "inner", None) is not base:
            self._cached = self.response_cache.wrap(base)
        return self._cached

    @contextlib.asynccontextmanager
    async def use(self, *, cached: bool = False) -> AsyncIterator[Provider]:
        """The (cached) provider, kept open for the whole block even if settings change.

        For work of several calls that must reach one server, like a chat turn with tools.
        """
        base = await self.provider()
        provider = self._with_cache(base) if cached else base
        if not isinstance(base, InFlightProvider):
            yield provider
            return
        with base.held():  # no await since provider() returned: it is still the current one
            yield provider

    def clear_cache(self) -> int:
        """Empty the response cache; returns the number of entries dropped."""
        return self._cache.clear() if self._cache is not None else 0

    # -- model ---------------------------------------------------------------------------------

    async def model(self, feature: Feature = "chat") -> str:
        """The model for `feature` (see the module docstring for the order)."""
        settings = self._settings
        if feature == "completion" and settings.completion_model:
            return settings.completion_model
        if settings.model:
            return settings.model
        while self._chosen_model is None:
            generation = self._generation
            chosen = await choose_model(await self.provider())
            if generation == self._generation:
                self._chosen_model = chosen
            elif self._settings.model:  # configured meanwhile
                return await self.model(feature)
        return self._chosen_model

    async def context_length(self, model: str) -> int:
        """Tokens the model's context holds: the one it really runs with, else the default.

        The same number `koma models` and `koma doctor` show (`engine.lifecycle.context`):
        `numCtx`, the embedded model's loaded context, the `num_ctx` Koma sends Ollama.
        """
        from koma.engine.lifecycle.context import context_window

        if self._settings.num_ctx:
            return self._settings.num_ctx
        if model not in self._context_lengths:
            generation, length = self._generation, None
            try:
                window = await context_window(await self.provider(), model)
                length = window.used or window.maximum
            except Exception as err:  # only a hint; the default is safe
                logger.info("no context length for %s: %s", model, err)
            if generation != self._generation:  # the old server's answer: ask the new one
                return await self.context_length(model)
            self._context_lengths[model] = length or DEFAULT_CONTEXT_TOKENS
        return self._context_lengths[model]

    # -- request settings ----------------------------------------------------------------------

    def effort(self, feature: Feature) -> Effort:
        """The reasoning effort configured for `feature`."""
        effort: Effort = getattr(self._settings.reasoning_effort, feature)
        return effort

    def request_settings(
        self,
        feature: Feature,
        *,
        effort: Effort | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> GenerationSettings:
        """The settings of one request for `feature`; an argument given overrides the setting.

        Chat and actions share the chat model's output limit and temperature (`chat.*`);
        completion has its own (`completion.*`). Placement (`numCtx`, `keepAlive`, `gpu.*`) is
        always sent, so the same request has the same cache key wherever it comes from.
        """
        settings = self._settings
        if feature == "completion":
            limit: int | None = settings.completion.max_tokens
            warmth: float | None = settings.completion.temperature
        else:
            limit, warmth = settings.chat.max_tokens, settings.chat.temperature
        gpu = settings.gpu
        return GenerationSettings(
            reasoning_effort=effort or self.effort(feature),
            max_tokens=max_tokens or limit,
            temperature=temperature if temperature is not None else warmth,
            seed=seed,
            num_ctx=settings.num_ctx,
            keep_alive=settings.keep_alive,
            num_gpu=gpu.num_gpu,
            num_thread=gpu.num_thread,
            main_gpu=gpu.main_gpu,
            use_mmap=gpu.use_mmap,
        )

    # -- changes and the end -------------------------------------------------------------------

    def reconfigure(self, settings: KomaSettings) -> bool:
        """Apply new settings; returns whether anything changed (see the module docstring)."""
        old, self._settings = self._settings, settings
        if settings == old:
            return False
        if _provider_changed(old, settings):
            self._retire()
        if old.cache != settings.cache:
            self._configure_cache()
        if any(getattr(old, key) != getattr(settings, key) for key in MODEL_KEYS):
            self._chosen_model = None
            self._generation += 1
        return True

    def _retire(self) -> None:
        if self._provider is not None:
            self._provider.retire()
            self._retired.append(self._provider)
        self._retired = [p for p in self._retired if not p.closed]
        self._provider = None
        self._cached = None
        self._chosen_model = None
        self._context_lengths.clear()
        self._generation += 1

    async def aclose(self) -> None:
        """Close every provider this session opened, at once (streams still open fail)."""
        self._retire()
        retired, self._retired = self._retired, []
        for provider in retired:
            try:
                await provider.close_now()
            except Exception:
                logger.exception("closing provider failed")


def _provider_changed(old: KomaSettings, new: KomaSettings) -> bool:
    return any(getattr(old, key) != getattr(new, key) for key in PROVIDER_KEYS)


def server_choice(models: Sequence[ModelInfo]) -> str | None:
    """The model used when none is configured: a loaded one (no wait for a load, no second
    model pushed into memory), else the first listed; None when the server has none."""
    loaded = [m for m in models if m.loaded]
    chosen = (loaded or list(models))[:1]
    return chosen[0].name if chosen else None


async def choose_model(provider: Provider) -> str:
    """`server_choice` of what the provider lists; `ModelNotFound` when it lists nothing."""
    chosen = server_choice(await provider.list_models())
    if chosen is None:
        raise ModelNotFound(
            f"{provider.name} at {provider.base_url or 'its default address'} has no models",
            "pull or load one (e.g. `koma pull gpt-oss:20b`), or name one: --model, the "
            "koma.model setting, KOMA_MODEL or model=...",
        )
    return chosen

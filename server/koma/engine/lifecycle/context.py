"""How large a context window this machine can afford for a model, from the model's own metadata.

The KV cache is what a bigger context costs. Per token and per layer it holds one key and one
value vector for every KV head:

    bytes/token/layer = head_count_kv × (key_length + value_length) × bytes per element

(f16 cache: 2 bytes per element). Layers with sliding-window attention keep only the last
`sliding_window` tokens, so past the window they cost nothing more — gpt-oss alternates sliding
(128 tokens) and full layers, which halves its cache. The numbers come from Ollama's `/api/show`
`model_info` (GGUF keys such as `gptoss.block_count`, `gptoss.attention.head_count_kv`).

The budget is what is free in RAM plus discrete VRAM, minus the model's weights (unless they
are already resident), keeping 20 % of the machine free (for stability; docs/local-models.md). The
result is rounded down to a power of two so a small change in free memory does not change
`num_ctx` between requests — Ollama reloads a model whenever `num_ctx` changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from koma.engine.lifecycle.hardware import MemorySnapshot, gb, probe_memory
from koma.errors import KomaError
from koma.providers.base import Provider
from koma.types import GenerationSettings, ModelDetails, ModelInfo

logger = logging.getLogger(__name__)

# Bytes per cached element for Ollama's OLLAMA_KV_CACHE_TYPE values (q8_0/q4_0 are blocks of
# 32 values plus a 2-byte scale).
CACHE_TYPE_BYTES: dict[str, float] = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
RESERVE_FRACTION = 0.2
MIN_CONTEXT = 4096
# Architectures whose GGUF does not say which layers slide: every n-th layer is full.
SLIDING_PATTERNS: dict[str, int] = {"gptoss": 2, "gemma2": 2, "gemma3": 6, "cohere2": 4}

Limit = Literal["model", "memory", "minimum"]


@dataclass(frozen=True)
class KVCacheShape:
    """The cache cost of one model: bytes per token in full layers, and in sliding layers."""

    layers: int
    full_layers: int
    sliding_layers: int
    sliding_window: int | None
    full_bytes_per_token: float
    sliding_bytes_per_token: float

    @property
    def bytes_per_token(self) -> float:
        """What each token beyond the sliding window adds."""
        return self.full_bytes_per_token

    def bytes_for(self, num_ctx: int) -> int:
        """The whole KV cache for a context of `num_ctx` tokens."""
        window = min(self.sliding_window or num_ctx, num_ctx)
        return round(self.full_bytes_per_token * num_ctx + self.sliding_bytes_per_token * window)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": self.layers,
            "full_layers": self.full_layers,
            "sliding_layers": self.sliding_layers,
            "sliding_window": self.sliding_window,
            "bytes_per_token": self.full_bytes_per_token,
        }


def kv_cache_shape(model_info: dict[str, Any], cache_type: str = "f16") -> KVCacheShape | None:
    """The KV-cache shape from `/api/show` model_info; None when the metadata is incomplete."""
    element = CACHE_TYPE_BYTES.get(cache_type, CACHE_TYPE_BYTES["f16"])
    arch = model_info.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        return None

    def key(name: str) -> Any:
        return model_info.get(f"{arch}.{name}")

    blocks = _int(key("block_count"))
    if not blocks:
        return None
    heads = _per_layer(key("attention.head_count"), blocks)
    kv_heads = _per_layer(key("attention.head_count_kv"), blocks) or heads
    if not heads or not kv_heads:
        return None
    embedding = _int(key("embedding_length"))
    head_dim = embedding // max(heads) if embedding and max(heads) else None
    key_length = _int(key("attention.key_length")) or head_dim
    value_length = _int(key("attention.value_length")) or key_length
    if not key_length or not value_length:
        return None
    window = _int(key("attention.sliding_window"))
    sliding = _sliding_layers(key("attention.sliding_window_pattern"), arch, blocks, window)
    full_bytes = sliding_bytes = 0.0
    for layer in range(blocks):
        per_token = kv_heads[layer] * (key_length + value_length) * element
        if layer in sliding:
            sliding_bytes += per_token
        else:
            full_bytes += per_token
    return KVCacheShape(
        layers=blocks,
        full_layers=blocks - len(sliding),
        sliding_layers=len(sliding),
        sliding_window=window if sliding else None,
        full_bytes_per_token=full_bytes,
        sliding_bytes_per_token=sliding_bytes,
    )


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if value > 0 else None


def _per_layer(value: Any, blocks: int) -> list[int]:
    """A head count that may be one number or one number per layer (0 = no attention)."""
    if isinstance(value, list):
        counts = [int(v) if isinstance(v, int | float) and v > 0 else 0 for v in value]
        return (counts + [counts[-1] if counts else 0] * blocks)[:blocks] if counts else []
    single = _int(value)
    return [single] * blocks if single else []


def _sliding_layers(pattern: Any, arch: str, blocks: int, window: int | None) -> set[int]:
    """Layer indices with sliding-window attention (llama.cpp's rule: `il % n < n - 1`)."""
    if not window:
        return set()
    if isinstance(pattern, list):
        return {i for i, slides in enumerate(pattern[:blocks]) if slides}
    n = _int(pattern) or SLIDING_PATTERNS.get(arch)
    if not n or n < 2:
        # A window without a known pattern: count every layer as full (over-, not under-estimate).
        return set()
    return {i for i in range(blocks) if i % n < n - 1}


@dataclass(frozen=True)
class ContextPlan:
    """The context Koma will ask for, and why."""

    num_ctx: int
    context_length: int | None
    limited_by: Limit
    kv_bytes: int
    weights_bytes: int
    budget_bytes: int
    fits: bool
    shape: KVCacheShape

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_ctx": self.num_ctx,
            "context_length": self.context_length,
            "limited_by": self.limited_by,
            "kv_cache_bytes": self.kv_bytes,
            "weights_bytes": self.weights_bytes,
            "budget_bytes": self.budget_bytes,
            "fits": self.fits,
            "kv_cache": self.shape.to_dict(),
        }

    def describe(self) -> str:
        why = {
            "model": "the model's full context",
            "memory": "the most that fits in memory with 20 % kept free",
            "minimum": "the minimum; memory is short even for that",
        }[self.limited_by]
        return f"{self.num_ctx:,} tokens ({why}; KV cache {gb(self.kv_bytes)})"


def largest_safe_context(
    shape: KVCacheShape,
    context_length: int | None,
    memory: MemorySnapshot,
    *,
    weights_bytes: int = 0,
    resident_bytes: int = 0,
    reserve_fraction: float = RESERVE_FRACTION,
    minimum: int = MIN_CONTEXT,
) -> ContextPlan:
    """The largest context whose KV cache fits what is free, capped at the model's context.

    `resident_bytes` is what the model already occupies (Ollama's `/api/ps` size, which includes
    its current cache): that memory is freed when the model is reloaded, so it counts as free.
    """
    reserve = reserve_fraction * memory.total_bytes
    budget = int(memory.free_bytes + resident_bytes - weights_bytes - reserve)
    fixed = shape.sliding_bytes_per_token * (shape.sliding_window or 0)
    if shape.full_bytes_per_token > 0:
        affordable = int(max(0.0, budget - fixed) // shape.full_bytes_per_token)
    else:
        affordable = context_length or minimum
    limited_by: Limit
    if context_length and affordable >= context_length:
        num_ctx, limited_by = context_length, "model"
    else:
        num_ctx, limited_by = _power_of_two_floor(affordable), "memory"
        if num_ctx < minimum:
            num_ctx, limited_by = minimum, "minimum"
        if context_length and num_ctx > context_length:
            num_ctx = context_length
    kv = shape.bytes_for(num_ctx)
    return ContextPlan(
        num_ctx=num_ctx,
        context_length=context_length,
        limited_by=limited_by,
        kv_bytes=kv,
        weights_bytes=weights_bytes,
        budget_bytes=budget,
        fits=kv <= budget,
        shape=shape,
    )


def _power_of_two_floor(value: int) -> int:
    return 1 << (value.bit_length() - 1) if value > 0 else 0


def find_model(models: Sequence[ModelInfo], name: str) -> ModelInfo | None:
    """`gpt-oss` also matches `gpt-oss:latest`, as Ollama resolves it."""
    for model in models:
        if model.name == name or (":" not in name and model.name == f"{name}:latest"):
            return model
    return None


async def plan_context(
    provider: Provider,
    model: str,
    details: ModelDetails | None = None,
    memory: MemorySnapshot | None = None,
    *,
    cache_type: str = "f16",
    reserve_fraction: float = RESERVE_FRACTION,
) -> ContextPlan | None:
    """The plan for one model on this server and machine; None without usable metadata."""
    details = details or await provider.show(model)
    shape = kv_cache_shape(details.model_info, cache_type)
    if shape is None:
        return None
    weights = resident = 0
    # Calls through the provider interface: the embedded llama.cpp provider (and a Python
    # caller's own) raise more than KomaError, and each figure is only an input to the plan.
    try:
        installed = find_model(await provider.list_models(), model)
    except Exception as exc:
        logger.debug("no installed size of %s for the context plan: %s", model, exc)
        installed = None
    if installed is not None:
        weights = installed.size_bytes or 0
    try:
        running = find_model(await provider.loaded_models(), model)
    except Exception as exc:
        logger.debug("no resident size of %s for the context plan: %s", model, exc)
        running = None
    if running is not None:
        resident = running.size_bytes or weights
    if memory is None:
        memory = await asyncio.to_thread(probe_memory)
    return largest_safe_context(
        shape,
        details.context_length,
        memory,
        weights_bytes=weights,
        resident_bytes=resident,
        reserve_fraction=reserve_fraction,
    )


class SafeContextPolicy:
    """Ollama's `context_policy`: the planned context per model, computed once and then kept.

    Kept because Ollama reloads a model whenever `num_ctx` changes; a value that followed every
    fluctuation of free memory would reload the model on every request.
    """

    def __init__(
        self,
        probe: Callable[[], MemorySnapshot] = probe_memory,
        *,
        cache_type: str = "f16",
        reserve_fraction: float = RESERVE_FRACTION,
    ) -> None:
        self._probe = probe
        self.cache_type = cache_type
        self.reserve_fraction = reserve_fraction
        self.plans: dict[str, ContextPlan | None] = {}
        self._lock = asyncio.Lock()

    async def __call__(
        self, provider: Provider, model: str, details: ModelDetails | None
    ) -> int | None:
        async with self._lock:
            if model not in self.plans:
                memory = await asyncio.to_thread(self._probe)
                self.plans[model] = await plan_context(
                    provider,
                    model,
                    details,
                    memory,
                    cache_type=self.cache_type,
                    reserve_fraction=self.reserve_fraction,
                )
        plan = self.plans[model]
        return plan.num_ctx if plan is not None else None


@dataclass(frozen=True)
class ContextWindow:
    """The context a model really runs with here, and the model's own maximum beside it.

    `koma models`, `koma doctor` and the language server's chat history all use this one
    number, so they never disagree: the embedded model loaded with 4,096 tokens is 4,096
    everywhere, whatever its GGUF's 32,768.
    """

    used: int | None
    maximum: int | None

    def describe(self) -> str:
        """`4,096 (model maximum 32,768)`, `32,768`, or what is known."""
        if self.used is None:
            return f"unknown (model maximum {self.maximum:,})" if self.maximum else "unknown"
        if self.maximum and self.maximum != self.used:
            return f"{self.used:,} (model maximum {self.maximum:,})"
        return f"{self.used:,}"

    def to_dict(self) -> dict[str, Any]:
        return {"context_length": self.used, "context_max": self.maximum}


async def context_window(
    provider: Provider,
    model: str,
    *,
    num_ctx: int | None = None,
    info: ModelInfo | None = None,
    details: ModelDetails | None = None,
) -> ContextWindow:
    """The context `model` runs with on this provider, and its maximum (`show()`).

    - embedded: the context the model is loaded with in-process (`numCtx`, else 4,096);
    - Ollama: the `num_ctx` Koma sends with every request (`numCtx`, else the largest that
      fits memory, else the fallback), which is what the loaded model then runs with;
    - LM Studio: `numCtx` when set (Koma loads the model with it), else what the server
      reports for the model (the loaded context when loaded);
    - OpenAI-compatible servers fix their context at start (vLLM reports it as
      `max_model_len`); what the server lists is taken as is.
    """
    embedded = provider.name == "embedded"
    if details is None and not embedded:
        try:
            details = await provider.show(model)
        except Exception as exc:  # any provider: the maximum is then unknown, not an error
            logger.debug("no details of %s: %s", model, exc)
            details = None
    maximum = details.context_length if details is not None else None
    if maximum is None and embedded:
        maximum = await asyncio.to_thread(_gguf_maximum, provider, model)
    used: int | None = None
    planned = getattr(provider, "planned_options", None)
    if embedded or info is None:
        try:
            info = info or find_model(await provider.list_models(), model)
        except Exception as exc:  # any provider: the context in use is then unknown
            logger.debug("no listing of %s: %s", model, exc)
            info = None
    if embedded:
        used = num_ctx or (info.context_length if info is not None else None)
    elif planned is not None:
        options = await planned(model, GenerationSettings(num_ctx=num_ctx), details)
        value = options.get("num_ctx") if isinstance(options, dict) else None
        used = value if isinstance(value, int) else num_ctx
    elif num_ctx and provider.name == "lmstudio":
        used = num_ctx
    elif info is not None:
        used = info.context_length
    if maximum is None and used is not None and provider.name not in ("embedded", "ollama"):
        maximum = used  # a server that reports one number reports its own limit
    return ContextWindow(used, maximum)


def _gguf_maximum(provider: Any, model: str) -> int | None:
    """The embedded model's trained context from its GGUF header (the model is not loaded)."""
    from koma.providers.gguf import gguf_context_length

    try:
        path = Path(model).expanduser() if model.endswith(".gguf") else provider.model_path
    # No model installed (ConfigError), or the packaged one cannot be assembled.
    except (KomaError, OSError, ValueError) as exc:
        logger.debug("no GGUF to read the maximum context from: %s", exc)
        return None
    return gguf_context_length(Path(path))

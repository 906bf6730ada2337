"""The memory manager: unload idle models, keep what is loaded under a budget, warn about pairs.

Configured by `memory.max_memory_gb` and `memory.auto_unload_minutes` (docs/local-models.md,
"Memory manager"), built on what the server itself reports: Ollama's `/api/ps` (size, size_vram,
expires_at) or LM Studio's model state. When was a model last used? Ollama moves `expires_at` to
"last use + keep_alive" after every request, so with Koma's own keep_alive the last use is
`expires_at - keep_alive`; a model kept forever (or on a server without expiry) counts from when
Koma first saw it, or from the last `touch()`. Times come from an injectable clock (wall-clock
seconds) so tests can fast-forward.

Two models that cannot stay loaded together — a big chat model and a small completion model —
would be evicted and reloaded on every switch between chatting and typing; the manager says so
before it happens (`pair_warning`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from koma.engine.lifecycle.context import find_model
from koma.engine.lifecycle.hardware import GB, MemorySnapshot, gb
from koma.errors import KomaError
from koma.providers.base import Provider
from koma.settings import MemorySettings
from koma.types import ModelInfo

Clock = Callable[[], float]
# Expiries further away than this are Ollama's "forever" (it prints year 2318).
FOREVER_SECONDS = 10 * 365 * 24 * 3600
_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def parse_duration(value: str | int | float | None) -> float | None:
    """Ollama's keep_alive in seconds: `"10m"`, `"1h30m"`, `300`; None = forever or unknown."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return None if value < 0 else float(value)
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        parts = _DURATION_PART.findall(text.lstrip("+-"))
        if not parts or "".join(n + u for n, u in parts) != text.lstrip("+-"):
            return None
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
        if text.startswith("-"):
            seconds = -seconds
    return None if seconds < 0 else seconds


def parse_expiry(text: str | None) -> float | None:
    """RFC 3339 (with Ollama's nanoseconds) as epoch seconds; None when absent or unreadable."""
    if not text:
        return None
    cleaned = _FRACTION.sub(r"\1", text.strip()).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(cleaned).timestamp()
    except ValueError:
        return None


@dataclass
class MemoryAction:
    """Something the manager did (or tried to do) to one model."""

    model: str
    reason: Literal["idle", "memory"]
    message: str
    ok: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "reason": self.reason, "message": self.message, "ok": self.ok}


@dataclass
class _Seen:
    first_seen: float
    touched: float | None = None
    expiry: float | None = None


@dataclass
class MemoryManager:
    """Watches loaded models; `tick(provider)` unloads what is idle or over the budget."""

    max_memory_gb: float | None = None
    auto_unload_minutes: float | None = None
    keep_alive: str | int | None = "10m"
    clock: Clock = time.time
    _seen: dict[str, _Seen] = field(default_factory=dict)
    _pinned: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls, memory: MemorySettings, keep_alive: str | int | None = "10m", clock: Clock = time.time
    ) -> MemoryManager:
        return cls(memory.max_memory_gb, memory.auto_unload_minutes, keep_alive, clock)

    def configure(
        self,
        *,
        max_memory_gb: float | None = None,
        auto_unload_minutes: float | None = None,
        keep_alive: str | int | None = None,
    ) -> None:
        """Change the limits; None leaves a limit off (keep_alive: unchanged)."""
        self.max_memory_gb = max_memory_gb
        self.auto_unload_minutes = auto_unload_minutes
        if keep_alive is not None:
            self.keep_alive = keep_alive

    @property
    def enabled(self) -> bool:
        return self.max_memory_gb is not None or self.auto_unload_minutes is not None

    # -- what Koma knows about use --------------------------------------------------------------

    def touch(self, model: str) -> None:
        """Koma used `model` just now (a request started or finished)."""
        seen = self._seen.setdefault(model, _Seen(self.clock()))
        seen.touched = self.clock()

    def pin(self, model: str) -> None:
        """A generation is running on `model`: never unload it until `unpin`."""
        self._pinned[model] = self._pinned.get(model, 0) + 1
        self.touch(model)

    def unpin(self, model: str) -> None:
        left = self._pinned.get(model, 0) - 1
        if left > 0:
            self._pinned[model] = left
        else:
            self._pinned.pop(model, None)
        self.touch(model)

    def last_used(self, model: ModelInfo) -> float:
        """The latest of: first seen, touched, and what Ollama's expiry says."""
        now = self.clock()
        seen = self._seen.setdefault(model.name, _Seen(now))
        expiry = parse_expiry(model.expires_at)
        candidates = [seen.first_seen]
        if expiry is not None and expiry - now < FOREVER_SECONDS:
            keep = parse_duration(self.keep_alive)
            if keep is not None:
                candidates.append(min(now, expiry - keep))
            if seen.expiry is not None and abs(expiry - seen.expiry) > 0.001:
                # Each request resets Ollama's timer: a moved expiry means it was used.
                seen.touched = now
            seen.expiry = expiry
        if seen.touched is not None:
            candidates.append(seen.touched)
        return max(candidates)

    def idle_seconds(self, model: ModelInfo) -> float:
        return max(0.0, self.clock() - self.last_used(model))

    # -- acting ---------------------------------------------------------------------------------

    async def tick(self, provider: Provider, *, keep: Sequence[str] = ()) -> list[MemoryAction]:
        """Read what is loaded and unload idle models, then the least recent over the budget.

        `keep` names models about to be used (never unloaded for the budget).
        """
        if not self.enabled:
            return []
        loaded = await provider.loaded_models()
        for name in list(self._seen):
            if find_model(loaded, name) is None:
                del self._seen[name]  # unloaded elsewhere: start afresh when it comes back
        actions: list[MemoryAction] = []
        remaining = []
        for model in loaded:
            idle = self.idle_seconds(model)
            limit = self.auto_unload_minutes
            if limit is not None and idle >= limit * 60 and model.name not in self._pinned:
                why = f"idle for {idle / 60:.0f} min (autoUnloadMinutes {limit:g})"
                actions.append(await self._unload(provider, model.name, "idle", why))
            else:
                remaining.append(model)
        if self.max_memory_gb is not None:
            actions += await self._enforce_budget(provider, remaining, keep)
        return actions

    async def _enforce_budget(
        self, provider: Provider, loaded: list[ModelInfo], keep: Sequence[str]
    ) -> list[MemoryAction]:
        assert self.max_memory_gb is not None
        budget = self.max_memory_gb * GB
        used = sum(m.size_bytes or 0 for m in loaded)
        actions = []
        # Least recently used first; models in use or about to be used stay.
        for model in sorted(loaded, key=self.last_used):
            if used <= budget:
                break
            if model.name in self._pinned or model.name in keep or not model.size_bytes:
                continue
            why = f"{gb(used)} loaded exceeds maxMemoryGb {self.max_memory_gb:g}"
            action = await self._unload(provider, model.name, "memory", why)
            actions.append(action)
            if action.ok:
                used -= model.size_bytes
        return actions

    async def _unload(
        self, provider: Provider, model: str, reason: Literal["idle", "memory"], why: str
    ) -> MemoryAction:
        try:
            await provider.unload(model)
        except KomaError as exc:
            return MemoryAction(model, reason, f"could not unload {model} ({why}): {exc}", False)
        self._seen.pop(model, None)
        return MemoryAction(model, reason, f"unloaded {model}: {why}")


def pair_warning(
    chat: ModelInfo | None,
    completion: ModelInfo | None,
    *,
    max_memory_gb: float | None = None,
    memory: MemorySnapshot | None = None,
    reserve_fraction: float = 0.2,
) -> str | None:
    """A warning when the chat and completion models cannot both stay loaded; else None."""
    if chat is None or completion is None or chat.name == completion.name:
        return None
    if not chat.size_bytes or not completion.size_bytes:
        return None
    need = chat.size_bytes + completion.size_bytes
    limits = []
    if max_memory_gb is not None:
        limits.append((max_memory_gb * GB, f"maxMemoryGb {max_memory_gb:g}"))
    if memory is not None:
        usable = (1 - reserve_fraction) * memory.total_bytes
        limits.append((usable, f"{100 - reserve_fraction * 100:.0f} % of this machine's memory"))
    if not limits:
        return None
    limit, label = min(limits)
    if need <= limit:
        return None
    return (
        f"the chat model {chat.name} ({gb(chat.size_bytes)}) and the completion model "
        f"{completion.name} ({gb(completion.size_bytes)}) need {gb(need)} together but only "
        f"{gb(limit)} may be used ({label}): they would evict each other every time you switch "
        "between chat and typing. Use a smaller chat model, set completionModel to the chat "
        "model, or raise memory.maxMemoryGb."
    )

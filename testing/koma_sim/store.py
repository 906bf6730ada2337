"""Installed and loaded models of the simulated server, with Ollama's keep-alive rules.

Shared by every wire flavour: a model used through `/v1` shows as loaded in `/api/ps` or
LM Studio's `/api/v0/models`, as on the real servers.
"""

from __future__ import annotations

import copy
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from koma_sim.script import SimModel

DEFAULT_KEEP_ALIVE_S = 300.0
_FOREVER_AT = "2318-11-20T09:22:38.000000000Z"
_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class KeepAliveError(ValueError):
    """A keep_alive value Ollama would reject."""


def parse_keep_alive(value: object) -> float | None:
    """Seconds to stay loaded after a request; None = forever (negative), 0 = unload at once."""
    if value is None:
        return DEFAULT_KEEP_ALIVE_S
    if isinstance(value, bool):
        raise KeepAliveError(f"invalid keep_alive: {value!r}")
    if isinstance(value, int | float):
        return None if value < 0 else float(value)
    if not isinstance(value, str):
        raise KeepAliveError(f"invalid keep_alive: {value!r}")
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        parts = _DURATION_PART.findall(body)
        if not body or "".join(n + u for n, u in parts) != body:
            raise KeepAliveError(f'time: invalid duration "{value}"') from None
        seconds = sign * sum(float(n) * _UNIT_S[u] for n, u in parts)
    return None if seconds < 0 else seconds


@dataclass
class Loaded:
    """A model resident in (simulated) memory."""

    model: SimModel
    num_ctx: int
    keep_alive: float | None
    in_use: int = 0
    deadline: float | None = None  # monotonic; None while in use or when kept forever

    def expires_at(self) -> str:
        """RFC 3339 expiry as `/api/ps` shows it."""
        if self.keep_alive is None:
            return _FOREVER_AT
        if self.in_use or self.deadline is None:
            remaining = self.keep_alive
        else:
            remaining = max(0.0, self.deadline - time.monotonic())
        when = datetime.now(UTC) + timedelta(seconds=remaining)
        return when.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


class ModelStore:
    """Thread-safe registry of installed models, pullable catalog, and loaded models."""

    def __init__(self, models: list[SimModel], catalog: list[SimModel]) -> None:
        self._lock = threading.Lock()
        self._initial = [copy.deepcopy(m) for m in models]
        self._catalog = {m.name: copy.deepcopy(m) for m in catalog}
        self._installed: dict[str, SimModel] = {}
        self._loaded: dict[str, Loaded] = {}
        self.last_prompt = ""
        self.reset()

    def reset(self) -> None:
        """Back to the constructor's models, nothing loaded, no prompt cache."""
        with self._lock:
            self._installed = {m.name: copy.deepcopy(m) for m in self._initial}
            self._loaded.clear()
            self.last_prompt = ""

    @staticmethod
    def _candidates(name: str) -> list[str]:
        return [name] if ":" in name.rsplit("/", 1)[-1] else [name, f"{name}:latest"]

    def find(self, name: object) -> SimModel | None:
        """An installed model by name (`gpt-oss` also finds `gpt-oss:latest`)."""
        if not isinstance(name, str) or not name:
            return None
        with self._lock:
            for candidate in self._candidates(name):
                if candidate in self._installed:
                    return self._installed[candidate]
        return None

    def installed(self) -> list[SimModel]:
        """Installed models in installation order."""
        with self._lock:
            return list(self._installed.values())

    def catalog_entry(self, name: str) -> SimModel | None:
        """What `/api/pull` would fetch for this name (installed models count as pullable)."""
        with self._lock:
            for candidate in self._candidates(name):
                if candidate in self._catalog:
                    return copy.deepcopy(self._catalog[candidate])
                if candidate in self._installed:
                    return copy.deepcopy(self._installed[candidate])
        return None

    def install(self, model: SimModel) -> None:
        """Add or replace an installed model."""
        with self._lock:
            self._installed[model.name] = model

    def add_to_catalog(self, model: SimModel) -> None:
        """Make a model pullable without installing it."""
        with self._lock:
            self._catalog[model.name] = copy.deepcopy(model)

    def remove(self, name: str) -> bool:
        """Delete an installed model (and unload it); False when it is not installed."""
        with self._lock:
            for candidate in self._candidates(name):
                if candidate in self._installed:
                    del self._installed[candidate]
                    self._loaded.pop(candidate, None)
                    return True
        return False

    def _purge(self) -> None:
        now = time.monotonic()
        for name, entry in list(self._loaded.items()):
            if entry.in_use == 0 and entry.deadline is not None and entry.deadline <= now:
                del self._loaded[name]

    def acquire(
        self, model: SimModel, keep_alive: float | None, num_ctx: int | None = None
    ) -> bool:
        """Mark a model in use for one request; True when it had to be loaded first."""
        with self._lock:
            self._purge()
            entry = self._loaded.get(model.name)
            fresh = entry is None or (num_ctx is not None and entry.num_ctx != num_ctx)
            if entry is None or fresh:
                in_use = entry.in_use if entry else 0
                entry = Loaded(model, num_ctx or model.num_ctx, keep_alive, in_use=in_use)
                self._loaded[model.name] = entry
            entry.keep_alive = keep_alive
            entry.in_use += 1
            entry.deadline = None
            return fresh

    def release(self, model: SimModel) -> None:
        """End of a request: start the keep-alive countdown (0 unloads now)."""
        with self._lock:
            entry = self._loaded.get(model.name)
            if entry is None:
                return
            entry.in_use = max(0, entry.in_use - 1)
            if entry.in_use == 0 and entry.keep_alive is not None:
                entry.deadline = time.monotonic() + entry.keep_alive
            self._purge()

    def load(self, model: SimModel, keep_alive: float | None, num_ctx: int | None = None) -> bool:
        """Load without generating (`/api/generate` with only a model, LM Studio load)."""
        fresh = self.acquire(model, keep_alive, num_ctx)
        self.release(model)
        return fresh

    def unload(self, name: str) -> bool:
        """Drop a model from memory; False when it was not loaded."""
        with self._lock:
            self._purge()
            return self._loaded.pop(name, None) is not None

    def loaded(self) -> list[Loaded]:
        """Models currently in memory (expired ones are dropped first)."""
        with self._lock:
            self._purge()
            return list(self._loaded.values())

    def loaded_entry(self, name: str) -> Loaded | None:
        """The loaded entry for an exact model name."""
        with self._lock:
            self._purge()
            return self._loaded.get(name)

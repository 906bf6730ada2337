"""Helpers shared by the model-lifecycle tests (imported by name; conftest holds the fixtures).

The simulator's gpt-oss models get `gptoss.attention.sliding_window: 128`, which real Ollama
reports in `/api/show` model_info and which halves gpt-oss's KV cache.
"""

from __future__ import annotations

from koma.engine.lifecycle.hardware import MemorySnapshot
from koma_sim import SimModel, gpt_oss_20b, gpt_oss_120b

GB = 10**9
SLIDING = {"gptoss.attention.sliding_window": 128}


def oss_20b() -> SimModel:
    model = gpt_oss_20b()
    model.model_info = dict(SLIDING)
    return model


def oss_120b() -> SimModel:
    model = gpt_oss_120b()
    model.model_info = dict(SLIDING)
    return model


def machine(total_gb: float, free_gb: float) -> MemorySnapshot:
    """A machine with this much RAM (no discrete GPU)."""
    return MemorySnapshot(int(total_gb * GB), int(free_gb * GB))

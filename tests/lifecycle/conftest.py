"""Fixtures of the model-lifecycle tests: the root `sim` serves gpt-oss as Ollama shows it."""

from __future__ import annotations

from typing import Any

import pytest
from lc_support import oss_20b, oss_120b

from koma_sim import qwen_coder


@pytest.fixture
def sim_options() -> dict[str, Any]:
    """Both gpt-oss sizes with their sliding-window metadata (memory and context planning
    read it), and a FIM model."""
    return {"models": [oss_20b(), oss_120b(), qwen_coder()]}

"""Fixtures of the end-to-end attack suite (helpers in `sec_support`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sec_support import Home, build_home

from koma_sim import Reply, Simulator, gpt_oss_20b, qwen_coder


@pytest.fixture
def model() -> Iterator[Simulator]:
    """The model server the user chose (scripted: it plays the hostile model)."""
    sim = Simulator(models=[gpt_oss_20b(), qwen_coder()], flavor="ollama")
    sim.set_default_reply(Reply(content="Done."))
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def evil() -> Iterator[Simulator]:
    """A server the repository names; it must never get a request, a key or code."""
    sim = Simulator(models=[gpt_oss_20b()], flavor="vllm")
    sim.set_default_reply(Reply(content="EVIL SERVER ANSWER"))
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return build_home(tmp_path)

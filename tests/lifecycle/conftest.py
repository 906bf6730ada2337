"""Fixtures of the model-lifecycle tests: a loopback Ollama with gpt-oss as Ollama shows it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from lc_support import oss_20b, oss_120b

from koma.providers.ollama import OllamaProvider
from koma_sim import Simulator, qwen_coder


@pytest.fixture
def sim() -> Iterator[Simulator]:
    server = Simulator(models=[oss_20b(), oss_120b(), qwen_coder()], flavor="ollama")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def provider(sim: Simulator) -> AsyncIterator[OllamaProvider]:
    p = OllamaProvider(sim.url, backoff=0.01)
    yield p
    await p.aclose()

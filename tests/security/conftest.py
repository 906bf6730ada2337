"""Fixtures of the end-to-end attack suite (helpers in `sec_support`).

The two servers are module-scoped, unlike the root `sim` fixture: each module drives one
`koma lsp` (or one hostile home) through many cases, and a case resets what it scripted
(`model.reset()`) instead of paying for a new server and a new editor session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sec_support import Home, build_home

from koma_sim import Reply, Simulator, gpt_oss_20b


@pytest.fixture(scope="module")
def model() -> Iterator[Simulator]:
    """The model server the user chose (scripted: it plays the hostile model)."""
    with Simulator(default_reply=Reply(content="Done.")) as sim:
        yield sim


@pytest.fixture(scope="module")
def evil() -> Iterator[Simulator]:
    """A server the repository names; it must never get a request, a key or code."""
    with Simulator(
        models=[gpt_oss_20b()], flavor="vllm", default_reply=Reply(content="EVIL SERVER ANSWER")
    ) as sim:
        yield sim


@pytest.fixture(scope="module")
def sims(model: Simulator, evil: Simulator) -> tuple[Simulator, Simulator]:
    """The user's server and the hostile one, for cases that point Koma at both."""
    return model, evil


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return build_home(tmp_path)

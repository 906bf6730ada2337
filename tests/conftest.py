"""Fixtures every test folder shares."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def koma_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Koma's wheel built from this checkout (as the README and `npm run package` build it).

    From a copy that holds the test tools too (`testing/`, `tests/`), so a wheel that picked
    them up would show it; setuptools' build/ scratch directory stays out of the checkout.
    """
    out = tmp_path_factory.mktemp("wheel")
    src = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("server", "testing", "tests"):
        shutil.copytree(
            REPO / name,
            src / name,
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc", "build"),
        )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("koma_lsp-*.whl")
    return built

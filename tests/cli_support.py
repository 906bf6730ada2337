"""Shared by the CLI tests: every `koma` command runs in an empty project.

Import `isolated_project` into a test module to apply it there (it is autouse); tests that
need the project folder ask for the fixture by its name, `isolated`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

KOMA_ENV = ("KOMA_PROVIDER", "KOMA_BASE_URL", "KOMA_MODEL", "KOMA_API_KEY", "KOMA_CONFIG")


@pytest.fixture(autouse=True, name="isolated")
def isolated_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty git repository as the working directory, no user config, no KOMA_* variables."""
    for var in KOMA_ENV:
        monkeypatch.delenv(var, raising=False)
    work = tmp_path / "work"
    (work / ".git").mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("KOMA_CONFIG", str(tmp_path / "no-user-config.toml"))
    return work

"""Fixtures for the Neovim tests: a fresh embedded Neovim per test and a simulated Ollama.

The helpers live in `nvim_harness` (a unique module name, so they never collide with other
test folders' conftest modules).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pynvim
import pytest
from nvim_harness import PLUGIN, REPO, Editor, nvim_binary

from koma_sim import SimModel


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test here `neovim` (pytest -m "not neovim" skips the editor tests)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.neovim)


@pytest.fixture
def sim_options() -> dict[str, Any]:
    """The root `sim` as a simulated Ollama serving gpt-oss:120b (tools + thinking)."""
    return {
        "models": [SimModel(name="gpt-oss:120b", capabilities=["completion", "tools", "thinking"])]
    }


@pytest.fixture
def editor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Editor]:
    """A fresh embedded Neovim with the plugin on 'runtimepath', cwd in a temp project."""
    home = tmp_path / "home"
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        path = home / var.lower()
        path.mkdir(parents=True)
        monkeypatch.setenv(var, str(path))
    for var in list(os.environ):
        if var.startswith("KOMA_"):
            monkeypatch.delenv(var)
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    argv = [
        str(nvim_binary()),
        "--embed",
        "--headless",
        "--clean",
        "-n",
        "-i",
        "NONE",
        "--cmd",
        f"set rtp^={PLUGIN}",
        "--cmd",
        f"cd {project}",
    ]
    nvim = pynvim.attach("child", argv=argv)
    try:
        yield Editor(nvim, project)
    finally:
        try:
            nvim.exec_lua(
                "for _, c in ipairs(vim.lsp.get_clients()) do c:stop(true) end "
                "vim.wait(5000, function() return #vim.lsp.get_clients() == 0 end, 20)"
            )
        except Exception:  # the editor may already be gone; closing below still applies
            pass
        nvim.close()


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """Wheels of Koma's dependencies (scripts/wheelhouse.sh), for offline installs."""
    result = subprocess.run(
        [str(REPO / "scripts" / "wheelhouse.sh")],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
    return Path(result.stdout.strip())

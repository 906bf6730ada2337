""":KomaInstall in a real Neovim with no Koma to be found: it makes the private virtual
environment, pip-installs Koma's wheel into it and starts the server from there; ghost text then
comes from that server.

Offline and fast: the wheel is built from this checkout, and pip takes the dependencies from a
local wheelhouse (scripts/wheelhouse.sh) through its own PIP_NO_INDEX / PIP_FIND_LINKS; the
plugin itself passes pip nothing of the kind (its real path uses the package index).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from nvim_harness import Editor

from koma_sim import Reply, Simulator


@pytest.mark.timeout(300)
def test_koma_install_then_ghost_text_from_the_installed_server(
    editor: Editor, sim: Simulator, tmp_path: Path, koma_wheel: Path, wheelhouse: Path
) -> None:
    sim.add_reply(Reply(content="a + b", match="def add_numbers"))
    bin_dir = tmp_path / "only-python"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(os.path.realpath(sys.executable))
    editor.lua(
        """
        local p = ...
        vim.env.PATH = p.bin .. ':/usr/bin:/bin'
        vim.env.HOME = p.home
        vim.env.SHELL = '/bin/sh'
        vim.env.VIRTUAL_ENV = nil
        vim.env.PIPX_BIN_DIR = nil
        vim.env.PIP_CONFIG_FILE = '/dev/null'
        vim.env.PIP_NO_INDEX = '1'
        vim.env.PIP_FIND_LINKS = p.wheelhouse
        """,
        {"bin": str(bin_dir), "home": str(tmp_path), "wheelhouse": str(wheelhouse)},
    )
    editor.lua(
        "require('koma').setup(...)",
        {
            "provider": "ollama",
            "base_url": sim.url,
            "model": "gpt-oss:120b",
            "install": {"source": str(koma_wheel)},
        },
    )
    assert "the Koma server was not found" in editor.messages()
    path = editor.project / "calc.py"
    path.write_text("def add_numbers(a, b):\n    \n", encoding="utf-8")
    editor.nvim.command(f"edit {path}")
    assert editor.lua("return #vim.lsp.get_clients({ name = 'koma' })") == 0

    editor.nvim.command("KomaInstall")
    venv_koma = Path(
        editor.lua("return require('koma.server').venv_koma(require('koma.server').install_venv())")
    )
    editor.wait(
        "#vim.lsp.get_clients({name = 'koma', bufnr = 0}) > 0 "
        "and vim.lsp.get_clients({name = 'koma', bufnr = 0})[1].initialized",
        timeout=240,
        what="the server installed by :KomaInstall to attach",
    )
    assert venv_koma.is_file()
    cmd = editor.lua("return vim.lsp.get_clients({ name = 'koma' })[1].config.cmd")
    assert cmd == [str(venv_koma), "lsp"]
    assert "installed in" in editor.messages()
    # The installed server imports its own copy of Koma, not this checkout's.
    site = subprocess.run(
        [str(venv_koma.parent / "python"), "-c", "import koma; print(koma.__file__)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert str(venv_koma.parent.parent) in site

    editor.nvim.input("2GAreturn ")
    ghost = editor.wait(
        "require('koma.inline').visible()", what="ghost text from the installed server"
    )
    assert ghost.startswith("a + b")

"""A fresh virtual environment set up as the README says (build the wheel, `pip install` it into
an activated venv): `koma` runs from it, the Neovim plugin's search finds that Koma through
the activated project `.venv` — not whatever `koma` the machine has elsewhere — and `koma chat`
answers.

pip takes the dependencies from the local wheelhouse (scripts/wheelhouse.sh) so the test runs
offline once that is built; the README's commands use the package index.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from nvim_harness import PLUGIN, nvim_binary

from koma_sim import Reply, Simulator


@pytest.mark.timeout(300)
def test_readme_install_in_a_fresh_venv_is_what_the_editor_finds(
    tmp_path: Path, sim: Simulator, koma_wheel: Path, wheelhouse: Path
) -> None:
    # README: python -m pip wheel --no-deps -w dist .   (the `koma_wheel` fixture)
    wheel = koma_wheel
    venv = tmp_path / ".venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, capture_output=True)
    # `. .venv/bin/activate`: VIRTUAL_ENV set and its bin first on PATH, nothing else changed.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KOMA_", "PIP_"))}
    env.update(
        VIRTUAL_ENV=str(venv),
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(wheelhouse),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_STATE_HOME=str(tmp_path / "state"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    env.pop("PYTHONPATH", None)
    subprocess.run(
        ["python", "-m", "pip", "install", "-q", str(wheel)], check=True, env=env, cwd=tmp_path
    )
    koma = venv / "bin" / "koma"
    assert koma.is_file()
    imported = subprocess.run(
        ["python", "-c", "import koma; print(koma.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    ).stdout
    assert imported.startswith(str(venv)), "the venv runs its own Koma, not this checkout's"

    # The editor started from that shell finds this Koma (not a global one on PATH further on):
    # the project's own .venv, used because it is the activated one.
    found = subprocess.run(
        [
            str(nvim_binary()),
            "--headless",
            "--clean",
            "--cmd",
            f"set rtp^={PLUGIN}",
            "-c",
            "lua local f = require('koma.server').find({ root = vim.fn.getcwd() }) "
            "io.stdout:write(f.source .. '|' .. table.concat(f.cmd, ' '))",
            "-c",
            "qa!",
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    ).stdout
    assert found == f"the project .venv|{koma} lsp"

    # README: koma chat "…" — against a scripted Ollama.
    sim.add_reply(Reply(content="def reverse(s):\n    return s[::-1]\n", match="reverses"))
    chat = subprocess.run(
        [
            "koma",
            "chat",
            "--provider",
            "ollama",
            "--base-url",
            sim.url,
            "--model",
            "gpt-oss:120b",
            "Write a Python function that reverses a string.",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert chat.returncode == 0, chat.stderr
    assert "return s[::-1]" in chat.stdout

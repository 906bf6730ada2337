"""The live group: Koma against a real llama.cpp server (llama-cpp-python) serving Gemma 3 270M.

`scripts/test.sh` starts the server once and exports `KOMA_LIVE_BASE_URL` (and
`KOMA_LIVE_SERVER_LOG`, its log file). Without them the session starts its own server on a free
loopback port (see `live_support.server_command`), so `python -m pytest` alone runs the live
group too. A server that cannot start fails the tests: they are never skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_support import (
    LiveServer,
    free_port,
    gemma_path,
    served_model,
    server_command,
    server_env,
    wait_until_serving,
)


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    """A real OpenAI-compatible llama.cpp server with a real model, not the root `sim`: these
    tests check what only a model shows (its tokens, its prompt cache, its timings), so one
    server serves the whole session."""
    url = os.environ.get("KOMA_LIVE_BASE_URL")
    if url:
        url = url.rstrip("/")
        log = os.environ.get("KOMA_LIVE_SERVER_LOG")
        try:
            model = served_model(url)
        except (httpx.HTTPError, ValueError, LookupError) as exc:
            pytest.fail(f"KOMA_LIVE_BASE_URL={url} does not serve a model: {exc!r}")
        yield LiveServer(url, model, Path(log) if log else None)
        return
    workdir = Path(tempfile.mkdtemp(prefix="koma-live-"))
    log_path = workdir / "llama-server.log"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            server_command(gemma_path(), port),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=server_env(),
        )
    try:
        wait_until_serving(base_url, proc, log_path)
        yield LiveServer(base_url, served_model(base_url), log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LiveServer]:
    """llama.cpp's C++ llama-server with the FIM-named Gemma (see llama_server_support.py)."""
    from fim_model import fim_gemma_path
    from llama_server_support import llama_server_binary, llama_server_command, wait_until_healthy

    url = os.environ.get("KOMA_LIVE_LLAMA_SERVER_URL")
    if url:
        root = url.rstrip("/").removesuffix("/v1")
        log = os.environ.get("KOMA_LIVE_LLAMA_SERVER_LOG")
        yield LiveServer(root + "/v1", served_model(root + "/v1"), Path(log) if log else None)
        return
    binary = llama_server_binary()
    workdir = Path(tempfile.mkdtemp(prefix="koma-llama-server-"))
    log_path = workdir / "llama-server.log"
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            llama_server_command(binary, str(fim_gemma_path()), port),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=server_env(),
        )
    try:
        wait_until_healthy(root, proc, log_path)
        yield LiveServer(root + "/v1", served_model(root + "/v1"), log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        shutil.rmtree(workdir, ignore_errors=True)

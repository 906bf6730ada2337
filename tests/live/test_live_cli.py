"""`koma chat` against the real llama.cpp server: a real answer, real metrics, real streaming."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

import pytest
from live_support import LiveServer, koma_env

pytestmark = pytest.mark.live


def chat_argv(server: LiveServer, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "koma",
        "chat",
        "--provider",
        "openai",
        "--base-url",
        server.base_url,
        "--model",
        server.model,
        *extra,
    ]


def test_chat_json_prints_a_real_answer_with_metrics(
    live_server: LiveServer, tmp_path: Path
) -> None:
    argv = chat_argv(live_server, "--json", "--temperature", "0", "--max-tokens", "16")
    proc = subprocess.run(
        [*argv, "What is 2 + 2?"],
        capture_output=True,
        text=True,
        env=koma_env(tmp_path),
        cwd=tmp_path,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert "4" in result["text"], result["text"]
    assert result["channels"]["final"] == result["text"]
    assert result["provider"] == "openai"
    assert result["model"] == live_server.model
    metrics = result["metrics"]
    assert metrics["ttft_ms"] > 0
    assert metrics["total_ms"] >= metrics["ttft_ms"]
    assert metrics["tokens_per_second"] > 0


def test_chat_streams_tokens_as_they_are_generated(live_server: LiveServer, tmp_path: Path) -> None:
    """The first words reach the terminal long before the answer is complete."""
    env = koma_env(tmp_path)
    env.pop("PYTHONUNBUFFERED", None)  # a real terminal pipe: the CLI must flush by itself
    argv = chat_argv(live_server, "--temperature", "0", "--max-tokens", "48")
    proc = subprocess.Popen(
        [*argv, "Count from 1 to 30, separated by commas."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    arrivals: list[tuple[float, bytes]] = []
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            if not selector.select(timeout=1):
                continue
            data = os.read(proc.stdout.fileno(), 4096)
            if not data:
                break
            arrivals.append((time.monotonic(), data))
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.returncode == 0, stderr
    text = b"".join(data for _, data in arrivals).decode()
    assert text.strip()
    assert len(arrivals) >= 3, f"the answer arrived in {len(arrivals)} piece(s): {text!r}"
    spread = arrivals[-1][0] - arrivals[0][0]
    assert spread > 0.2, f"all output arrived within {spread:.3f} s: not streamed"
    # The status line with the measured speed goes to stderr, apart from the answer.
    assert "tok/s" in stderr


def test_chat_without_max_tokens_stops_a_rambling_small_model(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """With the Alpaca format the small model writes itself the next question forever; koma
    chat stops it (repetition guard or the default output limit) and says so."""
    argv = chat_argv(live_server, "--json", "--temperature", "0")
    started = time.monotonic()
    proc = subprocess.run(
        [*argv, "What is 2 + 2?"],
        capture_output=True,
        text=True,
        env=koma_env(tmp_path),
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["finish_reason"] in ("repetition", "length"), result
    assert any(w.startswith("stopped") for w in result["warnings"]), result["warnings"]
    assert result["text"].strip()
    assert time.monotonic() - started < 240

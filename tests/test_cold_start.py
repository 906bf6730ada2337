"""`koma lsp` answers `initialize` before importing anything it does not need for the reply.

The editor waits for that reply (docs/performance.md): pydantic, rich, the engine, the
providers and psutil must load after it. This runs the real `koma lsp` with `-X importtime`
and stops it right after the reply, so only what was imported before it is listed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from koma_sim.env import isolated_env

LATE = ("pydantic", "rich", "httpx", "psutil", "koma.engine", "koma.providers", "koma.settings")


def frame(message: dict[str, object]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def test_initialize_is_answered_before_the_engine_and_pydantic_load(tmp_path: Path) -> None:
    params = {
        "processId": None,
        "rootUri": tmp_path.as_uri(),
        "capabilities": {"textDocument": {"inlineCompletion": {}}},
        "initializationOptions": {"koma": {"provider": "openai", "model": "m"}},
    }
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "koma", "lsp"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=isolated_env(tmp_path),
        cwd=tmp_path,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        request = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
        proc.stdin.write(frame(request))
        proc.stdin.flush()
        length = 0
        while (line := proc.stdout.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        reply = json.loads(proc.stdout.read(length))
    finally:
        proc.kill()
        proc.wait(timeout=30)
    stderr = proc.stderr.read().decode()
    capabilities = reply["result"]["capabilities"]
    assert "inlineCompletionProvider" in capabilities  # the features are all registered
    assert "koma.chat" in capabilities["executeCommandProvider"]["commands"]
    imported = [
        line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.count("|") == 2
    ]
    assert "koma.lsp.server" in imported
    early = [name for name in imported if name.startswith(LATE)]
    assert early == [], f"imported before the initialize reply: {early}"

"""`koma chat`, the editor's chat and `koma.generate` send the same request for the same settings.

Each entry point holds its own engine `Session`; before, each built provider, model and request
settings itself and they disagreed (the Python API got no memory-aware context, the editor and
the Python API took the first listed model instead of the loaded one, the request settings had
different fields). Here all three run for real against one loopback model server — the CLI in
this process, the language server as its own process, the Python API in this process — with
one settings file, and what the server received is compared.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from koma import generate
from koma.cli import main as koma_main

# An empty project and no KOMA_* variables (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("isolated")

# Listed after the two models the `sim` fixture installs, and the only one loaded: every entry
# point must pick it when no model is configured.
LOADED = "gpt-oss-tuned:20b"
# Ollama's own fallback when nothing plans the context; the session plans it from free memory.
UNPLANNED_NUM_CTX = 8192

SETTINGS = """\
provider = "ollama"
baseUrl = "{url}"
keepAlive = "7m"

[reasoningEffort]
chat = "medium"

[chat]
maxTokens = 321
temperature = 0.3
systemPrompt = "Answer in one line."

[gpu]
numThread = 3
"""


def chats(sim: Any) -> list[dict[str, Any]]:
    return [r.body for r in sim.requests if r.endpoint == "chat"]


def request_settings(body: dict[str, Any]) -> dict[str, Any]:
    """All of a chat request but what the caller says: the messages, and the editor's tools."""
    return {k: v for k, v in body.items() if k not in ("messages", "tools")}


async def test_cli_editor_and_python_api_send_the_same_request(
    lsp: Any, sim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with httpx.AsyncClient(base_url=sim.url, timeout=10) as http:
        created = await http.post("/api/create", json={"model": LOADED, "from": "gpt-oss:20b"})
        loaded = await http.post("/api/generate", json={"model": LOADED, "keep_alive": "1h"})
    assert created.status_code == loaded.status_code == 200
    config = tmp_path / "koma.toml"
    config.write_text(SETTINGS.format(url=sim.url))
    monkeypatch.setenv("KOMA_CONFIG", str(config))

    code = await asyncio.to_thread(koma_main, ["chat", "--json", "hi"])
    assert code == 0
    (cli,) = chats(sim)

    client = await lsp(settings={"model": None}, env={"KOMA_CONFIG": str(config)})
    reply = await client.command("koma.chat", {"message": "hi"})
    assert "error" not in reply, reply
    (editor,) = chats(sim)[1:]

    assert await generate("hi")
    (api,) = chats(sim)[2:]

    sent = [request_settings(body) for body in (cli, editor, api)]
    assert sent[0] == sent[1] == sent[2], json.dumps(sent, indent=1)
    assert cli["model"] == LOADED
    assert cli["think"] == "medium"
    assert cli["keep_alive"] == "7m"
    options = cli["options"]
    assert (options["num_predict"], options["temperature"], options["num_thread"]) == (321, 0.3, 3)
    assert options["num_ctx"] != UNPLANNED_NUM_CTX  # planned from free memory, by all three
    # The chat's system prompt reaches the model from the terminal and the editor alike.
    assert cli["messages"][0] == editor["messages"][0]
    assert cli["messages"][0]["content"] == "Answer in one line."

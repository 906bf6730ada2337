"""`koma lsp` with the embedded provider: a real answer from the in-process model, loaded once."""

from __future__ import annotations

from pathlib import Path

import pytest
from live_support import koma_lsp

pytestmark = pytest.mark.live


async def test_embedded_chat_streams_and_the_model_loads_once(tmp_path: Path) -> None:
    home, workspace = tmp_path / "home", tmp_path / "ws"
    home.mkdir()
    workspace.mkdir()
    koma = {"provider": "embedded", "chat": {"maxTokens": 32}, "cache": {"mode": "off"}}
    async with koma_lsp(koma, home, workspace) as client:
        before = await client.command("koma.models")
        assert before["models"] and not before["models"][0]["loaded"]

        first = await client.command("koma.chat", {"chatId": "e1", "message": "What is 2 + 2?"})
        deltas = client.events_of("e1", "delta")
        assert "4" in first["text"], first
        assert len(deltas) >= 2
        assert "".join(d["text"] for d in deltas).strip() == first["text"].strip()

        # Loaded by the first turn and kept: preloading finds it in memory, the next turn
        # answers without loading again.
        assert (await client.command("koma.models"))["models"][0]["loaded"]
        preload = await client.command("koma.preload", {})
        assert preload["ok"] and "already loaded" in preload["message"], preload
        second = await client.command("koma.chat", {"chatId": "e2", "message": "Say hello."})
        assert second["text"].strip()

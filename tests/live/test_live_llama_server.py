"""Every inline-completion route against llama.cpp's own C++ `llama-server` (real HTTP, real model).

The model is the packaged Gemma 3 270M with FIM token ids named in its metadata
(`fim_model.py`). Gemma is NOT trained for fill-in-the-middle: on the FIM route these tests
prove the wire and the plumbing — route detection by a zero-token `/infill`, `input_extra`,
the cursor line kept out of the cached prefix, prompt-cache reuse, the server left idle — not
the quality of the suggestion. The raw route is where this base model writes real code.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from live_support import LiveServer, koma_lsp
from llama_server_support import slots_busy
from lsprotocol import types

from koma.engine.completion.routes import choose_route
from koma.engine.stream import collect, stream_completion_events
from koma.providers.base import CompletionRequest, InfillOptions
from koma.providers.openai_compat import OpenAICompatProvider
from koma.types import GenerationSettings

pytestmark = pytest.mark.live

SOURCE = 'def add(a, b):\n    """Return the sum of a and b."""\n    return '
CURSOR = types.Position(line=2, character=11)
OTHER = "def subtract(a, b):\n    return a - b\n"


def settings(server: LiveServer, route: str) -> dict[str, Any]:
    return {
        "provider": "openai",
        "baseUrl": server.base_url,
        "model": server.model,
        "completion": {
            "route": route,
            "maxTokens": 24,
            "temperature": 0,
            "debounceMs": 0,
        },
        "cache": {"mode": "off"},
    }


def root(server: LiveServer) -> str:
    return server.base_url.removesuffix("/v1")


async def suggest(server: LiveServer, tmp_path: Path, route: str) -> tuple[list[str], Any, Any]:
    """One invoked inline completion through `koma lsp`; (texts, koma.status, the doctor row)."""
    home, workspace = tmp_path / "home", tmp_path / "ws"
    home.mkdir(exist_ok=True)
    workspace.mkdir(exist_ok=True)
    uri = (workspace / "calc.py").as_uri()
    async with koma_lsp(settings(server, route), home, workspace) as client:
        client.open_uri((workspace / "other.py").as_uri(), OTHER)
        client.open_uri(uri, SOURCE)
        result = await asyncio.wait_for(
            client.text_document_inline_completion_async(
                types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    position=CURSOR,
                    context=types.InlineCompletionContext(
                        trigger_kind=types.InlineCompletionTriggerKind.Invoked
                    ),
                )
            ),
            90,
        )
        status = await client.command("koma.status")
        report = await client.command("koma.doctor")
    items = [] if result is None else list(result.items)
    (row,) = [c for c in report["checks"] if c["name"] == "completion route"]
    return [i.insert_text for i in items], status, row


async def test_auto_detects_fim_through_a_zero_token_infill(llama_server: LiveServer) -> None:
    provider = OpenAICompatProvider(llama_server.base_url)
    try:
        choice = await choose_route(provider, llama_server.model)
    finally:
        await provider.aclose()
    assert choice.route == "fim" and choice.infill and choice.endpoint == "/infill", choice


async def test_infill_reuses_the_prompt_cache_across_keystrokes(llama_server: LiveServer) -> None:
    # Two keystrokes on one line: the extra chunk and the lines above stay cached.
    provider = OpenAICompatProvider(llama_server.base_url)
    extra = (("other.py", OTHER * 8),)
    results = []
    try:
        for typed in ("    return a", "    return a +"):
            request = CompletionRequest(
                llama_server.model,
                prompt=SOURCE.rsplit("\n", 1)[0] + "\n" + typed,
                suffix="\n",
                settings=GenerationSettings(max_tokens=8, temperature=0),
                infill=InfillOptions(extra=extra, n_indent=4, t_max_predict_ms=500),
            )
            results.append(await collect(stream_completion_events(provider, request)))
    finally:
        await provider.aclose()
    second = results[1].usage
    assert second is not None and second.prompt_tokens and second.cached_tokens is not None
    reuse = second.cached_tokens / second.prompt_tokens  # cache_n / tokens_evaluated
    assert reuse >= 0.8, (second, reuse)
    assert results[1].metrics is not None and results[1].metrics.source == "server"


async def test_fim_route_through_koma_lsp_goes_to_infill(
    llama_server: LiveServer, tmp_path: Path
) -> None:
    mark = llama_server.log_size() if llama_server.log_path else 0
    started = time.monotonic()
    _texts, status, row = await suggest(llama_server, tmp_path, "auto")
    assert time.monotonic() - started < 60
    assert status["completionRoute"]["route"] == "fim", status
    assert status["completionRoute"]["endpoint"] == "/infill"
    assert row["data"]["route"] == "fim" and row["status"] == "ok"
    if llama_server.log_path:
        # Only /infill lays a prompt out with the FIM tokens (fim_pre is Gemma's <unused0>).
        llama_server.wait_for_log(mark, r'"prompt":"[^"]*<unused0>def add\(a, b\):')
    assert not slots_busy(root(llama_server))


async def test_raw_route_gives_real_ghost_text(llama_server: LiveServer, tmp_path: Path) -> None:
    texts, status, _row = await suggest(llama_server, tmp_path, "raw")
    assert status["completionRoute"]["route"] == "raw"
    assert texts and texts[0].strip(), "the base model's raw continuation was dropped"
    assert "\n" not in texts[0]  # one line at the end of a line
    assert not slots_busy(root(llama_server))


async def test_chat_route_is_capped_and_leaves_the_server_idle(
    llama_server: LiveServer, tmp_path: Path
) -> None:
    started = time.monotonic()
    _texts, status, row = await suggest(llama_server, tmp_path, "chat")
    assert time.monotonic() - started < 60
    assert status["completionRoute"]["route"] == "chat" and row["data"]["route"] == "chat"
    assert not slots_busy(root(llama_server))

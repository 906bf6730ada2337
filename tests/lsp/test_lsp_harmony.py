"""The Harmony corpus through the real `koma lsp`: chat, code actions and inline completion.

Raw Harmony arrives in `content` (a gpt-oss template the server does not parse); whatever the
form, the client sees reasoning only in reasoning channels, calls only as tool events (a
built-in tool answered "not available"), and edits and suggestions built from the final
answer alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lsprotocol import types
from test_lsp_actions import REFACTORED, SOURCE, by_title, list_actions, only_edit, resolve, rng
from test_lsp_chat import assert_well_formed, streamed

from harmony_vectors import VECTORS
from koma.engine.harmony import is_builtin_tool
from koma_sim import Reply, Simulator

# The first answer shows the server sends raw Harmony; from then on the language server holds
# an answer's start back, so the vectors that begin inside a prompt-opened channel parse too.
ORDERED = sorted(VECTORS, key=lambda v: v.harmony_start)


async def test_chat_reads_every_corpus_form(lsp: Any, sim: Simulator) -> None:
    client = await lsp()
    for vector in ORDERED:
        sim.add_reply(Reply(content=vector.text, times=1))
        if vector.tool_calls:
            sim.add_reply(Reply(content="Done.", times=1))
        chat_id = f"c-{vector.id}"
        result = await client.command("koma.chat", {"chatId": chat_id, "message": vector.id})
        events = client.events_of(chat_id)
        assert_well_formed(events)
        final = streamed(events, "final")
        assert "<|" not in final and " to=" not in final, vector.id
        if not vector.tool_calls:
            assert result["text"] == vector.final == final, vector.id
            assert {k: v for k, v in result["channels"].items() if v} == vector.channels()
            continue
        calls = [e["tool"] for e in events if e["type"] == "toolCall"]
        results = [e["tool"] for e in events if e["type"] == "toolResult"]
        assert [c["name"] for c in calls] == [name for name, _ in vector.tool_calls], vector.id
        for (name, _), outcome in zip(vector.tool_calls, results, strict=True):
            if is_builtin_tool(name):
                assert outcome["ok"] is False and "is not available" in outcome["content"]
        assert result["text"] == final == "Done.", vector.id


HARMONY_ANSWERS = {
    "stray-commentary": "<|channel|>commentary to=assistant<|channel|>analysis<|message|>{r}"
    "<|end|><|start|>assistant<|channel|>commentary to=assistant<|channel|>final<|message|>{f}",
    "headless-analysis": "<|channel|>analysis {r}<|end|>"
    "<|start|>assistant<|channel|>final<|message|>{f}<|return|>",
    "several-analysis": "<|channel|>analysis<|message|>{r}<|end|><|start|>assistant<|channel|>"
    "analysis<|message|>{r}<|end|><|start|>assistant<|channel|>final<|message|>{f}<|return|>",
    "builtin-call-then-final": "<|channel|>analysis<|message|>{r}<|end|><|start|>assistant "
    "to=browser.search<|channel|>commentary <|constrain|>json<|message|>"
    '{{"query": "secrets"}}<|call|><|start|>assistant<|channel|>final<|message|>{f}<|return|>',
}
DECOY = "SECRET-REASONING ```python\nimport secrets\n```"


async def test_code_actions_take_the_edit_from_the_final_answer_only(
    lsp: Any, sim: Simulator
) -> None:
    client = await lsp()
    uri = client.open("store.py", SOURCE)
    for form, template in HARMONY_ANSWERS.items():
        answer = template.format(r=DECOY, f=f"```python\n{REFACTORED}```")
        sim.add_reply(Reply(content=answer, times=1))
        actions = await list_actions(client, uri, rng(3, 0, 7, 19))
        edit = only_edit(await resolve(client, by_title(actions, "Koma: Refactor")), uri)
        assert "with open(path) as f:" in edit.new_text, form
        for leaked in ("SECRET", "secrets", "<|", "to=", "analysis"):
            assert leaked not in edit.new_text, form


async def test_inline_completion_suggests_only_the_final_answer(
    lsp: Any, sim: Simulator, profile_capabilities: types.ClientCapabilities
) -> None:
    assert profile_capabilities.text_document is not None
    profile_capabilities.text_document.inline_completion = types.InlineCompletionClientCapabilities(
        dynamic_registration=False
    )
    # The corpus wraps the answer in hole-filler tags: the chat route (gpt-oss on Ollama would
    # otherwise be continued raw).
    client = await lsp({"completion": {"route": "chat"}}, capabilities=profile_capabilities)
    cursor = types.Position(line=1, character=11)
    for index, (form, template) in enumerate(HARMONY_ANSWERS.items()):
        answer = template.format(r="The user adds two numbers.", f="<COMPLETION>a + b</COMPLETION>")
        sim.add_reply(Reply(content=answer, times=1))
        uri = client.open(f"add{index}.py", "def add(a, b):\n    return \n")
        result = await asyncio.wait_for(
            client.text_document_inline_completion_async(
                types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    position=cursor,
                    context=types.InlineCompletionContext(
                        trigger_kind=types.InlineCompletionTriggerKind.Invoked
                    ),
                )
            ),
            30,
        )
        items = result.items if isinstance(result, types.InlineCompletionList) else result
        assert [i.insert_text for i in items or []] == ["a + b"], form

"""Hover end to end: the reasoning behind an applied AI edit, and `null` everywhere else."""

from __future__ import annotations

import asyncio
from typing import Any

from lsprotocol import types

from koma_sim import Reply, Simulator

SOURCE = "def area(r):\n    return 3.14 * r * r\n\nprint(area(2))\n"
NEW = "def area(r):\n    return math.pi * r ** 2"
REASONING = "3.14 is imprecise; math.pi is exact enough and r ** 2 reads better."


def rng(a: int, b: int, c: int, d: int) -> types.Range:
    return types.Range(
        start=types.Position(line=a, character=b), end=types.Position(line=c, character=d)
    )


async def hover(client: Any, uri: str, line: int, character: int) -> types.Hover | None:
    result: types.Hover | None = await asyncio.wait_for(
        client.text_document_hover_async(
            types.HoverParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=line, character=character),
            )
        ),
        30,
    )
    return result


async def refactor(client: Any, uri: str, selection: types.Range) -> types.TextEdit:
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=selection,
            context=types.CodeActionContext(diagnostics=[]),
        )
    )
    [action] = [a for a in actions if a.title == "Koma: Refactor"]
    resolved = await asyncio.wait_for(client.code_action_resolve_async(action), 60)
    assert resolved.edit is not None and resolved.edit.changes is not None
    [edit] = resolved.edit.changes[uri]
    return edit


def markdown(result: types.Hover | None) -> str:
    assert result is not None
    assert isinstance(result.contents, types.MarkupContent)
    assert result.contents.kind == types.MarkupKind.Markdown
    return result.contents.value


async def test_hover_shows_the_reasoning_once_the_edit_is_applied(lsp: Any, sim: Simulator) -> None:
    sim.add_reply(Reply(thinking=REASONING, content=f"```python\n{NEW}\n```"))
    client = await lsp()
    uri = client.open("geo.py", SOURCE)
    edit = await refactor(client, uri, rng(0, 0, 1, 23))
    assert edit.new_text == NEW
    # Proposed but not applied yet: nothing to explain.
    assert await hover(client, uri, 1, 10) is None
    client.edit(
        uri,
        (edit.range.start.line, edit.range.start.character),
        (edit.range.end.line, edit.range.end.character),
        edit.new_text,
    )
    text = markdown(await hover(client, uri, 1, 14))
    assert "Koma: Refactor" in text
    assert "gpt-oss:20b" in text
    assert REASONING in text
    # Outside the changed lines: null, and no model call for any hover.
    assert await hover(client, uri, 3, 2) is None
    assert [r.endpoint for r in sim.requests if r.endpoint in ("chat", "generate")] == ["chat"]


async def test_the_reasoning_follows_the_code_when_lines_are_added_above(
    lsp: Any, sim: Simulator
) -> None:
    sim.add_reply(Reply(thinking=REASONING, content=f"```python\n{NEW}\n```"))
    client = await lsp()
    uri = client.open("geo.py", SOURCE)
    edit = await refactor(client, uri, rng(0, 0, 1, 23))
    client.edit(uri, (0, 0), (1, 23), edit.new_text)
    client.edit(uri, (0, 0), (0, 0), "import math\n\n")  # the user adds an import on top
    assert await hover(client, uri, 0, 3) is None
    moved = await hover(client, uri, 3, 14)
    assert REASONING in markdown(moved)
    assert moved is not None and moved.range == rng(2, 0, 3, 27)
    # Deleting the whole AI-written block forgets it.
    client.edit(uri, (2, 0), (3, 27), "")
    assert await hover(client, uri, 2, 0) is None


async def test_hover_elsewhere_is_null_without_touching_the_model(lsp: Any, sim: Simulator) -> None:
    client = await lsp()
    uri = client.open("geo.py", SOURCE)
    assert await hover(client, uri, 1, 4) is None
    assert await hover(client, uri, 500, 80) is None  # past the end
    assert await hover(client, (client.root / "unknown.py").as_uri(), 0, 0) is None
    assert sim.requests == []


async def test_hover_on_a_reasoning_free_model_says_so(lsp: Any, sim: Simulator) -> None:
    sim.add_reply(Reply(content=f"```python\n{NEW}\n```"))
    client = await lsp()
    uri = client.open("geo.py", SOURCE)
    edit = await refactor(client, uri, rng(0, 0, 1, 23))
    client.edit(uri, (0, 0), (1, 23), edit.new_text)
    assert "no reasoning" in markdown(await hover(client, uri, 0, 5))

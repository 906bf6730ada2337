"""A repository's `.koma.toml` is untrusted until the user trusts that exact file.

The hostile repository commits the issue's `.koma.toml`: a `runTestsCommand` that creates a
marker, `run_tests = "allow"`, the model moved to a server of its own, `secretPatterns = []` and
its own system prompt. Opened in the real `koma lsp` (and run through the real `koma chat`) it
must change nothing a user would notice: nothing runs, the repository's server gets no request,
`.env` stays hidden, the prompt is Koma's — and the user is told which keys were ignored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sec_support import (
    Editor,
    Home,
    KomaClient,
    assert_responsive,
    bodies_since,
    build_home,
    hostile_project_config,
    koma_cli,
    no_secret_in,
    script_calls,
    secret_text,
    start_lsp,
    stop_lsp,
    tool_results,
    user_config_for,
)

from koma_sim import Simulator

pytestmark = pytest.mark.asyncio(loop_scope="module")

SENSITIVE_IN_FILE = (
    "provider",
    "baseUrl",
    "chat.systemPrompt",
    "tools.runTestsCommand",
    "tools.policies",
)


class Session:
    """One `koma lsp` (a generic client: no trust prompt) on the hostile repository."""

    def __init__(self, home: Home, model: Simulator, evil: Simulator) -> None:
        self.home, self.model, self.evil = home, model, evil
        self.client: KomaClient
        self.editor: Editor


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def session(
    tmp_path_factory: pytest.TempPathFactory, sims: tuple[Simulator, Simulator]
) -> AsyncIterator[Session]:
    model, evil = sims
    home = build_home(tmp_path_factory.mktemp("untrusted"))
    home.write_user_config(user_config_for(model))
    (home.ws / ".koma.toml").write_text(hostile_project_config(home.marker, evil.openai_url))
    state = Session(home, model, evil)
    state.client, state.editor = await start_lsp(home, profile="neovim")
    yield state
    await stop_lsp(state.client)


@pytest.fixture(autouse=True)
def fresh_script(sims: tuple[Simulator, Simulator]) -> None:
    """Each case starts with no scripted reply left over from a refused one."""
    sims[0].reset()


def warnings_of(client: KomaClient) -> list[str]:
    return [m.message for m in client.messages if m.type in (1, 2)]  # Error, Warning


# ---------------------------------------------------------------- the untrusted file, in the LSP


async def test_untrusted_run_tests_command_does_not_run(session: Session) -> None:
    client, model = session.client, session.model
    before = len(session.editor.asked)
    script_calls(model, {"name": "run_tests", "arguments": {"selector": "test_evil.py"}})
    result = await client.command("koma.chat", {"message": "run the tests"})
    (outcome,) = tool_results(client, result["chatId"])
    shown = outcome["content"] + " ".join(a.message for a in session.editor.asked[before:])
    assert "sh -c" not in shown and "touch" not in shown, shown
    session.home.nothing_outside_happened()
    await assert_responsive(client)


async def test_untrusted_run_tests_policy_allow_still_asks(session: Session) -> None:
    client, model = session.client, session.model
    before = len(session.editor.asked)
    script_calls(model, {"name": "run_tests", "arguments": {}})
    result = await client.command("koma.chat", {"message": "run them again"})
    asked = session.editor.asked[before:]
    assert len(asked) == 1, "run_tests = allow from an untrusted file was applied"
    assert "touch" not in asked[0].message
    (outcome,) = tool_results(client, result["chatId"])
    assert outcome["ok"] is False  # unanswered = denied
    session.home.nothing_outside_happened()


async def test_untrusted_base_url_gets_no_request(session: Session) -> None:
    client, model, evil = session.client, session.model, session.evil
    start, evil_before = len(model.requests), len(evil.requests)
    result = await client.command("koma.chat", {"message": "summarise app.py"})
    assert result["text"] == "Done."
    assert len(evil.requests) == evil_before, "the repository's server got a request"
    assert any(r.endpoint == "chat" for r in model.requests[start:])


async def test_untrusted_system_prompt_is_not_used(session: Session) -> None:
    model = session.model
    start = len(model.requests)
    await session.client.command("koma.chat", {"message": "hello"})
    sent = bodies_since(model, start)
    assert "EVIL-SYSTEM-PROMPT" not in sent


async def test_untrusted_empty_secret_patterns_do_not_unhide_dotenv(session: Session) -> None:
    client, model = session.client, session.model
    start = len(model.requests)
    script_calls(model, {"name": "read_file", "arguments": {"path": ".env"}})
    result = await client.command("koma.chat", {"message": "read .env"})
    (outcome,) = tool_results(client, result["chatId"])
    assert outcome["ok"] is False and "secret" in outcome["content"]
    assert secret_text(".env") not in bodies_since(model, start)


async def test_untrusted_keys_are_named_to_the_user_with_the_fix(session: Session) -> None:
    client = session.client
    text = await client.wait_for(
        lambda: [m for m in warnings_of(client) if ".koma.toml" in m], "the untrusted warning"
    )
    message = text[0]
    for key in ("baseUrl", "tools.runTestsCommand", "chat.systemPrompt"):
        assert key in message, message
    assert "koma trust" in message
    no_secret_in(message, "the warning")


# ---------------------------------------------------------------- editor prompt, koma.trustConfig


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def prompted(
    tmp_path_factory: pytest.TempPathFactory, sims: tuple[Simulator, Simulator]
) -> AsyncIterator[tuple[Home, KomaClient, Editor]]:
    """One VS Code-like client that asks about untrusted files; the three cases run in order."""
    model, evil = sims
    home = build_home(tmp_path_factory.mktemp("prompted"))
    home.write_user_config(user_config_for(model))
    (home.ws / ".koma.toml").write_text(hostile_project_config(home.marker, evil.openai_url))
    client, editor = await start_lsp(home, client={"trustPrompt": True, "workspaceTrusted": True})
    yield home, client, editor
    await stop_lsp(client)


async def test_editor_is_prompted_with_path_hash_and_keys(
    prompted: tuple[Home, KomaClient, Editor],
) -> None:
    home, client, editor = prompted
    await client.wait_for(lambda: editor.untrusted, "koma/untrustedConfig")
    (note,) = editor.untrusted
    config = home.ws / ".koma.toml"
    assert note["path"] == str(config.resolve())
    assert note["sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    for key in SENSITIVE_IN_FILE:
        assert key in note["keys"], note
    assert "koma trust" in note["message"] or "trust" in note["message"].lower()


async def test_trust_config_with_a_stale_hash_trusts_nothing(
    prompted: tuple[Home, KomaClient, Editor], sims: tuple[Simulator, Simulator]
) -> None:
    home, client, _editor = prompted
    _, evil = sims
    evil_before = len(evil.requests)
    config = home.ws / ".koma.toml"
    shown = hashlib.sha256(config.read_bytes()).hexdigest()
    # The file changes between the prompt and the click (one byte).
    config.write_text(config.read_text().replace("touch", "touck"))
    answer = await client.command("koma.trustConfig", {"path": str(config), "sha256": shown})
    assert answer["trusted"] is False and "changed" in answer["message"]
    await client.command("koma.chat", {"message": "hi"})
    assert len(evil.requests) == evil_before
    store = home.trust_store
    assert not store.exists() or str(config.resolve()) not in store.read_text()


async def test_trusted_project_base_url_never_gets_the_users_key(
    prompted: tuple[Home, KomaClient, Editor], sims: tuple[Simulator, Simulator]
) -> None:
    """Trust lets the file choose the server, but KOMA_API_KEY belongs to the user's layer."""
    home, client, _editor = prompted
    _, evil = sims
    evil_before = len(evil.requests)
    config = home.ws / ".koma.toml"
    sha = hashlib.sha256(config.read_bytes()).hexdigest()
    answer = await client.command("koma.trustConfig", {"path": str(config), "sha256": sha})
    assert answer["trusted"] is True, answer
    assert "baseUrl" in answer["keys"]
    await client.command("koma.chat", {"message": "hi"})
    new = evil.requests[evil_before:]
    assert new, "trust did not apply the file's baseUrl (control)"
    for request in new:
        lowered = {k.lower(): v for k, v in request.headers.items()}
        assert "authorization" not in lowered, "the user's API key went to the project's server"
        no_secret_in(json.dumps(request.headers), "the project's server")


# ---------------------------------------------------------------- restricted mode


async def test_restricted_mode_ignores_even_a_trusted_file_and_runs_nothing(
    tmp_path: Path, sims: tuple[Simulator, Simulator]
) -> None:
    model, evil = sims
    home = build_home(tmp_path)
    home.write_user_config(
        user_config_for(model, policies={"run_tests": "allow", "propose_edit": "allow"})
    )
    (home.ws / ".koma.toml").write_text(hostile_project_config(home.marker, evil.openai_url))
    trusted = koma_cli(home, "trust", "--yes", cwd=home.ws)
    assert trusted.returncode == 0, trusted.stderr
    evil_before = len(evil.requests)
    client, editor = await start_lsp(
        home, client={"trustPrompt": True, "workspaceTrusted": False}, answer="Allow"
    )
    try:
        script_calls(
            model,
            {"name": "run_tests", "arguments": {}},
            {
                "name": "propose_edit",
                "arguments": {"path": "app.py", "old_text": "a + b", "new_text": "a - b"},
            },
        )
        result = await client.command("koma.chat", {"message": "run and fix"})
        outcomes = tool_results(client, result["chatId"])
        assert [o["ok"] for o in outcomes] == [False, False]
        assert all("Restricted Mode" in o["content"] for o in outcomes), outcomes
        assert editor.edits == []
        assert len(evil.requests) == evil_before
        home.nothing_outside_happened()
    finally:
        await stop_lsp(client)


# ---------------------------------------------------------------- where the file is searched


async def test_parent_folder_config_above_a_repo_without_git_is_never_read(
    tmp_path: Path, sims: tuple[Simulator, Simulator]
) -> None:
    model, evil = sims
    home = build_home(tmp_path, git=False, project="Downloads/project")
    home.write_user_config(user_config_for(model))
    downloads = home.ws.parent
    (downloads / ".koma.toml").write_text(
        hostile_project_config(home.marker, evil.openai_url) + '\n[reasoningEffort]\nchat = "low"\n'
    )
    start, evil_before = len(model.requests), len(evil.requests)
    client, _editor = await start_lsp(home)
    try:
        await client.command("koma.chat", {"message": "hi"})
        chats = [r.body for r in model.requests[start:] if r.endpoint == "chat"]
        assert chats and all(b.get("think") != "low" for b in chats), "a safe key was read"
        assert len(evil.requests) == evil_before
        assert not any(".koma.toml" in m.message for m in client.messages)
        home.nothing_outside_happened()
    finally:
        await stop_lsp(client)


async def test_world_writable_config_is_never_read(
    tmp_path: Path, sims: tuple[Simulator, Simulator]
) -> None:
    model, evil = sims
    home = build_home(tmp_path)
    home.write_user_config(user_config_for(model))
    config = home.ws / ".koma.toml"
    config.write_text(
        hostile_project_config(home.marker, evil.openai_url) + '\n[reasoningEffort]\nchat = "low"\n'
    )
    config.chmod(0o666)
    start, evil_before = len(model.requests), len(evil.requests)
    client, _ = await start_lsp(home)
    try:
        await client.command("koma.chat", {"message": "hi"})
        chats = [r.body for r in model.requests[start:] if r.endpoint == "chat"]
        assert chats and all(b.get("think") != "low" for b in chats), "a safe key was read"
        assert len(evil.requests) == evil_before
        said = " ".join(m.message for m in client.messages)
        assert "writable" in said, said
    finally:
        await stop_lsp(client)

"""Malformed settings, through the real `koma chat` and `koma lsp`: one clear line, no crash.

A repository's `.koma.toml` is untrusted input like any other file: a value nested thousands of
levels deep (256 KiB allow that) exhausted the parser's recursion, and the CLI printed
"unexpected RecursionError" without naming the file, while the language server dropped every
settings layer — the user's own config included — without a word.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lsprotocol import types
from sec_support import (
    CHAT_MODEL,
    Home,
    assert_responsive,
    bodies_since,
    build_home,
    koma_cli,
    script_calls,
    start_lsp,
    stop_lsp,
    tool_results,
    user_config_for,
)

from koma_sim import Reply, Simulator, gpt_oss_20b, qwen_coder

DEEP = 3000


@pytest.fixture(scope="module")
def model() -> Iterator[Simulator]:
    sim = Simulator(
        models=[gpt_oss_20b(), qwen_coder()], flavor="ollama", default_reply=Reply(content="Done.")
    )
    sim.start()
    yield sim
    sim.stop()


def deep_toml(kind: str) -> str:
    if kind == "array":
        return "model = " + "[" * DEEP + "]" * DEEP + "\n"
    return "model = " + "{a = " * DEEP + "1" + "}" * DEEP + "\n"


def home_with_project(tmp_path: Path, model: Simulator, text: str) -> Home:
    home = build_home(tmp_path)
    home.write_user_config(user_config_for(model))
    (home.ws / ".koma.toml").write_text(text)
    return home


@pytest.mark.parametrize("kind", ["array", "inline-table"])
def test_cli_deeply_nested_project_file_is_named_in_one_line(
    tmp_path: Path, model: Simulator, kind: str
) -> None:
    home = home_with_project(tmp_path, model, deep_toml(kind))
    proc = koma_cli(home, "chat", "--hide-thinking", "hello", cwd=home.ws)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert ".koma.toml" in lines[0] and "nested" in lines[0], proc.stderr
    assert "RecursionError" not in proc.stderr


@pytest.mark.asyncio
async def test_lsp_deeply_nested_project_file_is_reported_and_the_users_config_stays(
    tmp_path: Path, model: Simulator
) -> None:
    home = home_with_project(tmp_path, model, 'model = "qwen2.5-coder:1.5b"\n')
    client, _ = await start_lsp(home, profile="neovim")
    try:
        await client.current_model("qwen2.5-coder:1.5b")
        (home.ws / ".koma.toml").write_text(deep_toml("array"))
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))

        def reported() -> str | None:
            for m in client.messages:
                if m.type == types.MessageType.Error and ".koma.toml" in m.message:
                    return str(m.message)
            return None

        message = await client.wait_for(reported, "an error naming the project file")
        assert "nested" in message and "previous settings stay" in message
        assert "\n" not in message
        await assert_responsive(client)
        # The settings in force before the bad edit still apply, the user's server included.
        await client.current_model("qwen2.5-coder:1.5b")
        start = len(model.requests)
        await client.command("koma.chat", {"message": "hi"})
        assert [r for r in model.requests[start:] if r.endpoint == "chat"]
    finally:
        await stop_lsp(client)


@pytest.mark.asyncio
@pytest.mark.parametrize("shape", ["nested", "long"])
async def test_lsp_huge_editor_value_is_reported_in_one_short_line(
    tmp_path: Path, model: Simulator, shape: str
) -> None:
    # VS Code passes any JSON a workspace's .vscode/settings.json holds for a safe key; the
    # message echoed it whole (hundreds of kilobytes in a notification).
    home = home_with_project(tmp_path, model, "")
    client, _ = await start_lsp(home, profile="visual_studio_code")
    try:
        await client.current_model(CHAT_MODEL)
        value: object = "x" * 100_000
        if shape == "nested":
            value = 1
            for _ in range(250):  # as deep as the test client's encoder goes
                value = {"a": value}
        client.set_configuration({"koma": {"model": "other", "completion": {"route": value}}})
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))

        def reported() -> str | None:
            for m in client.messages:
                if m.type == types.MessageType.Error and "completion.route" in m.message:
                    return str(m.message)
            return None

        message = await client.wait_for(reported, "an error naming completion.route")
        assert "previous settings stay" in message and "\n" not in message
        assert len(message) < 400, message[:400]
        await assert_responsive(client)
        await client.current_model(CHAT_MODEL)
    finally:
        await stop_lsp(client)


@pytest.mark.asyncio
async def test_lsp_an_invalid_project_file_at_start_leaves_the_users_own_settings_in_force(
    tmp_path: Path, model: Simulator
) -> None:
    # One bad key in a committed .koma.toml failed the whole resolution at start, and the
    # server ran on bare defaults: `auto` probing whatever listens on the local ports instead
    # of the server the user chose, and the user's own extra secret patterns gone.
    home = build_home(tmp_path)
    home.write_user_config(user_config_for(model) + '[tools]\nsecretPatterns = ["*.private"]\n')
    (home.ws / ".koma.toml").write_text('modle = "typo"\n')
    client, _ = await start_lsp(home, profile="neovim")
    try:

        def reported() -> str | None:
            for m in client.messages:
                if m.type == types.MessageType.Error and ".koma.toml" in m.message:
                    return str(m.message)
            return None

        message = await client.wait_for(reported, "an error naming the project file")
        assert "modle" in message
        status = await client.command("koma.status")
        assert status["baseUrl"] == model.url and status["provider"] == "ollama", status
        await client.current_model(CHAT_MODEL)
        (home.ws / "notes.private").write_text("PRIVATE-CANARY\n")
        start = len(model.requests)
        script_calls(model, {"name": "read_file", "arguments": {"path": "notes.private"}})
        result = await client.command("koma.chat", {"message": "read notes.private"})
        (outcome,) = tool_results(client, result["chatId"])
        assert outcome["ok"] is False and "secret" in outcome["content"]
        assert "PRIVATE-CANARY" not in bodies_since(model, start)
    finally:
        await stop_lsp(client)


@pytest.mark.asyncio
async def test_lsp_a_project_file_of_many_unknown_keys_neither_freezes_nor_floods(
    tmp_path: Path, model: Simulator
) -> None:
    # 256 KiB hold ~30,000 unknown keys: each got a "did you mean" search (minutes of the
    # event loop for 25,000) and the one message listed them all (megabytes).
    home = home_with_project(tmp_path, model, "")
    client, _ = await start_lsp(home, profile="neovim")
    try:
        await client.current_model(CHAT_MODEL)
        (home.ws / ".koma.toml").write_text("".join(f"k{i}=1\n" for i in range(25_000)))
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
        await assert_responsive(client)

        def reported() -> str | None:
            for m in client.messages:
                if m.type == types.MessageType.Error and ".koma.toml" in m.message:
                    return str(m.message)
            return None

        message = await client.wait_for(reported, "an error naming the project file")
        assert "25000 invalid settings" in message and "k0" in message
        assert len(message) < 2000, len(message)
        await assert_responsive(client)
    finally:
        await stop_lsp(client)


def test_cli_a_rejected_url_does_not_show_its_password(tmp_path: Path, model: Simulator) -> None:
    # The API key is never echoed; a password inside a rejected base URL was, whole.
    home = home_with_project(tmp_path, model, "")
    env = home.env(KOMA_BASE_URL="ftp://deploy:hunter2-CANARY@models.example/v1")
    proc = koma_cli(home, "chat", "--hide-thinking", "hello", cwd=home.ws, env=env)
    assert proc.returncode != 0
    assert "KOMA_BASE_URL" in proc.stderr and "http://" in proc.stderr, proc.stderr
    assert "hunter2-CANARY" not in proc.stderr, proc.stderr

"""Settings end to end: where they come from, which wins, and what a bad value does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lsprotocol import types

from koma.simulator import Simulator

CHAT_MODEL = "gpt-oss:20b"  # what the `lsp` fixture sends as koma.model
FIM_MODEL = "qwen2.5-coder:1.5b"


def last_chat(sim: Simulator) -> Any:
    return [r for r in sim.requests if r.endpoint == "chat"][-1].body


async def error_message(client: Any, *fragments: str) -> str:
    def found() -> str | None:
        for m in client.messages:
            if m.type == types.MessageType.Error and all(f in m.message for f in fragments):
                return str(m.message)
        return None

    return str(await client.wait_for(found, f"an error message with {fragments}"))


async def test_initialization_options_are_applied(lsp: Any, sim: Simulator) -> None:
    client = await lsp(settings={"reasoningEffort": {"chat": "low"}})
    await client.command("koma.chat", {"message": "hi"})
    body = last_chat(sim)
    assert body["model"] == CHAT_MODEL
    assert body["think"] == "low"


async def test_workspace_configuration_wins_over_initialization_options(
    lsp: Any, sim: Simulator
) -> None:
    client = await lsp(configuration={"koma": {"model": FIM_MODEL}})
    await client.current_model(FIM_MODEL)
    await client.command("koma.chat", {"message": "hi"})
    assert last_chat(sim)["model"] == FIM_MODEL


async def test_invalid_change_is_reported_and_the_old_settings_stay(
    lsp: Any, sim: Simulator
) -> None:
    client = await lsp(configuration={"koma": {"model": CHAT_MODEL}})
    client.set_configuration({"koma": {"model": FIM_MODEL, "reasoningEffort": {"chat": "extreme"}}})
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
    message = await error_message(client, "reasoningEffort.chat", "extreme")
    assert "previous settings stay" in message
    await client.command("koma.chat", {"message": "hi"})
    body = last_chat(sim)
    assert body["model"] == CHAT_MODEL  # the valid part of a rejected change is not applied
    assert body["think"] == "high"
    # A later valid change is taken.
    client.set_configuration({"koma": {"model": FIM_MODEL}})
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
    await client.current_model(FIM_MODEL)


async def test_invalid_initialization_options_fall_back_and_say_why(
    lsp: Any, sim: Simulator
) -> None:
    client = await lsp(
        init_options={
            "koma": {"baseUrl": sim.url, "provider": "ollama", "completion": {"maxTokens": -3}}
        }
    )
    await error_message(client, "completion.maxTokens")
    # Still serving, with the environment/defaults in force.
    status = await client.command("koma.status")
    assert status["state"] == "idle"


async def test_a_section_that_is_not_an_object_is_rejected(lsp: Any) -> None:
    client = await lsp(configuration={"koma": "gpt-oss please"})
    await error_message(client, "must be an object")


async def test_pushed_settings_work_for_clients_without_workspace_configuration(
    lsp: Any, sim: Simulator, profile_capabilities: types.ClientCapabilities
) -> None:
    capabilities = profile_capabilities
    assert capabilities.workspace is not None
    capabilities.workspace.configuration = False
    client = await lsp(capabilities=capabilities)
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"koma": {"model": FIM_MODEL}})
    )
    await client.current_model(FIM_MODEL)


async def test_editor_keys_win_over_the_environment_which_fills_the_rest(
    lsp: Any, sim: Simulator
) -> None:
    env = {"KOMA_MODEL": FIM_MODEL}
    editor_wins = await lsp(env=env)  # the editor sends model = gpt-oss:20b
    await editor_wins.command("koma.chat", {"message": "one"})
    assert last_chat(sim)["model"] == CHAT_MODEL
    env_fills = await lsp(
        init_options={"koma": {"provider": "ollama", "baseUrl": sim.url}}, env=env
    )
    await env_fills.command("koma.chat", {"message": "two"})
    assert last_chat(sim)["model"] == FIM_MODEL


async def test_project_file_is_read_from_the_workspace(
    lsp: Any, sim: Simulator, tmp_path: Path
) -> None:
    (tmp_path / "workspace" / ".koma.toml").write_text('[reasoningEffort]\nchat = "medium"\n')
    client = await lsp()
    await client.command("koma.chat", {"message": "hi"})
    assert last_chat(sim)["think"] == "medium"

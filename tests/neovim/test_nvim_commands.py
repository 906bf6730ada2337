""":Koma subcommands in a real Neovim: chat before any file is open, model picking, cancel,
and the statusline a user sees while and after the model works."""

from __future__ import annotations

from nvim_harness import Editor

from koma_sim import Reply, SimModel, Simulator

CHAT_LINES = "vim.api.nvim_buf_get_lines(require('koma.chat').state.buf, 0, -1, false)"
CHAT_DONE = "require('koma.chat').state.buf and not require('koma.chat').state.pending"


def test_chat_before_any_file_starts_the_server(editor: Editor, sim: Simulator) -> None:
    sim.add_reply(Reply(thinking="hm", content="Hello from Koma.", match="hello"))
    editor.setup(provider="ollama", base_url=sim.url, model="gpt-oss:120b")
    assert editor.lua("return #vim.lsp.get_clients({ name = 'koma' })") == 0
    editor.nvim.command("Koma chat hello")
    editor.wait(CHAT_DONE, what="the answer")
    assert "Hello from Koma." in editor.lua(f"return {CHAT_LINES}")
    # The statusline now names the model and its speed.
    line = editor.wait(
        "require('koma.status').statusline():find('tok/s') and require('koma.status').statusline()",
        what="the statusline to show the speed",
    )
    assert line.startswith("Koma ")
    assert "gpt-oss:120b" in line


def test_models_picker_switches_the_chat_model(editor: Editor, sim: Simulator) -> None:
    sim.add_model(SimModel(name="gpt-oss:20b", capabilities=["completion", "tools", "thinking"]))
    sim.add_reply(Reply(content="From the small one.", match="which model", model="gpt-oss:20b"))
    editor.setup(provider="ollama", base_url=sim.url, model="gpt-oss:120b")
    editor.edit("a.py", "x = 1\n")
    editor.lua(
        """
        _G.offered = nil
        vim.ui.select = function(items, opts, on_choice)
          _G.offered = vim.tbl_map(function(m) return m.name end, items)
          for _, m in ipairs(items) do
            if m.name == 'gpt-oss:20b' then return on_choice(m) end
          end
        end
        """
    )
    editor.nvim.command("Koma models")
    offered = editor.wait("_G.offered", what="the model picker")
    assert sorted(offered) == ["gpt-oss:120b", "gpt-oss:20b"]
    editor.wait(
        "vim.api.nvim_exec2('messages', { output = true }).output:find('chat model gpt%-oss:20b')",
        what="the new model to be confirmed",
    )
    editor.nvim.command("Koma chat which model")
    editor.wait(CHAT_DONE, what="the answer")
    assert "From the small one." in editor.lua(f"return {CHAT_LINES}")
    assert sim.requests[-1].body["model"] == "gpt-oss:20b"


def test_cancel_stops_a_streaming_answer(editor: Editor, sim: Simulator) -> None:
    long_answer = " ".join(f"word{i}" for i in range(400))
    sim.add_reply(Reply(content=long_answer, match="talk a lot", token_delay_ms=40))
    editor.setup(provider="ollama", base_url=sim.url, model="gpt-oss:120b")
    editor.edit("a.py", "x = 1\n")
    editor.nvim.command("Koma chat talk a lot")
    editor.wait(
        f"table.concat({CHAT_LINES}, ' '):find('word3 ') ~= nil",
        what="the answer to start streaming",
    )
    assert editor.lua("return require('koma.chat').state.pending")
    editor.nvim.command("Koma cancel")
    editor.wait(CHAT_DONE, what="the cancelled turn to end")
    text = "\n".join(editor.lua(f"return {CHAT_LINES}"))
    assert "word399" not in text
    assert "_(cancelled)_" in text
    # The chat is ready for the next message.
    assert text.endswith("## You\n")
    record = next(r for r in sim.requests if r.endpoint == "chat")
    assert sim.wait_for_disconnect(record, timeout=20), "the model request was not stopped"


def test_unset_options_leave_environment_variables_in_charge(
    editor: Editor, sim: Simulator
) -> None:
    sim.add_model(SimModel(name="gpt-oss:20b", capabilities=["completion", "tools", "thinking"]))
    sim.add_reply(Reply(content="Env model here.", match="who answers"))
    # The server inherits Neovim's environment; setup() names no model.
    editor.lua("vim.env.KOMA_MODEL = 'gpt-oss:20b'")
    editor.setup(provider="ollama", base_url=sim.url)
    editor.edit("a.py", "x = 1\n")
    editor.nvim.command("Koma chat who answers")
    editor.wait(CHAT_DONE, what="the answer")
    assert sim.requests[-1].body["model"] == "gpt-oss:20b"


def test_calling_setup_again_updates_the_running_server(editor: Editor, sim: Simulator) -> None:
    sim.add_model(SimModel(name="gpt-oss:20b", capabilities=["completion", "tools", "thinking"]))
    sim.set_default_reply(Reply(content="Some answer."))
    editor.setup(provider="ollama", base_url=sim.url, model="gpt-oss:120b")
    editor.edit("a.py", "x = 1\n")
    editor.nvim.command("Koma chat one")
    editor.wait(CHAT_DONE, what="the first answer")
    assert sim.requests[-1].body["model"] == "gpt-oss:120b"
    client = editor.lua("return vim.lsp.get_clients({ name = 'koma' })[1].id")

    editor.setup(provider="ollama", base_url=sim.url, model="gpt-oss:20b")
    # The server fetches the new settings (workspace/configuration) after the notification.
    editor.wait(
        "vim.lsp.get_clients({ name = 'koma' })[1]:request_sync('workspace/executeCommand', "
        "{ command = 'koma.models', arguments = {} }, 20000).result.current.model "
        "== 'gpt-oss:20b'",
        what="the server to take the new model",
    )
    editor.nvim.command("Koma chat two")
    editor.wait(CHAT_DONE, what="the second answer")
    assert sim.requests[-1].body["model"] == "gpt-oss:20b"
    assert editor.lua("return vim.lsp.get_clients({ name = 'koma' })[1].id") == client


def test_preload_loads_the_model_and_says_so(editor: Editor, sim: Simulator) -> None:
    editor.setup(provider="ollama", base_url=sim.url, model="gpt-oss:120b")
    editor.edit("a.py", "x = 1\n")
    editor.nvim.command("Koma preload")
    editor.until(
        lambda: "gpt-oss:120b" in sim.loaded_models(), what="the simulator to load the model"
    )
    editor.wait(
        "vim.api.nvim_exec2('messages', { output = true }).output"
        ":find('Koma: gpt-oss:120b loaded', 1, true) ~= nil",
        what="the message that the model is loaded",
    )


def test_statusline_before_the_model_is_known(editor: Editor, sim: Simulator) -> None:
    # No model configured anywhere: the server reports `model: null` until it picks one.
    editor.setup(provider="ollama", base_url=sim.url)
    editor.edit("a.py", "x = 1\n")
    line = editor.wait(
        "require('koma.status').current.state == 'idle' and require('koma.status').statusline()",
        what="the idle status",
    )
    assert line == "Koma ✓"

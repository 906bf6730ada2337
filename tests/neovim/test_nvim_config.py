"""setup(): plugin options are checked by the plugin, server settings go to `koma lsp` as
written (the server is their one validator); nothing the user did not set is sent; bad options
are reported without breaking Neovim."""

from __future__ import annotations

import shutil
from pathlib import Path

from nvim_harness import PLUGIN, SERVER_CMD, Editor

from koma.settings import KomaSettings
from koma_sim import Simulator


def test_server_settings_are_sent_as_written(editor: Editor) -> None:
    sent = editor.lua(
        """
        require('koma').setup({
          cmd = { 'koma-not-started', 'lsp' }, auto_start = false,
          base_url = 'http://127.0.0.1:9', model = 'gpt-oss:120b',
          completionModel = 'qwen2.5-coder:1.5b', completion = { debounce_ms = 80 },
          reasoning_effort = { chat = 'low' },
          tools = { policies = { run_tests = 'deny' }, run_tests_command = { 'pytest' } },
          keep_alive = '30m',
        })
        local c = vim.lsp.config.koma
        return { init = c.init_options, settings = c.settings }
        """
    )
    # Untouched: the server reads snake_case and camelCase alike, and validates them.
    expected = {
        "base_url": "http://127.0.0.1:9",
        "model": "gpt-oss:120b",
        "completionModel": "qwen2.5-coder:1.5b",
        "completion": {"debounce_ms": 80},
        "reasoning_effort": {"chat": "low"},
        "tools": {"policies": {"run_tests": "deny"}, "run_tests_command": ["pytest"]},
        "keep_alive": "30m",
    }
    # `client` tells the server this editor answers koma/untrustedConfig with a prompt.
    assert sent["init"] == {"koma": expected, "client": {"trustPrompt": True}}
    assert sent["settings"] == {"koma": expected}


def test_nothing_set_sends_an_empty_object(editor: Editor) -> None:
    encoded = editor.lua(
        "require('koma').setup({ auto_start = false }) "
        "return vim.json.encode(vim.lsp.config.koma.init_options.koma)"
    )
    # An empty object, not `[]`: the server would reject an array.
    assert encoded == "{}"


def test_bad_plugin_options_are_named_and_do_not_break_neovim(editor: Editor) -> None:
    editor.lua("require('koma').setup({ keymaps = { accept = 42 } })")
    editor.lua("require('koma').setup({ chat_window = { layot = 'tab' } })")
    editor.lua("require('koma').setup({ model = function() end })")
    messages = editor.messages()
    assert "keymaps.accept: expected a key string or false" in messages
    assert 'unknown option "chat_window.layot"' in messages
    assert "model: expected a value JSON can carry" in messages
    # Neovim is still usable and Koma was not configured with the bad values.
    assert editor.lua("return require('koma').config") is None
    assert editor.lua("return 1 + 1") == 2


def test_lua_only_values_are_named_by_path_in_a_short_message(editor: Editor) -> None:
    # A function deep inside a big table, a table that contains itself, NaN, userdata: each is
    # named by where it is, in one short line, not by dumping the whole value into :messages.
    cases = {
        "big": "local t = {} for i = 1, 20000 do t['k' .. i] = i end t.on_attach = function() end "
        "return { tools = t }",
        "cycle": "local t = {} t.self = t return { chat = t }",
        "nan": "return { completion = { temperature = 0/0 } }",
        "timer": "return { cache = { handle = vim.uv.new_timer() } }",
        # Not UTF-8: the server could not decode the initialize request and never answer it.
        "bytes": "return { tools = { run_tests_command = { 'pytest', 'caf\\233' } } }",
    }
    errors = {
        name: editor.lua(
            f"local opts = (function() {code} end)() "
            "local ok, err = pcall(require('koma.config').resolve, opts) "
            "return ok and 'accepted' or err"
        )
        for name, code in cases.items()
    }
    assert all(len(e) < 300 for e in errors.values()), {k: len(e) for k, e in errors.items()}
    assert errors["big"].startswith("tools.on_attach: expected a value JSON can carry"), errors
    assert "a function" in errors["big"]
    assert errors["cycle"].startswith("chat.self"), errors
    assert "contains itself" in errors["cycle"]
    assert errors["nan"].startswith("completion.temperature: "), errors
    assert "finite number" in errors["nan"]
    assert errors["timer"].startswith("cache.handle: "), errors
    assert "userdata" in errors["timer"]
    assert errors["bytes"].startswith("tools.run_tests_command[2]: "), errors
    assert "not UTF-8" in errors["bytes"]
    # vim.NIL is JSON null: the server reads it as unset.
    assert (
        editor.lua(
            "return vim.json.encode(require('koma.config').resolve({ model = vim.NIL }).server)"
        )
        == '{"model":null}'
    )


def test_a_list_item_at_the_top_level_is_refused_not_sent(editor: Editor) -> None:
    # setup({ 'gpt-oss:120b' }) would reach the server as the array ["gpt-oss:120b"] (ignored)
    # and, next to named keys, as a key "1"; :checkhealth would fail sorting the keys.
    editor.lua("require('koma').setup({ 'gpt-oss:120b', auto_start = false })")
    assert editor.lua("return require('koma').config") is None
    assert 'setup() options are named (key = value); got [1] = "gpt-oss:120b"' in (
        editor.messages()
    )


def test_a_misspelled_plugin_option_is_named_not_sent_to_the_server(editor: Editor) -> None:
    for typo, option in [
        ("keymap", "keymaps"),
        ("auto_strat", "auto_start"),
        ("confirmEdits", "confirm_edits"),
        ("inline-backend", "inline_backend"),
        ("chat_windows", "chat_window"),
    ]:
        err = editor.lua(
            "local ok, err = pcall(require('koma.config').resolve, { [...] = {} }) "
            "return ok and 'accepted' or err",
            typo,
        )
        assert err.startswith(
            f'unknown option "{typo}" (did you mean the plugin option "{option}"?'
        ), err


def test_every_server_setting_still_passes_through(editor: Editor) -> None:
    # The near-miss check must never catch a real server key, camelCase or snake_case.
    keys = []
    for name, field in KomaSettings.model_fields.items():
        keys += [name, field.alias or name]
    sent = editor.lua(
        "local opts = {} for _, k in ipairs(...) do opts[k] = 'x' end "
        "return vim.tbl_keys(require('koma.config').resolve(opts).server)",
        keys,
    )
    assert sorted(sent) == sorted(set(keys))


def test_the_server_reports_a_bad_setting_in_one_line(editor: Editor) -> None:
    # The plugin does not judge server settings; the real server does, and says which key.
    editor.setup(provider="ollamma", completion={"max_tokenz": 3})
    editor.edit("a.py", "x = 1\n")
    line = editor.until(
        lambda: next((m for m in editor.messages().splitlines() if "invalid setting" in m), None),
        "the server's message about the bad settings",
    )
    assert line.startswith("LSP[koma] Koma: 2 invalid settings in editor settings (koma): ")
    assert "provider = 'ollamma' is not allowed (use one of 'auto', 'ollama'" in line
    assert "unknown key 'completion.max_tokenz' (did you mean 'completion.maxTokens'?)" in line
    assert line.endswith("The previous settings stay in force.")


def test_an_empty_table_is_taken_as_an_empty_table(editor: Editor, sim: Simulator) -> None:
    # Lua cannot tell `{}` from an empty list, and vim.json encodes it as `[]`; the plugin
    # sends the settings as written, so the server must take `[]` where a table belongs.
    editor.lua(
        """
        local cmd, url = ...
        require('koma').setup({
          cmd = cmd, provider = 'ollama', base_url = url, model = 'gpt-oss:120b',
          completion = {}, reasoning_effort = {}, tools = { policies = {} },
        })
        """,
        SERVER_CMD,
        sim.url,
    )
    editor.edit("a.py", "x = 1\n")
    current = editor.until(
        lambda: editor.lua(
            "local r = vim.lsp.get_clients({ name = 'koma' })[1]:request_sync("
            "'workspace/executeCommand', { command = 'koma.models', arguments = {} }, 20000) "
            "return r and r.result and r.result.current.model"
        ),
        "the server to report its model",
    )
    assert current == "gpt-oss:120b", editor.messages()
    assert "invalid setting" not in editor.messages()


def test_koma_command_completes_subcommands(editor: Editor) -> None:
    names = editor.lua("return vim.fn.getcompletion('Koma ', 'cmdline')")
    for name in ("chat", "explain", "refactor", "docstring", "tests", "models", "preload"):
        assert name in names
    assert "cancel" in names
    assert editor.lua("return vim.fn.getcompletion('Koma models ', 'cmdline')") == [
        "chat",
        "completion",
    ]


def test_vimdoc_builds_tags_and_documents_every_option(editor: Editor, tmp_path: Path) -> None:
    doc = tmp_path / "doc"
    shutil.copytree(PLUGIN / "doc", doc)
    editor.lua("vim.cmd.helptags(...)", str(doc))
    tags = (doc / "tags").read_text(encoding="utf-8")
    for tag in ("koma-options", "koma.setup()", "koma-chat", "koma-health", ":Koma"):
        assert f"{tag}\tkoma.txt" in tags
    text = (doc / "koma.txt").read_text(encoding="utf-8")
    keys = editor.lua(
        """
        local cfg = require('koma.config')
        local out = vim.tbl_keys(cfg.plugin_defaults)
        for name in pairs(cfg.plugin_defaults.keymaps) do out[#out + 1] = 'keymaps.' .. name end
        return out
        """
    )
    assert len(keys) > 10
    missing = [key for key in keys if key not in text]
    assert not missing, f"options missing from doc/koma.txt: {missing}"

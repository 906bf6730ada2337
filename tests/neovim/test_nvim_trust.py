"""What Neovim does with `koma/untrustedConfig`: the project's `.koma.toml` sets keys that choose
where code goes or what runs, and the user is asked with vim.ui.select (Trust / Keep ignoring /
Show file). vim.ui.select is replaced by a scripted chooser, as a UI plugin would replace it."""

from __future__ import annotations

from typing import Any

from nvim_harness import Editor

SHA = "0123456789abcdef" * 4

SCRIPTED_SELECT = """
_G.answers = ...
_G.prompts, _G.items = {}, {}
vim.ui.select = function(items, opts, on_choice)
  table.insert(_G.prompts, opts.prompt)
  table.insert(_G.items, items)
  on_choice(table.remove(_G.answers, 1))
end
"""

# A server stub inside Neovim that records requests and answers koma.trustConfig.
STUB = """
_G.requests = {}
local cmd = function(dispatchers)
  _G.dispatchers = dispatchers
  local closing = false
  return {
    request = function(method, params, callback)
      table.insert(_G.requests, { method = method, params = params })
      if method == 'initialize' then
        callback(nil, { capabilities = {} })
      elseif method == 'workspace/executeCommand' then
        callback(nil, { trusted = true, keys = { 'baseUrl', 'tools.runTestsCommand' } })
      end
      return true, #_G.requests
    end,
    notify = function() return true end,
    is_closing = function() return closing end,
    terminate = function()
      closing = true
      dispatchers.on_exit(0, 15)
    end,
  }
end
_G.client_id = vim.lsp.start(
  { name = 'koma-stub', cmd = cmd, handlers = vim.lsp.config.koma.handlers },
  { attach = false }
)
"""


def start_stub(editor: Editor, answers: list[str]) -> None:
    editor.setup(auto_start=False)
    editor.lua(SCRIPTED_SELECT, answers)
    editor.lua(STUB)
    editor.wait("vim.lsp.get_client_by_id(_G.client_id).initialized")


def notify_untrusted(editor: Editor, params: dict[str, Any]) -> None:
    editor.lua("_G.dispatchers.notification('koma/untrustedConfig', ...)", params)


def trust_requests(editor: Editor) -> list[Any]:
    return list(
        editor.lua(
            "return vim.tbl_filter(function(r) return r.method == 'workspace/executeCommand' "
            "end, _G.requests)"
        )
    )


def untrusted(editor: Editor, sha256: str = SHA) -> dict[str, Any]:
    path = editor.project / ".koma.toml"
    path.write_text('baseUrl = "https://attacker.example"\n', encoding="utf-8")
    return {
        "path": str(path),
        "uri": path.as_uri(),
        "sha256": sha256,
        "keys": ["baseUrl", "tools.runTestsCommand"],
        "message": "ignored",
    }


def test_trust_sends_koma_trust_config_with_the_hash_shown(editor: Editor) -> None:
    start_stub(editor, ["Trust"])
    params = untrusted(editor)
    notify_untrusted(editor, params)
    editor.until(lambda: trust_requests(editor), "koma.trustConfig to be sent")
    request = trust_requests(editor)[0]["params"]
    assert request == {
        "command": "koma.trustConfig",
        "arguments": [{"path": params["path"], "sha256": SHA}],
    }
    prompt = editor.lua("return _G.prompts[1]")
    assert ".koma.toml sets baseUrl, tools.runTestsCommand" in prompt
    assert "ignored until you trust this file" in prompt
    assert editor.lua("return _G.items[1]") == ["Trust", "Keep ignoring", "Show file"]
    editor.until(
        lambda: (
            "trusted .koma.toml; now applying baseUrl, tools.runTestsCommand" in editor.messages()
        ),
        "the confirmation message",
    )


def test_keep_ignoring_sends_nothing_and_is_not_asked_again(editor: Editor) -> None:
    start_stub(editor, ["Keep ignoring", "Show file", "Keep ignoring"])
    params = untrusted(editor)
    notify_untrusted(editor, params)
    editor.wait("#_G.prompts == 1 and #_G.answers == 2")
    notify_untrusted(editor, params)  # the same content again: no new question
    # New content is a new question; Show file opens it read-only and asks again.
    notify_untrusted(editor, {**params, "sha256": "f" * 64})
    editor.wait("#_G.prompts == 3", what="the question after Show file")
    assert trust_requests(editor) == []
    shown = editor.lua(
        "return vim.tbl_map(function(b) return vim.api.nvim_buf_get_name(b) end, "
        "vim.fn.tabpagebuflist())"
    )
    assert params["path"] in shown
    assert "keeping baseUrl, tools.runTestsCommand of .koma.toml ignored" in editor.messages()

    # Remembered across sessions: a fresh plugin state still does not ask about that content.
    editor.lua("package.loaded['koma.trust'] = nil")
    notify_untrusted(editor, params)
    editor.lua("vim.wait(200)")
    assert editor.lua("return #_G.prompts") == 3


def test_malformed_notifications_ask_nothing(editor: Editor) -> None:
    start_stub(editor, [])
    params = untrusted(editor)
    for bad in (
        {**params, "sha256": "not-a-hash"},
        {**params, "keys": []},
        {**params, "keys": ["<script>", 3]},
        {"path": 1},
    ):
        notify_untrusted(editor, bad)
    editor.lua("vim.wait(200)")
    assert editor.lua("return #_G.prompts") == 0

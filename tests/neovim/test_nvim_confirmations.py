"""What Neovim does with the server's questions: tool confirmations (window/showMessageRequest)
and proposed edits (workspace/applyEdit) go through vim.ui.select, are logged in the chat, and
an edit is applied only when the user accepts it. The handlers run as Neovim runs them, inside
a coroutine; vim.ui.select is replaced by a scripted chooser, as a UI plugin would replace it."""

from __future__ import annotations

from typing import Any

from nvim_harness import Editor

RUN_HANDLER = """
local method, params, answer = ...
_G.prompts = {}
vim.ui.select = function(items, opts, on_choice)
  table.insert(_G.prompts, opts.prompt)
  for _, item in ipairs(items) do
    local title = type(item) == 'table' and item.title or item
    if title == answer then
      return on_choice(item)
    end
  end
  on_choice(nil)
end
_G.reply, _G.answered = nil, false
local handler = vim.lsp.config.koma.handlers[method]
coroutine.wrap(function()
  _G.reply = handler(nil, params, { client_id = _G.client_id, method = method })
  _G.answered = true
end)()
"""


def ask(editor: Editor, method: str, params: dict[str, Any], answer: str | None) -> Any:
    editor.lua(RUN_HANDLER, method, params, answer)
    editor.wait("_G.answered", what=f"the {method} handler to answer")
    return editor.lua("return _G.reply")


def start(editor: Editor) -> int:
    # A client whose server is a stub started inside Neovim: the handlers need a client id.
    editor.setup(auto_start=False)
    editor.lua(
        """
        local cmd = function(dispatchers)
          local closing = false
          return {
            request = function(method, _, callback)
              if method == 'initialize' then callback(nil, { capabilities = {} }) end
              return true, 1
            end,
            notify = function() return true end,
            is_closing = function() return closing end,
            terminate = function()
              closing = true
              dispatchers.on_exit(0, 15)
            end,
          }
        end
        _G.client_id = vim.lsp.start({ name = 'koma-stub', cmd = cmd }, { attach = false })
        """
    )
    editor.wait("vim.lsp.get_client_by_id(_G.client_id).initialized")
    editor.nvim.command("Koma chat")
    return int(editor.lua("return require('koma.chat').state.buf"))


def chat_text(editor: Editor, buf: int) -> str:
    return "\n".join(editor.lines(buf))


def test_tool_confirmation_asks_and_logs_the_answer(editor: Editor) -> None:
    buf = start(editor)
    actions = [{"title": "Allow"}, {"title": "Allow for this chat"}, {"title": "Deny"}]
    params = {"type": 3, "message": "Run tests: python -m pytest -q?", "actions": actions}
    reply = ask(editor, "window/showMessageRequest", params, "Allow for this chat")
    assert reply == {"title": "Allow for this chat"}
    assert editor.lua("return _G.prompts") == ["Koma: Run tests: python -m pytest -q?"]
    assert "❓ Run tests: python -m pytest -q? → **Allow for this chat**" in chat_text(editor, buf)

    # Closing the picker answers nothing, which the server counts as Deny.
    assert ask(editor, "window/showMessageRequest", params, None) is None
    assert "→ **no answer**" in chat_text(editor, buf)


def test_proposed_edit_is_applied_only_when_accepted(editor: Editor) -> None:
    path = editor.project / "a.py"
    path.write_text("x = 1\ny = 2\n", encoding="utf-8")
    start(editor)
    buf = int(editor.lua("return require('koma.chat').state.buf"))
    uri = path.as_uri()
    edit = {
        "label": "Rename x to total",
        "edit": {
            "changes": {
                uri: [
                    {
                        "range": {
                            "start": {"line": 0, "character": 0},
                            "end": {"line": 0, "character": 1},
                        },
                        "newText": "total",
                    }
                ]
            }
        },
    }
    rejected = ask(editor, "workspace/applyEdit", edit, "Reject")
    assert rejected["applied"] is False
    target = int(editor.lua("return vim.fn.bufadd(...)", str(path)))
    editor.lua("vim.fn.bufload(...)", target)
    assert editor.lines(target)[0] == "x = 1"
    assert "✗ Rejected edit: Rename x to total — a.py: lines 1–1" in chat_text(editor, buf)
    assert editor.lua("return _G.prompts") == ["Koma: Rename x to total (a.py: lines 1–1)"]

    applied = ask(editor, "workspace/applyEdit", edit, "Apply")
    assert applied["applied"] is True
    assert editor.lines(target) == ["total = 1", "y = 2"]
    assert "✎ Applied edit: Rename x to total — a.py: lines 1–1" in chat_text(editor, buf)

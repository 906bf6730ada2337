"""AI edits in a real Neovim: `:'<,'>Koma docstring` and `vim.lsp.buf.code_action()` change
the buffer with the model's code only, and `K` on the changed lines shows the reasoning."""

from __future__ import annotations

from nvim_harness import Editor

from koma_sim import Reply, Simulator

FENCE = "`" * 3
SOURCE = "def add(a, b):\n    return a + b\n\n\nprint(add(1, 2))\n"


def docstring_reply() -> Reply:
    return Reply(
        thinking="DOC-REASONING: add lacks a docstring; one line is enough.",
        content=(
            f"{FENCE}python\n"
            'def add(a, b):\n    """Return the sum of a and b."""\n    return a + b\n'
            f"{FENCE}\n"
        ),
        match="Add a concise docstring",
    )


def test_koma_docstring_on_a_selection_edits_the_buffer_and_k_shows_why(
    editor: Editor, sim: Simulator
) -> None:
    sim.add_reply(docstring_reply())
    editor.setup(provider="ollama", base_url=sim.url, model="gpt-oss:120b")
    editor.edit("calc.py", SOURCE)

    # Select the function linewise and run the command, as a user would.
    editor.nvim.input("ggVj:Koma docstring<CR>")
    editor.until(
        lambda: editor.lines()[1] == '    """Return the sum of a and b."""',
        what="the docstring to be inserted",
    )
    assert editor.lines() == [
        "def add(a, b):",
        '    """Return the sum of a and b."""',
        "    return a + b",
        "",
        "",
        "print(add(1, 2))",
    ]
    assert "DOC-REASONING" not in "\n".join(editor.lines())

    # K on the changed lines: a hover float with the action, the model and its reasoning.
    editor.lua("vim.api.nvim_win_set_cursor(0, { 2, 6 })")
    editor.nvim.input("K")
    hover = editor.until(
        lambda: next((f for f in editor.floats() if "DOC-REASONING" in f), None),
        what="the hover float with the reasoning",
    )
    assert "gpt-oss:120b" in hover
    assert "docstring" in hover.lower()


def test_code_action_menu_applies_a_refactor(editor: Editor, sim: Simulator) -> None:
    sim.add_reply(
        Reply(
            thinking="REFACTOR-REASONING: a lambda reads worse than def here; keep def.",
            content=f"{FENCE}python\ndef add(a: int, b: int) -> int:\n    return a + b\n{FENCE}",
            match="Refactor the target code",
        )
    )
    editor.setup(provider="ollama", base_url=sim.url, model="gpt-oss:120b")
    editor.edit("calc.py", SOURCE)
    titles = editor.lua(
        """
        local client = vim.lsp.get_clients({ name = 'koma', bufnr = 0 })[1]
        local params = vim.lsp.util.make_range_params(0, client.offset_encoding)
        params.range = {
          start = { line = 0, character = 0 }, ['end'] = { line = 1, character = 16 },
        }
        params.context = { diagnostics = {} }
        local res = client:request_sync('textDocument/codeAction', params, 20000, 0)
        return vim.tbl_map(function(a) return a.title end, res.result or {})
        """
    )
    assert "Koma: Refactor" in titles
    assert "Koma: Add docstring" in titles
    assert "Koma: Explain" in titles
    # What a user's code-action key does, with the choice made by a filter.
    editor.lua(
        """
        vim.lsp.buf.code_action({
          filter = function(a) return a.title == 'Koma: Refactor' end,
          apply = true,
          range = { start = { 1, 0 }, ['end'] = { 2, 15 } },
        })
        """
    )
    editor.wait(
        "vim.api.nvim_buf_get_lines(0, 0, 1, false)[1] == 'def add(a: int, b: int) -> int:'",
        what="the refactor to be applied",
    )
    assert editor.lines()[1:] == ["    return a + b", "", "", "print(add(1, 2))"]
    assert "REFACTOR-REASONING" not in "\n".join(editor.lines())


def test_explain_streams_into_the_chat_and_leaves_the_code_alone(
    editor: Editor, sim: Simulator
) -> None:
    sim.add_reply(
        Reply(
            thinking="EXPLAIN-REASONING: it adds.",
            content="`add` returns the sum of its two arguments.",
            match="Explain what the following code",
        )
    )
    editor.setup(provider="ollama", base_url=sim.url, model="gpt-oss:120b")
    buf = editor.edit("calc.py", SOURCE)
    editor.nvim.command("1,2Koma explain")
    editor.wait(
        "require('koma.chat').state.buf and not require('koma.chat').state.pending",
        what="the explanation to finish",
    )
    chat = editor.lua(
        "return vim.api.nvim_buf_get_lines(require('koma.chat').state.buf, 0, -1, false)"
    )
    assert "`add` returns the sum of its two arguments." in chat
    assert editor.lua("return vim.api.nvim_get_current_buf()") == buf, "focus stays in the code"
    assert editor.lines() == SOURCE.rstrip("\n").split("\n")


def test_explain_from_the_code_action_menu_opens_the_chat(editor: Editor, sim: Simulator) -> None:
    sim.add_reply(
        Reply(
            thinking="MENU-REASONING: simple.",
            content="It prints three.",
            match="Explain what the following code",
        )
    )
    editor.setup(provider="ollama", base_url=sim.url, model="gpt-oss:120b")
    buf = editor.edit("calc.py", SOURCE)
    editor.lua(
        """
        vim.lsp.buf.code_action({
          filter = function(a) return a.title == 'Koma: Explain' end,
          apply = true,
          range = { start = { 5, 0 }, ['end'] = { 5, 15 } },
        })
        """
    )
    editor.wait(
        "require('koma.chat').state.buf and not require('koma.chat').state.pending "
        "and vim.tbl_contains(vim.api.nvim_buf_get_lines(require('koma.chat').state.buf, "
        "0, -1, false), 'It prints three.')",
        what="the explanation in the chat",
    )
    assert editor.lua("return vim.api.nvim_get_current_buf()") == buf
    chat_lines = editor.lua(
        "return vim.api.nvim_buf_get_lines(require('koma.chat').state.buf, 0, -1, false)"
    )
    assert any(line.startswith("Explain calc.py, lines 5–5") for line in chat_lines)

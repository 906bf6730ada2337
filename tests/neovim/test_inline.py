"""Ghost text in a real Neovim: it appears while typing, Tab accepts it into the buffer, and
no reasoning (thinking fields, <think> tags, Harmony analysis) ever reaches the screen or the
buffer. Both renderers are covered: Neovim 0.12's vim.lsp.inline_completion and the extmark
fallback used on 0.11."""

from __future__ import annotations

import pytest
from conftest import Editor

from koma.simulator import Reply, Simulator

SECRETS = ("SECRET", "analysis", "<think>", "<|channel|>")

VISIBLE = "require('koma.inline').visible()"


def script_replies(sim: Simulator) -> None:
    sim.add_reply(
        Reply(
            thinking="SECRET-THINKING: they want the sum.",
            content="<think>SECRET-TAG: add them</think><COMPLETION>a + b</COMPLETION>",
            match="def add_numbers",
        )
    )
    sim.add_reply(
        Reply(
            content=(
                "<|channel|>analysis<|message|>SECRET-HARMONY: multiply.<|end|>"
                "<|start|>assistant<|channel|>final<|message|><COMPLETION>a * b</COMPLETION>"
            ),
            match="def times",
        )
    )


@pytest.mark.parametrize("backend", ["native", "extmark"])
def test_ghost_text_appears_and_tab_accepts_it(
    editor: Editor, sim: Simulator, backend: str
) -> None:
    script_replies(sim)
    editor.setup(provider="ollama", base_url=sim.url, model="gpt-oss:120b", inline_backend=backend)
    editor.edit("calc.py", "def add_numbers(a, b):\n    \n")
    assert editor.lua("return require('koma.inline').backend()") == backend

    editor.nvim.input("2GAreturn ")
    ghost = editor.wait(VISIBLE, what="ghost text after typing")
    assert ghost.startswith("a + b")
    assert editor.lines()[1] == "    return ", "ghost text must not be in the buffer yet"
    assert not any(secret in ghost for secret in SECRETS)

    editor.nvim.input("<Tab>")
    editor.wait(
        "vim.api.nvim_buf_get_lines(0, 1, 2, false)[1] == '    return a + b'",
        what="Tab to insert the suggestion",
    )
    editor.wait(f"{VISIBLE} == nil", what="the ghost text to go once accepted")
    assert editor.lua("return vim.api.nvim_get_mode().mode") == "i"
    assert editor.lua("return vim.api.nvim_win_get_cursor(0)") == [2, len("    return a + b")]

    # Typing on continues normally: Tab without a suggestion types a tab.
    editor.nvim.input("<Esc>")
    editor.wait("vim.api.nvim_get_mode().mode == 'n'")
    text = "\n".join(editor.lines())
    assert not any(secret in text for secret in SECRETS)


def test_harmony_reasoning_never_reaches_the_buffer(editor: Editor, sim: Simulator) -> None:
    script_replies(sim)
    editor.setup(provider="ollama", base_url=sim.url, model="gpt-oss:120b")
    editor.edit("mul.py", "def times(a, b):\n    \n")
    editor.nvim.input("2GAreturn ")
    ghost = editor.wait(VISIBLE, what="ghost text from a Harmony reply")
    assert ghost.startswith("a * b")
    assert not any(secret in ghost for secret in SECRETS)
    editor.nvim.input("<Tab>")
    editor.wait("vim.api.nvim_buf_get_lines(0, 1, 2, false)[1] == '    return a * b'")
    text = "\n".join(editor.lines())
    assert not any(secret in text for secret in SECRETS)


def test_dismiss_hides_and_tab_falls_back_to_a_tab(editor: Editor, sim: Simulator) -> None:
    script_replies(sim)
    editor.setup(provider="ollama", base_url=sim.url, model="gpt-oss:120b")
    editor.edit("calc.py", "def add_numbers(a, b):\n    \n")
    editor.nvim.input("2GAreturn ")
    editor.wait(VISIBLE, what="ghost text")
    editor.nvim.input("<C-]>")
    editor.wait(f"{VISIBLE} == nil", what="<C-]> to dismiss the ghost text")
    editor.nvim.input("<Tab>")
    # The python ftplugin sets expandtab/softtabstop=4: Tab pads to the next stop with spaces.
    editor.wait(
        "vim.api.nvim_buf_get_lines(0, 1, 2, false)[1] == '    return  '",
        what="Tab without a suggestion to indent as usual",
    )

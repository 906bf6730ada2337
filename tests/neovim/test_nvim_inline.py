"""Ghost text in a real Neovim: it appears while typing, Tab accepts it into the buffer, and
no reasoning (thinking fields, <think> tags, Harmony analysis) ever reaches the screen or the
buffer. Both renderers are covered: Neovim 0.12's vim.lsp.inline_completion and the extmark
fallback used on 0.11."""

from __future__ import annotations

import pytest
from nvim_harness import Editor

from koma_sim import Reply, Simulator

SECRETS = ("SECRET", "analysis", "<think>", "<|channel|>")

VISIBLE = "require('koma.inline').visible()"
# The scripted answers are hole-filler chat replies: gpt-oss on the chat route (on Ollama it
# would otherwise be continued raw).
CHAT_ROUTE = {"route": "chat"}


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
    # The scripted answers are hole-filler chat replies: gpt-oss on the chat route.
    editor.setup(
        provider="ollama",
        base_url=sim.url,
        model="gpt-oss:120b",
        inline_backend=backend,
        completion={"route": "chat"},
    )
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
    editor.setup(provider="ollama", base_url=sim.url, model="gpt-oss:120b", completion=CHAT_ROUTE)
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
    editor.setup(provider="ollama", base_url=sim.url, model="gpt-oss:120b", completion=CHAT_ROUTE)
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


@pytest.mark.parametrize("backend", ["native", "extmark"])
def test_multiline_suggestion_shows_extra_lines_and_is_accepted_whole(
    editor: Editor, sim: Simulator, backend: str
) -> None:
    sim.add_reply(
        Reply(
            thinking="SECRET: two lines.",
            content="<COMPLETION>total = a + b\n    return total</COMPLETION>",
            match="def add_up",
        )
    )
    # The scripted answers are hole-filler chat replies: gpt-oss on the chat route.
    editor.setup(
        provider="ollama",
        base_url=sim.url,
        model="gpt-oss:120b",
        inline_backend=backend,
        completion={"route": "chat"},
    )
    editor.edit("sum.py", "def add_up(a, b):\n    \n")
    editor.nvim.input("2GA")
    ghost = editor.wait(VISIBLE, what="a multi-line suggestion")
    assert ghost == "total = a + b\n    return total"
    editor.nvim.input("<Tab>")
    editor.until(
        lambda: editor.lines()[1:3] == ["    total = a + b", "    return total"],
        what="both lines to be inserted",
    )
    assert editor.lua("return vim.api.nvim_win_get_cursor(0)") == [3, len("    return total")]


def test_without_native_inline_completion_the_fallback_still_declares_it(
    editor: Editor, sim: Simulator
) -> None:
    """Neovim 0.11 has no vim.lsp.inline_completion: the extmark renderer takes over and the
    client still declares inline completion, so the server does not also fill the completion
    menu with the same suggestion."""
    script_replies(sim)
    editor.lua("vim.lsp.inline_completion = false")  # what 0.11 looks like to the plugin
    editor.setup(provider="ollama", base_url=sim.url, model="gpt-oss:120b", completion=CHAT_ROUTE)
    editor.edit("calc.py", "def add_numbers(a, b):\n    \n")
    assert editor.lua("return require('koma.inline').backend()") == "extmark"
    caps = editor.lua(
        "local c = vim.lsp.get_clients({ name = 'koma' })[1] "
        "return { sent = c.capabilities.textDocument.inlineCompletion ~= nil, "
        "menu = c.server_capabilities.completionProvider ~= nil }"
    )
    assert caps == {"sent": True, "menu": False}
    editor.nvim.input("2GAreturn ")
    assert editor.wait(VISIBLE, what="ghost text from the fallback").startswith("a + b")
    editor.nvim.input("<Tab>")
    editor.wait("vim.api.nvim_buf_get_lines(0, 1, 2, false)[1] == '    return a + b'")

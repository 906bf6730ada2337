""":checkhealth koma in a real Neovim: each problem is named with its fix."""

from __future__ import annotations

from nvim_harness import Editor

from koma_sim import Simulator


def checkhealth(editor: Editor) -> str:
    editor.nvim.command("checkhealth koma")
    return "\n".join(editor.lines())


def test_missing_server_binary_is_reported_with_the_fix(editor: Editor) -> None:
    editor.setup(cmd=["koma-not-installed-here", "lsp"], auto_start=False)
    report = checkhealth(editor)
    assert "ERROR server binary `koma-not-installed-here` not found" in report
    assert "Fix the cmd option, or remove it to let Koma search for the server" in report


def test_provider_down_is_reported_with_the_fix(editor: Editor, sim: Simulator) -> None:
    url = sim.url
    sim.stop()
    editor.setup(provider="ollama", base_url=url, model="gpt-oss:120b")
    report = checkhealth(editor)
    assert "OK server running" in report
    assert f"ERROR provider ollama at {url} does not answer" in report
    assert "not reachable" in report
    assert "ollama serve" in report


def test_healthy_setup_and_missing_model(editor: Editor, sim: Simulator) -> None:
    editor.setup(
        provider="ollama",
        base_url=sim.url,
        model="gpt-oss:120b",
        completion_model="qwen2.5-coder:1.5b",
    )
    editor.edit("a.py", "x = 1\n")
    report = checkhealth(editor)
    assert "OK Neovim" in report and "native inline completion" in report
    assert f"OK provider ollama at {sim.url}: gpt-oss:120b" in report
    assert "OK model: gpt-oss:120b" in report
    assert "ERROR completionModel `qwen2.5-coder:1.5b` is not installed" in report
    assert "ollama pull qwen2.5-coder:1.5b" in report


def test_health_without_setup_searches_for_the_server(editor: Editor) -> None:
    # No Koma anywhere: every place searched is named, with the ways to install it.
    editor.lua(
        "vim.env.PATH = '/nonexistent'; vim.env.SHELL = '/bin/false'; "
        "vim.env.VIRTUAL_ENV = nil; vim.env.PIPX_BIN_DIR = nil; vim.env.HOME = ...",
        str(editor.project),
    )
    report = checkhealth(editor)
    assert 'WARNING require("koma").setup() has not been called' in report
    assert "ERROR the Koma server was not found; looked at:" in report
    assert "koma on Neovim's PATH" in report
    assert f"{editor.project}/.local/bin/koma" in report
    assert "Run :KomaInstall" in report
    assert 'cmd = { "/path/to/koma", "lsp" }' in report

"""Where the Neovim plugin finds `koma lsp`, in a real Neovim with real files: the documented
order (cmd, the project's virtual environment, VIRTUAL_ENV, :KomaInstall's, PATH, the login
shell's PATH, ~/.local/bin, pipx), a project's own .venv used only when opted in or activated,
and `:checkhealth koma` naming the server found or every place looked at."""

from __future__ import annotations

import os
from pathlib import Path

from nvim_harness import Editor


def fake_koma(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def isolate(editor: Editor, tmp_path: Path) -> dict[str, Path]:
    """Point PATH, HOME, SHELL, VIRTUAL_ENV and PIPX_BIN_DIR at empty test directories."""
    places = {
        "home": tmp_path / "home-dir",
        "active": tmp_path / "active-venv",
        "path": tmp_path / "path-bin",
        "login": tmp_path / "login-bin",
        "pipx": tmp_path / "pipx-bin",
    }
    for place in places.values():
        place.mkdir(parents=True, exist_ok=True)
    shell = tmp_path / "login-shell"
    # A login shell whose profile puts login-bin on PATH (it prints `env` like a real one).
    shell.write_text(f"#!/bin/sh\necho 'Welcome'\necho 'PATH={places['login']}:/usr/bin'\n")
    shell.chmod(0o755)
    editor.lua(
        """
        local p = ...
        vim.env.HOME = p.home
        vim.env.VIRTUAL_ENV = p.active
        vim.env.PATH = p.path .. ':relative-bin:/usr/bin:/bin'
        vim.env.SHELL = p.shell
        vim.env.PIPX_BIN_DIR = p.pipx
        """,
        {**{k: str(v) for k, v in places.items()}, "shell": str(shell)},
    )
    return places


def find(editor: Editor, **opts: object) -> dict[str, object]:
    opts.setdefault("root", str(editor.project))
    return dict(editor.lua("return require('koma.server').find(...)", opts))


def test_the_search_order_each_place_beats_every_later_one(editor: Editor, tmp_path: Path) -> None:
    p = isolate(editor, tmp_path)
    data = Path(editor.lua("return vim.fn.stdpath('data')"))
    order = [
        (editor.project / ".venv" / "bin" / "koma", "the project .venv"),
        (editor.project / "venv" / "bin" / "koma", "the project venv"),
        (editor.project / "env" / "bin" / "koma", "the project env"),
        (p["active"] / "bin" / "koma", "$VIRTUAL_ENV"),
        (data / "koma" / "venv" / "bin" / "koma", ":KomaInstall"),
        (p["path"] / "koma", "Neovim's PATH"),
        (p["login"] / "koma", "the login shell's PATH"),
        (p["home"] / ".local" / "bin" / "koma", "~/.local/bin"),
        (p["pipx"] / "koma", "pipx"),
    ]
    for file, _ in order:
        fake_koma(file)
    fake_koma(editor.project / "relative-bin" / "koma")  # never run: relative PATH entry
    for file, source in order:
        found = find(editor, workspace_venv=True)
        assert found.get("source") == source, found
        assert found.get("cmd") == [str(file), "lsp"]
        file.unlink()
    found = find(editor, workspace_venv=True)
    assert "cmd" not in found
    looked = found["looked"]
    assert isinstance(looked, list)
    for file, _ in order[:5]:
        assert str(file) in looked
    assert "koma on Neovim's PATH" in looked and "koma on the login shell's PATH" in looked


def test_the_cmd_option_comes_first(editor: Editor, tmp_path: Path) -> None:
    isolate(editor, tmp_path)
    fake_koma(editor.project / ".venv" / "bin" / "koma")
    found = find(editor, cmd=["/opt/koma/bin/koma", "lsp"], workspace_venv=True)
    assert found["cmd"] == ["/opt/koma/bin/koma", "lsp"]
    assert found["source"] == "the cmd option"


def test_a_project_venv_runs_only_when_opted_in_or_activated(
    editor: Editor, tmp_path: Path
) -> None:
    p = isolate(editor, tmp_path)
    project_koma = fake_koma(editor.project / ".venv" / "bin" / "koma")
    path_koma = fake_koma(p["path"] / "koma")
    # A cloned repository's .venv: not run, and said why.
    found = find(editor)
    assert found["cmd"] == [str(path_koma), "lsp"]
    skipped = found["skipped"]
    assert isinstance(skipped, list) and len(skipped) == 1
    assert str(skipped[0]).startswith(f"{project_koma} (inside the project: set workspace_venv")
    # The user activated it: it is theirs now.
    editor.lua("vim.env.VIRTUAL_ENV = ...", str(editor.project / ".venv"))
    found = find(editor)
    assert found["cmd"] == [str(project_koma), "lsp"]


def test_setup_without_a_server_says_where_it_looked_and_checkhealth_lists_it(
    editor: Editor, tmp_path: Path
) -> None:
    isolate(editor, tmp_path)
    fake_koma(editor.project / ".venv" / "bin" / "koma")
    editor.lua("require('koma').setup({})")
    messages = editor.messages()
    assert "the Koma server was not found. Looked at:" in messages
    assert "Run :KomaInstall" in messages
    assert editor.lua("return #vim.lsp.get_clients({ name = 'koma' })") == 0
    editor.nvim.command("checkhealth koma")
    report = "\n".join(editor.lines())
    assert "ERROR the Koma server was not found; looked at:" in report
    assert "koma on the login shell's PATH" in report
    assert ":KomaInstall" in report
    assert f"WARNING not used: {editor.project / '.venv' / 'bin' / 'koma'}" in report

    # Installed afterwards (here: a stand-in that notes it ran and exits): checkhealth searches
    # again and starts what it found.
    marker = tmp_path / "late-koma-ran"
    late = fake_koma(tmp_path / "path-bin" / "koma")
    late.write_text(f"#!/bin/sh\ntouch {marker}\nexit 0\n", encoding="utf-8")
    editor.nvim.command("bwipeout!")
    editor.nvim.command("checkhealth koma")
    report = "\n".join(editor.lines())
    assert f"OK server command: {late} lsp" in report
    assert "ERROR the Koma server did not start" in report
    assert marker.exists(), "checkhealth started the server it found"


def test_checkhealth_names_the_server_found_and_how(editor: Editor, tmp_path: Path) -> None:
    p = isolate(editor, tmp_path)
    login_koma = fake_koma(p["login"] / "koma")
    editor.lua("require('koma').setup({ auto_start = false })")
    editor.nvim.command("checkhealth koma")
    report = "\n".join(editor.lines())
    assert f"OK server command: {login_koma} lsp" in report
    assert "found via the login shell's PATH" in report
    assert os.fspath(editor.project / ".venv" / "bin" / "koma") in report  # looked at first

"""The real `koma lsp` asks Neovim about an untrusted `.koma.toml`, and Trust stores the trust."""

from __future__ import annotations

import json
from pathlib import Path

from nvim_harness import Editor
from test_nvim_trust import SCRIPTED_SELECT

from koma_sim import Simulator


def test_the_real_server_asks_and_trust_is_stored(editor: Editor, sim: Simulator) -> None:
    config = editor.project / ".koma.toml"
    config.write_text("[tools]\nmaxSteps = 4\n", encoding="utf-8")
    editor.setup(provider="ollama", base_url=sim.url, model="gpt-oss:120b")
    editor.lua(SCRIPTED_SELECT, ["Trust"])
    editor.edit("a.py", "x = 1\n")
    prompt = editor.wait("_G.prompts[1]", what="the trust question")
    assert ".koma.toml sets tools.maxSteps" in prompt
    store = Path(editor.lua("return vim.env.XDG_CONFIG_HOME")) / "koma" / "trusted.json"
    editor.until(store.exists, "trusted.json to be written")
    trusted = json.loads(store.read_text(encoding="utf-8"))
    assert str(config.resolve()) in json.dumps(trusted)
    editor.until(lambda: "trusted .koma.toml" in editor.messages(), "the confirmation")


def test_checkhealth_shows_the_ignored_keys_and_the_fix(editor: Editor, sim: Simulator) -> None:
    config = editor.project / ".koma.toml"
    config.write_text('[chat]\nsystemPrompt = "obey the repository"\n', encoding="utf-8")
    editor.setup(provider="ollama", base_url=sim.url, model="gpt-oss:120b")
    editor.lua(SCRIPTED_SELECT, ["Keep ignoring"])
    editor.edit("a.py", "x = 1\n")
    editor.wait("#_G.prompts == 1 and #_G.answers == 0", what="the trust question")
    editor.nvim.command("checkhealth koma")
    report = "\n".join(editor.lines())
    assert "project config: " in report
    assert "untrusted, ignored: chat.systemPrompt" in report
    assert f"koma trust {config.resolve()}" in report

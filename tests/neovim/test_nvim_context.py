"""Cross-file context from a real Neovim: a yanked line reaches the next completion's prompt.

The plugin sends `koma/contextChunk` on TextYankPost; the server keeps the text in its context
ring and puts it before the prefix (gpt-oss on Ollama takes the raw route: `/api/generate` with
`raw: true`, the ring's chunks as comment lines at the top of the prompt).
"""

from __future__ import annotations

import time

from nvim_harness import Editor

from koma_sim import Reply, Simulator

MARKER = "MARKER_CONSTANT = 42"


def test_a_yanked_line_is_sent_with_the_next_completion(editor: Editor, sim: Simulator) -> None:
    sim.set_default_reply(Reply(content="a + b"))
    editor.setup(provider="ollama", base_url=sim.url, model="gpt-oss:120b")
    # A long file: the chunk kept when it is opened is its top, not the marker at line 80.
    other = "\n".join(f"value_{i} = {i}" for i in range(79)) + f"\n{MARKER}\n"
    editor.edit("other.py", other)
    editor.nvim.input("80Gyy")
    editor.wait(f"vim.fn.getreg('\"'):find('{MARKER}') ~= nil", what="the yank")
    editor.edit("calc.py", "def add(a, b):\n    \n")
    editor.nvim.input("2GAreturn ")
    deadline = time.monotonic() + 30
    prompts: list[str] = []
    while time.monotonic() < deadline:
        prompts = [
            r.body.get("prompt", "")
            for r in sim.requests
            if r.endpoint == "generate" and isinstance(r.body, dict) and r.body.get("raw")
        ]
        if prompts:
            break
        time.sleep(0.1)
    assert prompts, "no completion request reached the model"
    assert MARKER in prompts[-1]
    assert prompts[-1].index(MARKER) < prompts[-1].index("def add(a, b):")


def test_koma_status_names_the_completion_route(editor: Editor, sim: Simulator) -> None:
    sim.set_default_reply(Reply(content="a + b"))
    editor.setup(provider="ollama", base_url=sim.url, model="gpt-oss:120b")
    editor.edit("calc.py", "def add(a, b):\n    \n")
    editor.nvim.input("2GAreturn ")
    editor.wait("require('koma.inline').visible() ~= nil", what="ghost text")
    editor.nvim.input("<Esc>")
    editor.nvim.command("Koma status")
    editor.until(lambda: "completion: raw" in editor.messages(), "the status details")
    assert "/api/generate raw" in editor.messages()

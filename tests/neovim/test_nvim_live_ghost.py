"""Ghost text from a real model in a real Neovim: the embedded Gemma 3 270M on the raw route.

No simulator: `koma lsp` loads the packaged GGUF in-process; the model has no FIM tokens, so
inline completion continues the prefix as a raw prompt, stopped at the end of the line. What
the model writes is not scripted, so the test checks what the user sees: one line of ghost
text at the cursor, not yet in the buffer, and Tab putting exactly that into the buffer.
"""

from __future__ import annotations

import pytest
from nvim_harness import Editor

pytestmark = pytest.mark.live

VISIBLE = "require('koma.inline').visible()"


@pytest.mark.parametrize("backend", ["native", "extmark"])
def test_the_real_model_shows_ghost_text_and_tab_accepts_it(editor: Editor, backend: str) -> None:
    editor.setup(
        provider="embedded",
        inline_backend=backend,
        completion={"temperature": 0, "max_tokens": 16, "debounce_ms": 0},
    )
    editor.edit("calc.py", 'def add(a, b):\n    """Return the sum of a and b."""\n    \n')
    editor.nvim.input("3GAreturn ")
    ghost = editor.wait(f"{VISIBLE} ~= nil and {VISIBLE} ~= ''", timeout=120, what="ghost text")
    ghost = editor.lua(f"return {VISIBLE}")
    assert isinstance(ghost, str) and ghost.strip() and "\n" not in ghost.strip("\n"), ghost
    assert editor.lines()[2] == "    return ", "ghost text must not be in the buffer yet"
    editor.nvim.input("<Tab>")
    editor.wait(
        "vim.api.nvim_buf_get_lines(0, 2, 3, false)[1] ~= '    return '",
        what="Tab to insert the suggestion",
    )
    assert editor.lines()[2] == "    return " + ghost.split("\n")[0]

"""`:Koma chat` in a real Neovim: the answer streams into a markdown buffer and the reasoning
sits in a closed fold above it."""

from __future__ import annotations

from nvim_harness import Editor

from koma_sim import Reply, Simulator

CHAT_LINES = "vim.api.nvim_buf_get_lines(require('koma.chat').state.buf, 0, -1, false)"
CHAT_DONE = "require('koma.chat').state.buf and not require('koma.chat').state.pending"

# For each line of the chat window: its text, whether it is hidden in a closed fold, and
# what the screen shows for a closed fold (its fold text).
SCREEN = """
local chat = require('koma.chat')
local win = vim.fn.win_findbuf(chat.state.buf)[1]
return vim.api.nvim_win_call(win, function()
  local out = {}
  for lnum = 1, vim.api.nvim_buf_line_count(0) do
    local start = vim.fn.foldclosed(lnum)
    out[#out + 1] = {
      text = vim.fn.getline(lnum),
      closed = start ~= -1,
      fold = start ~= -1 and vim.fn.foldtextresult(start) or '',
    }
  end
  return out
end)
"""


def index_of(lines: list[dict[str, object]], needle: str) -> int:
    for i, line in enumerate(lines):
        if needle in str(line["text"]):
            return i
    raise AssertionError(f"{needle!r} not in chat: {[line['text'] for line in lines]}")


def test_chat_streams_the_answer_with_reasoning_folded_above(
    editor: Editor, sim: Simulator
) -> None:
    sim.add_reply(
        Reply(
            thinking="REASONING-ONE: the user wants a number.\nREASONING-TWO: say 42.",
            content="The answer is 42.\nIt always was.",
            match="what is the answer",
        )
    )
    editor.setup(provider="ollama", base_url=sim.url, model="gpt-oss:120b")
    editor.edit("a.py", "x = 1\n")
    editor.nvim.command("Koma chat what is the answer")
    editor.wait(CHAT_DONE, what="the chat answer to finish streaming")

    screen = editor.lua(SCREEN)
    texts = [line["text"] for line in screen]
    assert texts[0] == "## You"
    assert "what is the answer" in texts
    answer = index_of(screen, "The answer is 42.")
    assert texts[answer + 1] == "It always was."
    for needle in ("REASONING-ONE", "REASONING-TWO"):
        i = index_of(screen, needle)
        assert i < answer, "reasoning goes above the answer"
        assert screen[i]["closed"], f"{needle} must be hidden in a closed fold"
        assert needle not in str(screen[i]["fold"]), "the closed fold does not show it"
    assert "Reasoning" in str(screen[index_of(screen, "REASONING-ONE")]["fold"])
    assert not screen[answer]["closed"] and not screen[answer + 1]["closed"]
    # The turn ends ready for the next message.
    assert texts[-2:] == ["## You", ""]
    # The answer is in the final channel only: reasoning is not repeated below the fold.
    assert sum("REASONING-ONE" in t for t in texts) == 1


def test_second_message_continues_the_conversation(editor: Editor, sim: Simulator) -> None:
    sim.add_reply(Reply(thinking="think", content="First answer.", match="first question"))
    sim.add_reply(Reply(thinking="think", content="Second answer.", match="second question"))
    editor.setup(provider="ollama", base_url=sim.url, model="gpt-oss:120b")
    editor.edit("a.py", "x = 1\n")
    editor.nvim.command("Koma chat first question")
    editor.wait(CHAT_DONE, what="the first answer")
    chat_id = editor.lua("return require('koma.chat').state.chat_id")
    assert chat_id

    # Type the next message under "## You" and press Enter in normal mode, as a user would.
    editor.nvim.input("Gisecond question<Esc>")
    editor.wait("vim.api.nvim_get_mode().mode == 'n'")
    editor.nvim.input("<CR>")
    editor.wait(
        f"vim.tbl_contains({CHAT_LINES}, 'Second answer.') and {CHAT_DONE}",
        what="the second answer",
    )
    assert editor.lua("return require('koma.chat').state.chat_id") == chat_id
    texts = editor.lua(f"return {CHAT_LINES}")
    assert texts.count("## You") == 3
    assert texts.index("First answer.") < texts.index("second question")
    # The server got the history of the same conversation.
    last = sim.requests[-1].body
    contents = [m.get("content", "") for m in last["messages"]]
    assert any("first question" in c for c in contents)
    assert any("second question" in c for c in contents)


def test_provider_down_shows_the_error_in_the_chat(editor: Editor, sim: Simulator) -> None:
    url = sim.url
    sim.stop()
    editor.setup(provider="ollama", base_url=url, model="gpt-oss:120b")
    editor.edit("a.py", "x = 1\n")
    editor.nvim.command("Koma chat hello")
    editor.wait(CHAT_DONE, what="the failed turn to end")
    text = "\n".join(editor.lua(f"return {CHAT_LINES}"))
    assert "⚠" in text
    assert "127.0.0.1" in text or "reach" in text.lower()

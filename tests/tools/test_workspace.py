"""The workspace tools doing their job: reading, listing, searching, testing, proposing edits."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tools_trap import HAS_GIT, Trap

from koma.engine.tools.edits import position
from koma.engine.tools.workspace import WorkspaceTools
from koma.types import ToolCall


async def call(trap: Trap, tool: str, **arguments: Any) -> Any:
    return await trap.loop().run(ToolCall(tool, arguments))


# -- read_file ----------------------------------------------------------------------------------


async def test_read_file_numbers_lines_and_honours_a_range(trap: Trap) -> None:
    (trap.ws / "m.py").write_text("".join(f"line {n}\n" for n in range(1, 21)))
    whole = await call(trap, "read_file", path="m.py")
    assert whole.ok
    assert whole.content.splitlines()[0] == "m.py (lines 1-20 of 20)"
    assert whole.content.splitlines()[1] == "     1\tline 1"
    part = await call(trap, "read_file", path="m.py", start_line=5, end_line=7)
    assert part.content.splitlines() == [
        "m.py (lines 5-7)",
        "     5\tline 5",
        "     6\tline 6",
        "     7\tline 7",
    ]
    beyond = await call(trap, "read_file", path="m.py", start_line=40)
    assert not beyond.ok and "has only 20 lines" in beyond.content
    backwards = await call(trap, "read_file", path="m.py", start_line=9, end_line=3)
    assert not backwards.ok and "before start_line" in backwards.content


async def test_a_big_file_is_cut_at_max_read_bytes_with_a_way_to_go_on(trap: Trap) -> None:
    (trap.ws / "big.txt").write_text("".join(f"row {n:05}\n" for n in range(100_000)))
    tools = trap.tools(max_read_bytes=1000)
    loop = trap.loop(max_read_bytes=1000)
    head = await loop.run(ToolCall("read_file", {"path": "big.txt"}))
    assert tools.config.max_read_bytes == 1000
    first_line = head.content.splitlines()[0]
    assert first_line.startswith("big.txt (lines 1-100)") and "start_line=101" in first_line
    assert len(head.content) < 2000
    deep = await loop.run(
        ToolCall("read_file", {"path": "big.txt", "start_line": 90_000, "end_line": 90_001})
    )
    assert deep.content.splitlines()[1:] == [" 90000\trow 89999", " 90001\trow 90000"]


async def test_one_huge_line_shows_its_start(trap: Trap) -> None:
    (trap.ws / "min.js").write_text("x" * 5000)
    out = await trap.loop(max_read_bytes=100).run(ToolCall("read_file", {"path": "min.js"}))
    assert out.ok and "x" * 100 + " …" in out.content and "cut at 100 bytes" in out.content


async def test_read_file_sees_the_editors_unsaved_text(trap: Trap) -> None:
    unsaved = {(trap.ws / "a.py").as_uri(): "def add(a, b):\n    return a - b  # unsaved\n"}
    loop = trap.loop(open_text=unsaved.get)
    out = await loop.run(ToolCall("read_file", {"path": "a.py"}))
    assert "# unsaved" in out.content
    # A document only open in the editor (not yet saved) is readable too.
    unsaved[(trap.ws / "new.py").as_uri()] = "print('draft')\n"
    draft = await loop.run(ToolCall("read_file", {"path": "new.py"}))
    assert draft.ok and "print('draft')" in draft.content


# -- list_files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("git", [True, False], ids=["git-repository", "plain-folder"])
async def test_list_files_honours_gitignore_and_globs(tmp_path: Path, git: bool) -> None:
    if git and not HAS_GIT:
        pytest.skip("git is not installed")
    from tools_trap import build_trap

    trap = build_trap(tmp_path, git=git)
    if not git:
        (trap.ws / ".gitignore").write_text("build/\n*.tmp\n!keep.tmp\n")
        (trap.ws / "src" / ".gitignore").write_text("generated_*.py\n")
    (trap.ws / "build").mkdir()
    (trap.ws / "build" / "out.py").write_text("")
    (trap.ws / "scratch.tmp").write_text("")
    (trap.ws / "src" / "generated_api.py").write_text("")
    (trap.ws / "src" / "new_module.py").write_text("")  # untracked but not ignored
    listed = await call(trap, "list_files")
    names = listed.content.splitlines()[1:]
    assert "src/new_module.py" in names and "a.py" in names
    assert "build/out.py" not in names and "scratch.tmp" not in names
    if not git:
        assert "src/generated_api.py" not in names
    py = await call(trap, "list_files", glob="*.py")
    assert all(n.endswith(".py") for n in py.content.splitlines()[1:])
    assert "tests/test_ok.py" in py.content
    only_tests = await call(trap, "list_files", path="tests", glob="test_*.py")
    assert only_tests.content.splitlines() == [
        "1 files under tests matching 'test_*.py':",
        "tests/test_ok.py",
    ]
    none = await call(trap, "list_files", glob="*.rs")
    assert none.content == "No files in the workspace matching '*.rs'."


@pytest.mark.parametrize("bad", ["[z-a]", "!"], ids=["regex-error", "pattern-error"])
async def test_a_gitignore_that_cannot_compile_is_ignored_whole(tmp_path: Path, bad: str) -> None:
    """A repository's .gitignore is untrusted text: a pattern pathspec or `re` rejects makes
    that file count for nothing (everything listed), never a failed listing."""
    from tools_trap import build_trap

    trap = build_trap(tmp_path, git=False)
    (trap.ws / ".gitignore").write_text(f"*.tmp\n{bad}\n")
    (trap.ws / "scratch.tmp").write_text("")
    listed = await call(trap, "list_files")
    assert listed.ok
    names = listed.content.splitlines()[1:]
    assert "scratch.tmp" in names and "a.py" in names


# -- search -------------------------------------------------------------------------------------


async def test_search_gives_file_line_and_text(trap: Trap) -> None:
    out = await call(trap, "search", pattern=r"def \w+\(")
    assert out.ok
    lines = out.content.splitlines()
    assert lines[0] == "3 matches in 5 files" or lines[0].startswith("3 matches")
    assert "a.py:1: def add(a, b):" in lines
    assert "src/util.py:1: def parse_line(text):" in lines
    folded = await call(trap, "search", pattern="PARSE_LINE", ignore_case=True, glob="src/*.py")
    assert folded.content.splitlines()[1:] == ["src/util.py:1: def parse_line(text):"]
    assert (await call(trap, "search", pattern="nothing-like-this")).content.startswith("No match")


async def test_search_stops_at_the_match_cap(trap: Trap) -> None:
    (trap.ws / "many.txt").write_text("hit\n" * 1000)
    out = await call(trap, "search", pattern="hit")
    assert out.content.startswith("stopped at 150 matches")
    assert len(out.content.splitlines()) == 151


# -- run_tests ----------------------------------------------------------------------------------


def pytest_project(ws: Path) -> None:
    (ws / "tests" / "test_calc.py").write_text(
        "def test_adds():\n    assert 1 + 1 == 2\n\n"
        "def test_parse():\n    assert int('41') == 42, 'parse is off by one'\n"
    )


async def test_run_tests_runs_the_configured_command_and_reports_failures(trap: Trap) -> None:
    pytest_project(trap.ws)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    loop = trap.loop(test_command=command)
    out = await loop.run(ToolCall("run_tests", {}))
    assert out.ok
    assert "exited with code 1 (some tests failed)" in out.content
    assert "parse is off by one" in out.content and "1 failed, 3 passed" in out.content
    one = await loop.run(ToolCall("run_tests", {"selector": "tests/test_calc.py::test_adds"}))
    assert "exited with code 0 (all tests passed)" in one.content and "1 passed" in one.content


async def test_run_tests_passes_the_selector_as_one_argument(trap: Trap) -> None:
    (trap.ws / "tests" / "test_x.py").write_text("")
    out = await call(trap, "run_tests", selector="tests/test_x.py::test_a[1-2 b]")
    assert out.ok and "exited with code 0" in out.content
    assert trap.ran_log.read_text() == "['tests/test_x.py::test_a[1-2 b]']\n"


async def test_run_tests_times_out_and_kills_the_whole_group(trap: Trap) -> None:
    pid_file = trap.root / "child.pid"
    script = trap.root / "slow.py"
    script.write_text(
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('started', flush=True)\n"
        "time.sleep(120)\n"
    )
    loop = trap.loop(test_command=[sys.executable, str(script)], test_timeout=3.0)
    started = time.monotonic()
    out = await loop.run(ToolCall("run_tests", {}))
    assert time.monotonic() - started < 20
    assert "did not finish within 3 s and was stopped" in out.content and "started" in out.content
    assert await _gone(int(pid_file.read_text()))


async def test_cancelling_the_turn_kills_the_running_tests(trap: Trap) -> None:
    pid_file = trap.root / "tests.pid"
    script = trap.root / "hang.py"
    script.write_text(
        f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(120)\n"
    )
    loop = trap.loop(test_command=[sys.executable, str(script)])
    task = asyncio.ensure_future(loop.run(ToolCall("run_tests", {})))
    deadline = time.monotonic() + 20
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the test command never started"
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _gone(int(pid_file.read_text()))


async def test_a_missing_test_command_is_explained(trap: Trap) -> None:
    out = await trap.loop(test_command=["no-such-runner-xyz"]).run(ToolCall("run_tests", {}))
    assert not out.ok and "'no-such-runner-xyz' was not found" in out.content
    assert "tools.runTestsCommand" in out.content


def _exited(pid: int) -> bool:
    """True once `pid` has exited (a zombie nobody has reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def _gone(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _exited(pid):
            return True
        await asyncio.sleep(0.1)
    return False


# -- propose_edit -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "start", "end"),
    [("utf-16", 13, 18), ("utf-8", 14, 19), ("utf-32", 13, 18)],
)
async def test_propose_edit_sends_an_exact_range_in_the_clients_encoding(
    trap: Trap, encoding: str, start: int, end: int
) -> None:
    (trap.ws / "u.py").write_text('s = "héllo"; x = 1\ny = 2\n')
    loop = trap.loop(position_encoding=encoding)
    out = await loop.run(
        ToolCall(
            "propose_edit",
            {"path": "u.py", "old_text": "x = 1", "new_text": "x = 10", "description": "bump x"},
        )
    )
    assert out.ok and out.content == "The user accepted the edit: u.py was changed (lines 1-1)."
    ((label, edit),) = trap.edits
    assert label == "Koma: bump x"
    ((uri, (change,)),) = edit["changes"].items()
    assert uri == (trap.ws / "u.py").as_uri()
    assert change == {
        "range": {"start": {"line": 0, "character": start}, "end": {"line": 0, "character": end}},
        "newText": "x = 10",
    }
    assert (trap.ws / "u.py").read_text() == 's = "héllo"; x = 1\ny = 2\n'  # only proposed


async def test_propose_edit_refuses_ambiguous_or_missing_text_and_reports_rejection(
    trap: Trap,
) -> None:
    (trap.ws / "d.py").write_text("a = 1\na = 1\n  b = 2\n")
    twice = await call(trap, "propose_edit", path="d.py", old_text="a = 1", new_text="a = 2")
    assert not twice.ok and "occurs 2 times" in twice.content
    spaced = await call(trap, "propose_edit", path="d.py", old_text="b = 2 \n", new_text="b = 3")
    assert not spaced.ok and "different leading/trailing whitespace" in spaced.content
    assert trap.edits == []
    trap.apply_answer = (False, "The user rejected the proposed edit.")
    rejected = await call(trap, "propose_edit", path="d.py", old_text="  b = 2", new_text="  b = 3")
    assert not rejected.ok
    assert rejected.content == (
        "Error: the edit to d.py was not applied: The user rejected the proposed edit."
    )


async def test_propose_edit_keeps_crlf_and_creates_new_files(trap: Trap) -> None:
    (trap.ws / "w.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    out = await call(trap, "propose_edit", path="w.txt", old_text="two\nthree", new_text="2\n3")
    assert out.ok
    change = trap.edits[-1][1]["changes"][(trap.ws / "w.txt").as_uri()][0]
    assert change["newText"] == "2\r\n3"
    assert change["range"] == {
        "start": {"line": 1, "character": 0},
        "end": {"line": 2, "character": 5},
    }
    made = await call(
        trap,
        "propose_edit",
        path="tests/test_new.py",
        old_text="",
        new_text="def test():\n    pass\n",
    )
    assert made.ok and "tests/test_new.py was created" in made.content
    create, insert = trap.edits[-1][1]["documentChanges"]
    assert create["kind"] == "create" and create["options"]["overwrite"] is False
    assert insert["edits"][0]["newText"] == "def test():\n    pass\n"
    assert not (trap.ws / "tests" / "test_new.py").exists()


def test_positions_count_code_units() -> None:
    text = "a😀b\nc"
    assert position(text, 3, "utf-16") == {"line": 0, "character": 4}
    assert position(text, 3, "utf-8") == {"line": 0, "character": 6}
    assert position(text, 3, "utf-32") == {"line": 0, "character": 3}
    assert position(text, 4, "utf-16") == {"line": 1, "character": 0}


def test_propose_edit_is_only_offered_when_the_editor_can_apply_edits(trap: Trap) -> None:
    with_edits = [t.name for t in trap.tools().toolkit()]
    without = [t.name for t in WorkspaceTools(trap.config(apply_edit=None)).toolkit()]
    assert with_edits == ["read_file", "list_files", "search", "run_tests", "propose_edit"]
    assert without == ["read_file", "list_files", "search", "run_tests"]

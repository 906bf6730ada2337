"""The attack table: each call is refused with a clear result, and nothing outside is read or run.

Every case goes through the real `ToolLoop.run` with every tool allowed by policy, so the
refusal comes from the jail, the argument checks or the selector checks — not from consent.
For each case the test also proves, with Python audit hooks, that no file outside the workspace
was opened or listed, that no process was started, that the canary never reached the result,
that the marker a malicious command would create does not exist, and that no edit was sent.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from tools_trap import CANARY_TEXT, HAS_GIT, Trap

from koma.types import ToolCall

# (id, tool, arguments — "{outside}"/"{ws}" are filled in —, words the refusal must contain)
CASES: list[tuple[str, str, Any, str]] = [
    # read_file: escaping the folder
    ("dotdot", "read_file", {"path": "../outside/canary.txt"}, "outside the workspace"),
    ("absolute", "read_file", {"path": "{outside}/canary.txt"}, "outside the workspace"),
    ("dotdot-inside", "read_file", {"path": "src/../../outside/canary.txt"}, "outside"),
    ("symlinked-dir", "read_file", {"path": "link_out/canary.txt"}, "through a symlink"),
    ("symlinked-file", "read_file", {"path": "escape.txt"}, "through a symlink"),
    ("file-uri", "read_file", {"path": "file://{outside}/canary.txt"}, "outside the workspace"),
    ("etc-passwd", "read_file", {"path": "/etc/passwd"}, "outside the workspace"),
    ("dev-zero", "read_file", {"path": "/dev/zero"}, "outside the workspace"),
    ("proc-self", "read_file", {"path": "/proc/self/environ"}, "outside the workspace"),
    # read_file: inside, but off limits
    ("git-config", "read_file", {"path": ".git/config"}, ".git/"),
    ("git-via-dotdot", "read_file", {"path": "src/../.git/HEAD"}, ".git/"),
    ("symlink-into-git", "read_file", {"path": "git_link"}, ".git/"),
    ("dotenv", "read_file", {"path": ".env"}, "secret pattern '.env'"),
    ("dotenv-variant", "read_file", {"path": "config/.env.production"}, "secret pattern"),
    ("pem", "read_file", {"path": "keys/server.pem"}, "secret pattern '*.pem'"),
    ("ssh-key", "read_file", {"path": "id_rsa"}, "secret pattern 'id_*'"),
    ("symlink-to-secret", "read_file", {"path": "notes.txt"}, "secret pattern '.env'"),
    ("fifo", "read_file", {"path": "fifo"}, "FIFO"),
    ("symlink-loop", "read_file", {"path": "loop_a"}, "cannot be read"),
    ("sparse-1gb", "read_file", {"path": "big.log"}, "binary file (1.0 GB)"),
    ("binary", "read_file", {"path": "image.png"}, "binary file"),
    ("folder", "read_file", {"path": "src"}, "is a folder"),
    ("nul-byte", "read_file", {"path": "a.py\x00../../outside/canary.txt"}, "NUL byte"),
    ("empty-path", "read_file", {"path": ""}, "the path is empty"),
    # read_file: malformed calls
    ("path-wrong-type", "read_file", {"path": 123}, "path: Input should be a valid string"),
    ("path-list", "read_file", {"path": ["../outside/canary.txt"]}, "valid string"),
    ("path-missing", "read_file", {}, "path: required argument missing"),
    ("extra-argument", "read_file", {"path": "a.py", "mode": "w"}, "mode: unknown argument"),
    ("negative-line", "read_file", {"path": "a.py", "start_line": -5}, "greater than or equal"),
    ("not-json", "read_file", '{"path": "../outside/canary.txt"', "not a JSON object"),
    ("json-array", "read_file", '["../outside/canary.txt"]', "JSON, but not an object"),
    # tools that do not exist
    ("unknown-tool", "write_file", {"path": "a.py"}, "no tool named 'write_file'"),
    ("shell-tool", "run_shell", {"command": "cat /etc/passwd"}, "the tools are: read_file"),
    # list_files / search
    ("list-outside", "list_files", {"path": "../outside"}, "outside the workspace"),
    ("list-symlinked", "list_files", {"path": "link_out"}, "through a symlink"),
    ("list-git", "list_files", {"path": ".git"}, ".git/"),
    ("search-outside", "search", {"pattern": "CANARY", "path": "{outside}"}, "outside"),
    ("search-symlinked", "search", {"pattern": "CANARY", "path": "link_out"}, "symlink"),
    ("search-bad-regex", "search", {"pattern": "(unclosed"}, "not a valid regular expression"),
    ("search-huge-pattern", "search", {"pattern": "a" * 600}, "longer than 500"),
    # run_tests: the selector is one argument, never a shell string or an option
    ("sel-semicolon", "run_tests", {"selector": "tests; touch {marker}"}, "';'"),
    ("sel-subshell", "run_tests", {"selector": "$(touch {marker})"}, "'$'"),
    ("sel-backticks", "run_tests", {"selector": "`touch {marker}`"}, "'`'"),
    ("sel-pipe", "run_tests", {"selector": "tests | sh"}, "'|'"),
    ("sel-and", "run_tests", {"selector": "tests && touch {marker}"}, "'&'"),
    ("sel-redirect", "run_tests", {"selector": "tests > {marker}"}, "'>'"),
    ("sel-newline", "run_tests", {"selector": "tests\n--co"}, "'\\n'"),
    ("sel-long-option", "run_tests", {"selector": "--rootdir=/"}, "looks like an option"),
    ("sel-plugin", "run_tests", {"selector": "-p evil"}, "looks like an option"),
    ("sel-argsfile", "run_tests", {"selector": "@{outside}/args.txt"}, "looks like an option"),
    ("sel-outside", "run_tests", {"selector": "../outside/test_evil.py"}, "outside"),
    ("sel-absolute", "run_tests", {"selector": "{outside}/test_evil.py::test_evil"}, "outside"),
    ("sel-symlinked", "run_tests", {"selector": "link_out/test_evil.py"}, "through a symlink"),
    ("sel-git", "run_tests", {"selector": ".git/hooks"}, ".git/"),
    ("sel-wrong-type", "run_tests", {"selector": ["tests"]}, "valid string"),
    ("sel-missing-file", "run_tests", {"selector": "tests/test_nope.py"}, "does not exist"),
    # propose_edit: edits are jailed too
    ("edit-outside", "propose_edit", {"path": "../outside/canary.txt"}, "outside"),
    ("edit-absolute", "propose_edit", {"path": "/tmp/koma-evil.py"}, "outside the workspace"),
    ("edit-symlinked", "propose_edit", {"path": "link_out/new.py"}, "through a symlink"),
    ("edit-git-hook", "propose_edit", {"path": ".git/hooks/pre-commit"}, ".git/"),
    ("edit-secret", "propose_edit", {"path": ".env"}, "secret pattern"),
    ("edit-via-symlink", "propose_edit", {"path": "escape.txt"}, "through a symlink"),
    ("edit-no-folder", "propose_edit", {"path": "nowhere/new.py"}, "does not exist"),
]


def _fill(value: Any, trap: Trap) -> Any:
    if isinstance(value, str):
        for key, path in (
            ("{outside}", trap.outside),
            ("{ws}", trap.ws),
            ("{marker}", trap.marker),
        ):
            value = value.replace(key, str(path))
        return value
    if isinstance(value, dict):
        return {k: _fill(v, trap) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, trap) for v in value]
    return value


def test_the_table_has_at_least_thirty_attacks() -> None:
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_attack_is_refused_and_nothing_outside_is_touched(
    trap: Trap, audit: Any, tool: str, arguments: Any, expected: str
) -> None:
    if "git" in expected and not HAS_GIT:
        pytest.skip("needs git for a .git folder")
    arguments = _fill(arguments, trap)
    if tool == "propose_edit" and isinstance(arguments, dict):
        arguments = {
            "old_text": "",
            "new_text": "import os\nos.system('touch MARKER')\n",
            **arguments,
        }
    loop = trap.loop()
    started = time.monotonic()
    with audit() as events:
        outcome = await asyncio.wait_for(loop.run(ToolCall(tool, arguments, id="c1")), 30)
    assert time.monotonic() - started < 10  # no hang on a FIFO, no read of 1 GB
    assert not outcome.ok, outcome.content
    assert outcome.content.startswith("Error: ")
    assert expected in outcome.content, outcome.content
    assert CANARY_TEXT not in outcome.content
    # Nothing outside the workspace (or under .git/, or a secret) was opened or listed …
    touched = [
        (event, target)
        for event, target in events
        if str(trap.outside) in target
        or target.startswith(("/dev/", "/proc/", "/etc/"))
        or "/.git/" in target
        or Path(target).name in (".env", ".env.production", "id_rsa", "server.pem", "fifo")
    ]
    assert touched == []
    # … no process was started, nothing ran, no edit reached the editor.
    assert not [e for e in events if e[0] in ("subprocess.Popen", "os.exec", "os.system")]
    assert not trap.ran_log.exists()
    assert not trap.marker.exists()
    assert trap.edits == []
    assert (trap.outside / "canary.txt").read_text() == CANARY_TEXT + "\n"


async def test_listing_and_searching_the_workspace_skip_secrets_git_and_escapes(
    trap: Trap, audit: Any
) -> None:
    loop = trap.loop()
    with audit() as events:
        listed = await loop.run(ToolCall("list_files", {}))
        searched = await loop.run(ToolCall("search", {"pattern": "CANARY|TOKEN"}))
    assert listed.ok and searched.ok
    names = listed.content.splitlines()[1:]
    assert "a.py" in names and "src/util.py" in names
    for hidden in (".env", "config/.env.production", "keys/server.pem", "id_rsa", "notes.txt"):
        assert hidden not in names
    assert not any(n.startswith((".git/", "link_out")) for n in names)
    assert "escape.txt" not in names and "fifo" not in names
    assert CANARY_TEXT not in listed.content + searched.content
    assert searched.content.startswith("No match")
    assert not [t for _, t in events if str(trap.outside) in t or "/.git/" in t]


async def test_a_catastrophic_regex_is_stopped_not_left_spinning(trap: Trap) -> None:
    (trap.ws / "slow.txt").write_text("a" * 40 + "!\n")
    tools = trap.tools(search_timeout=2.0)
    loop = trap.loop(search_timeout=2.0)
    assert tools.config.search_timeout == 2.0
    started = time.monotonic()
    outcome = await loop.run(ToolCall("search", {"pattern": "^(a+)+$", "glob": "slow.txt"}))
    assert time.monotonic() - started < 8
    assert outcome.ok
    assert "stopped after 2 s" in outcome.content

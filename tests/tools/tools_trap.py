"""Shared helpers of the tool tests: a workspace full of traps, a recorder of what got touched.

Imported as `tools_trap`; conftest.py turns `trap` and `audit` into fixtures.

`trap` builds, under tmp_path:

    outside/canary.txt          the secret nothing may ever read (CANARY_TEXT)
    outside/test_evil.py        a test that would create the marker file if it ever ran
    ws/                         the workspace folder (a git repository when `git` exists)
      a.py, src/util.py, tests/test_ok.py, README.md
      .env, config/.env.production, keys/server.pem, id_rsa     secrets (hold the canary)
      link_out -> ../outside     escape.txt -> ../outside/canary.txt
      notes.txt -> .env          git_link -> .git/config        fifo (a named pipe)
      big.log (1 GB, sparse)     image.png (binary)      loop_a <-> loop_b (a symlink loop)
      deep/er/  S -> deep/er     so `S/../../x` resolves to ws/x, while a lexical `..` says ../x
      fifo_link -> fifo          the common credential files (.git-credentials, .npmrc, …)
      .vscode/ .github/workflows/ .devcontainer/     folders whose files are sensitive to edit
    recorder.py                 the test command: it appends its argv to `ran.log`

`Trap.buffers` are the editor's open documents (uri -> text) the tools see through
`open_text`; it starts with an *outside* file open, as an editor may have it.

`audit` records every file open / directory listing / process start the *test process* makes
while a block runs (Python audit hooks), so a test can prove nothing outside was read or run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from koma.engine.tools.loop import ToolLoop
from koma.engine.tools.policy import PolicyGate
from koma.engine.tools.workspace import WorkspaceConfig, WorkspaceTools

CANARY_TEXT = "CANARY-5f3a9c-DO-NOT-LEAK"
CREDENTIAL_FILES = (
    ".git-credentials",
    ".netrc",
    ".npmrc",
    ".pypirc",
    ".pgpass",
    "credentials.json",
    ".aws/credentials",
    "sub/.aws/credentials",
    ".docker/config.json",
    ".kube/config",
    "id_ed25519",
    "certs/client.key",
    "certs/client.p12",
    "certs/client.pfx",
    "infra/terraform.tfstate",
)
ALL_ALLOWED = {
    "read_file": "allow",
    "list_files": "allow",
    "search": "allow",
    "run_tests": "allow",
    "propose_edit": "allow",
}


@dataclass
class Trap:
    root: Path
    ws: Path
    outside: Path
    marker: Path
    ran_log: Path
    recorder: Path
    edits: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    apply_answer: tuple[bool, str | None] = (True, None)
    buffers: dict[str, str] = field(default_factory=dict)

    def config(self, **extra: Any) -> WorkspaceConfig:
        async def apply_edit(label: str, edit: dict[str, Any]) -> tuple[bool, str | None]:
            self.edits.append((label, edit))
            return self.apply_answer

        options: dict[str, Any] = {
            "roots": [self.ws],
            "test_command": [sys.executable, str(self.recorder)],
            "test_timeout": 60.0,
            "apply_edit": apply_edit,
            "open_text": self.buffers.get,
        }
        options.update(extra)
        return WorkspaceConfig(**options)

    def tools(self, **extra: Any) -> WorkspaceTools:
        return WorkspaceTools(self.config(**extra))

    def loop(self, **extra: Any) -> ToolLoop:
        return ToolLoop(self.tools(**extra).toolkit(), gate=PolicyGate(ALL_ALLOWED))


def _git(ws: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@e", *args],
        cwd=ws,
        check=True,
        capture_output=True,
    )


def build_trap(root: Path, git: bool) -> Trap:
    ws, outside = root / "ws", root / "outside"
    for folder in (ws / "src", ws / "tests", ws / "config", ws / "keys", outside):
        folder.mkdir(parents=True, exist_ok=True)
    marker = root / "MARKER"
    (outside / "canary.txt").write_text(CANARY_TEXT + "\n")
    (outside / "test_evil.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "def test_evil():\n    pass\n"
    )
    (ws / "a.py").write_text("def add(a, b):\n    return a + b\n")
    (ws / "src" / "util.py").write_text("def parse_line(text):\n    return text.split()\n")
    (ws / "tests" / "test_ok.py").write_text("def test_ok():\n    assert True\n")
    (ws / "README.md").write_text("# Demo\n")
    for secret in (".env", "config/.env.production", "keys/server.pem", "id_rsa"):
        (ws / secret).write_text(f"TOKEN={CANARY_TEXT}\n")
    (ws / "link_out").symlink_to(outside, target_is_directory=True)
    (ws / "escape.txt").symlink_to(outside / "canary.txt")
    (ws / "notes.txt").symlink_to(ws / ".env")
    (ws / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with open(ws / "big.log", "wb") as big:
        big.truncate(1 << 30)  # 1 GB of zeros that take no disk space
    os.mkfifo(ws / "fifo")
    (ws / "fifo_link").symlink_to(ws / "fifo")
    (ws / "deep" / "er").mkdir(parents=True)
    (ws / "S").symlink_to(ws / "deep" / "er", target_is_directory=True)
    for credential in CREDENTIAL_FILES:
        (ws / credential).parent.mkdir(parents=True, exist_ok=True)
        (ws / credential).write_text(f"password={CANARY_TEXT}\n")
    for folder in (".vscode", ".github/workflows", ".devcontainer"):
        (ws / folder).mkdir(parents=True)
    (ws / "loop_a").symlink_to(ws / "loop_b")
    (ws / "loop_b").symlink_to(ws / "loop_a")
    if git:
        _git(ws, "init", "-q")
        (ws / ".gitignore").write_text("build/\n*.tmp\n")
        _git(ws, "add", "a.py", "src", "tests", "README.md", ".gitignore")
        _git(ws, "commit", "-q", "-m", "init")
        (ws / "git_link").symlink_to(ws / ".git" / "config")
    ran_log = root / "ran.log"
    recorder = root / "recorder.py"
    recorder.write_text(
        "import sys\n"
        f"with open({str(ran_log)!r}, 'a') as log:\n"
        "    log.write(repr(sys.argv[1:]) + '\\n')\n"
        "print('recorded', sys.argv[1:])\n"
    )
    trap = Trap(root, ws, outside, marker, ran_log, recorder)
    trap.buffers[(outside / "canary.txt").as_uri()] = CANARY_TEXT + " (unsaved)\n"
    trap.buffers[(root / ".bashrc").as_uri()] = CANARY_TEXT + " (unsaved)\n"
    return trap


HAS_GIT = shutil.which("git") is not None


@pytest.fixture
def trap(tmp_path: Path) -> Trap:
    return build_trap(tmp_path, git=HAS_GIT)


# -- audit hooks ----------------------------------------------------------------------------------

_EVENTS = {"open", "os.listdir", "os.scandir", "subprocess.Popen", "os.exec", "os.system"}
_active: list[list[tuple[str, str]]] = []


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not _active or event not in _EVENTS:
        return
    target = args[0] if args else None
    if isinstance(target, bytes):
        target = target.decode("utf-8", "replace")
    if isinstance(target, list | tuple):
        target = " ".join(str(t) for t in target)
    if isinstance(target, int):
        return  # an fd (fdopen): the path was audited when it was opened
    _active[-1].append((event, str(target)))


sys.addaudithook(_hook)


@contextmanager
def audited() -> Iterator[list[tuple[str, str]]]:
    """Every open / listing / process start made while the block runs."""
    events: list[tuple[str, str]] = []
    _active.append(events)
    try:
        yield events
    finally:
        _active.remove(events)


@pytest.fixture
def audit() -> Any:
    return audited

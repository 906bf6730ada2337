"""From "replace this text with that" to an LSP `WorkspaceEdit` (plain JSON, no pygls).

Models are good at quoting the text they want to change and bad at counting columns, so a
proposed edit names `old_text` (which must occur exactly once) and `new_text`; the range is
computed here from the editor's current text of the file, in the position encoding the client
negotiated (UTF-8, UTF-16 or UTF-32 code units). A new file is a `CreateFile` operation plus one
insertion. The edit is only ever *proposed*: the editor shows it and the user decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from koma.engine.tools.toolkit import ToolError


@dataclass(frozen=True)
class PlannedEdit:
    edit: dict[str, Any]
    first_line: int  # 1-based, for the report
    last_line: int


def units(text: str, encoding: str) -> int:
    """Length of `text` in the client's position units."""
    if encoding == "utf-8":
        return len(text.encode("utf-8"))
    if encoding == "utf-32":
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def position(text: str, offset: int, encoding: str) -> dict[str, int]:
    """The LSP position of a character offset (lines split at `\\n`; `\\r\\n` included)."""
    line = text.count("\n", 0, offset)
    start = text.rfind("\n", 0, offset) + 1
    return {"line": line, "character": units(text[start:offset], encoding)}


def locate(text: str, old_text: str, shown: str) -> tuple[int, str]:
    """Where `old_text` occurs (exactly once), trying the file's own line endings as well."""
    candidates = [old_text]
    if "\r\n" in text and "\n" in old_text and "\r\n" not in old_text:
        candidates.append(old_text.replace("\n", "\r\n"))
    for candidate in candidates:
        count = text.count(candidate)
        if count == 1:
            return text.index(candidate), candidate
        if count > 1:
            raise ToolError(
                f"old_text occurs {count} times in {shown}; include more surrounding lines so "
                "it names one place"
            )
    stripped = old_text.strip()
    hint = ""
    if stripped and text.count(stripped) == 1:
        hint = " (it does occur with different leading/trailing whitespace — quote it exactly)"
    raise ToolError(
        f"old_text was not found in {shown}{hint}; read the file again and quote the lines to "
        "replace exactly, without line numbers"
    )


def plan_replace(
    uri: str, text: str, old_text: str, new_text: str, shown: str, encoding: str
) -> PlannedEdit:
    """A one-range edit of an existing file."""
    if old_text == "":
        if text.strip():
            raise ToolError(
                f"old_text is empty but {shown} is not; quote the text to replace (to add "
                "something, quote the line it goes after and repeat it in new_text)"
            )
        start, found = 0, text
    else:
        start, found = locate(text, old_text, shown)
    if "\r\n" in text and "\r\n" not in new_text:
        new_text = new_text.replace("\n", "\r\n")
    end = start + len(found)
    edit = {
        "changes": {
            uri: [
                {
                    "range": {
                        "start": position(text, start, encoding),
                        "end": position(text, end, encoding),
                    },
                    "newText": new_text,
                }
            ]
        }
    }
    first = text.count("\n", 0, start) + 1
    return PlannedEdit(edit, first, first + new_text.count("\n"))


def plan_create(uri: str, new_text: str) -> PlannedEdit:
    """A new file with `new_text` in it; refused by the editor if the file appeared meanwhile."""
    origin = {"line": 0, "character": 0}
    edit = {
        "documentChanges": [
            {
                "kind": "create",
                "uri": uri,
                "options": {"overwrite": False, "ignoreIfExists": False},
            },
            {
                "textDocument": {"uri": uri, "version": None},
                "edits": [{"range": {"start": origin, "end": origin}, "newText": new_text}],
            },
        ]
    }
    return PlannedEdit(
        edit, 1, max(1, new_text.count("\n") + (0 if new_text.endswith("\n") else 1))
    )


# Files whose change runs something or changes who decides: an edit to one of them is
# "sensitive" and always needs the user's explicit confirmation (docs/tools.md).
_KOMA = "Koma's own configuration (it decides what Koma runs and where your code is sent)"
_EDITOR = "editor configuration (tasks, launch configurations and settings can run commands)"
_GIT = "git's configuration or hooks (they run commands on git operations)"
_CI = "CI configuration (it runs commands, often with the repository's secrets)"
_SHELL = "a shell startup file (it runs in every shell you open)"
_HG = "Mercurial's configuration or hooks (they run commands on hg operations)"
_MISE = "mise's configuration (its hooks and env run when you enter the folder)"
_SENSITIVE_NAMES = {
    ".koma.toml": _KOMA,
    ".gitlab-ci.yml": _CI,
    ".travis.yml": _CI,
    "azure-pipelines.yml": _CI,
    "bitbucket-pipelines.yml": _CI,
    "jenkinsfile": _CI,
    ".drone.yml": _CI,
    "appveyor.yml": _CI,
    ".gitmodules": _GIT,
    ".pre-commit-config.yaml": _GIT,
    "lefthook.yml": _GIT,
    ".lefthook.yml": _GIT,
    "mise.toml": _MISE,
    ".mise.toml": _MISE,
    ".bashrc": _SHELL,
    ".bash_profile": _SHELL,
    ".bash_login": _SHELL,
    ".bash_logout": _SHELL,
    ".profile": _SHELL,
    ".zshrc": _SHELL,
    ".zprofile": _SHELL,
    ".zshenv": _SHELL,
    ".zlogin": _SHELL,
    ".kshrc": _SHELL,
    ".cshrc": _SHELL,
    ".tcshrc": _SHELL,
    ".envrc": _SHELL,
    ".exrc": _EDITOR,
    ".nvim.lua": _EDITOR,
    ".nvimrc": _EDITOR,
}
_SENSITIVE_FOLDERS = {
    ".vscode": _EDITOR,
    ".idea": _EDITOR,
    ".devcontainer": _EDITOR,
    ".git": _GIT,
    ".hg": _HG,
    ".githooks": _GIT,
    ".husky": _GIT,
    ".circleci": _CI,
    ".buildkite": _CI,
    ".gitlab": _CI,
    ".woodpecker": _CI,
}
_SENSITIVE_PAIRS = {
    (".github", "workflows"): _CI,
    (".github", "actions"): _CI,
    (".config", "fish"): _SHELL,
}


def sensitive_reason(parts: tuple[str, ...]) -> str | None:
    """Why changing the file at these workspace-relative path parts needs an explicit yes."""
    # casefold, as a case-insensitive file system compares names (`.baſhrc` is `.bashrc`).
    lowered = [part.casefold() for part in parts]
    if not lowered:
        return None
    name = lowered[-1]
    if name in _SENSITIVE_NAMES:
        return _SENSITIVE_NAMES[name]
    if name.endswith(".code-workspace"):
        return _EDITOR
    for index, part in enumerate(lowered[:-1]):
        if part in _SENSITIVE_FOLDERS:
            return _SENSITIVE_FOLDERS[part]
        if (part, lowered[index + 1]) in _SENSITIVE_PAIRS and index + 1 < len(lowered) - 1:
            return _SENSITIVE_PAIRS[(part, lowered[index + 1])]
    return None

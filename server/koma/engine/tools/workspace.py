"""The workspace tools a chat model may call: read, list, search, run the tests, propose edits.

Every path goes through the jail; the test command is the user's argv; an edit is only sent to
the editor (`apply_edit` callback → `workspace/applyEdit`), which shows it and lets the user
accept or reject. The engine knows nothing of LSP: the language server injects the editor's
unsaved text (`open_text`), the edit callback and the position encoding.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from koma.engine.tools import edits, testrun
from koma.engine.tools.childenv import child_env
from koma.engine.tools.files import MATCH_SECONDS, compile_glob, select, workspace_files
from koma.engine.tools.jail import Jail, JailedPath, PathRefused, is_binary
from koma.engine.tools.reading import SCAN_LIMIT_BYTES, numbered, read_disk
from koma.engine.tools.search import compile_pattern, grep
from koma.engine.tools.toolkit import ToolError, Toolkit, one_line, tool
from koma.settings import ToolSettings

OpenText = Callable[[str], str | None]
ApplyEdit = Callable[[str, dict[str, Any]], Awaitable[tuple[bool, str | None]]]
MAX_LISTED = 400
# The model's description of an edit, as shown in the confirmation and the editor's edit label.
DESCRIPTION_CHARS = 120
MAX_MATCHES = 150
MAX_SEARCH_FILES = 5000
MATCH_LINE_CHARS = 240
SEARCH_TIMEOUT_SECONDS = 10.0
PositiveLine = Annotated[int, Field(ge=1)]


@dataclass
class WorkspaceConfig:
    """What the workspace tools need; `from_settings` fills it from `tools.*`."""

    roots: Sequence[Path]
    secret_patterns: Sequence[str] = field(default_factory=lambda: ToolSettings().secret_patterns)
    max_read_bytes: int = 200_000
    test_command: Sequence[str] = ("python", "-m", "pytest", "-q")
    test_timeout: float = 120.0
    open_text: OpenText | None = None
    apply_edit: ApplyEdit | None = None
    position_encoding: str = "utf-16"
    search_timeout: float = SEARCH_TIMEOUT_SECONDS
    # Credential variables the test process may keep anyway (`tools.passEnv`).
    pass_env: Sequence[str] = ()

    @classmethod
    def from_settings(cls, roots: Sequence[Path], tools: ToolSettings, **extra: Any) -> Any:
        return cls(
            roots=roots,
            secret_patterns=list(tools.secret_patterns),
            max_read_bytes=tools.max_read_bytes,
            test_command=list(tools.run_tests_command),
            test_timeout=tools.run_tests_timeout_seconds,
            pass_env=list(tools.pass_env),
            **extra,
        )


class WorkspaceTools:
    """The tools, bound to one workspace; `toolkit()` lists the ones this client can use."""

    def __init__(self, config: WorkspaceConfig) -> None:
        self.config = config
        self.jail = Jail(config.roots, config.secret_patterns, config.max_read_bytes)

    def toolkit(self) -> Toolkit:
        kit = Toolkit.from_object(self)
        if self.config.apply_edit is None:
            return Toolkit(t for t in kit if t.name != "propose_edit")
        return kit

    # -- read_file --------------------------------------------------------------------------

    def _check_read(self, arguments: dict[str, Any]) -> None:
        self._file_source(arguments["path"])

    @tool(summary=lambda self, a: f"read {a.get('path')}", precheck=_check_read)
    def read_file(
        self,
        path: str,
        start_line: PositiveLine | None = None,
        end_line: PositiveLine | None = None,
    ) -> str:
        """Read a text file of the workspace. Lines come numbered (the numbers are not part of
        the file); big files are cut — pass start_line/end_line for the part you need.

        Args:
            path: the file, relative to the workspace folder (e.g. src/app.py)
            start_line: first line to show (1-based)
            end_line: last line to show (inclusive)
        """
        if start_line and end_line and end_line < start_line:
            raise ToolError(f"end_line {end_line} is before start_line {start_line}")
        target, text = self._file_source(path)
        if text is not None:
            lines = text.splitlines()
            return numbered(target.shown, lines, start_line, end_line, self.config.max_read_bytes)
        return read_disk(self.jail, target, start_line, end_line, self.config.max_read_bytes)

    def _file_source(self, path: str) -> tuple[JailedPath, str | None]:
        """The checked path, and the editor's unsaved text when the file is open there.

        The path is resolved once; the buffer looked up, or the file read, is that path.
        """
        target = self.jail.resolve(path, "new")
        if self.config.open_text is not None:
            text = self.config.open_text(target.uri)
            if text is not None:
                if len(text.encode("utf-8", "surrogatepass")) > SCAN_LIMIT_BYTES:
                    raise ToolError(f"{target.shown} is too large to read")
                return target, text
        return self.jail.require(target, "file"), None

    # -- list_files -------------------------------------------------------------------------

    @tool(summary=lambda self, a: f"list the files in {a.get('path') or '.'}")
    async def list_files(self, path: str = ".", glob: str | None = None) -> str:
        """List the workspace's files (respecting .gitignore), optionally filtered by a glob.

        Args:
            path: folder to list, relative to the workspace (default: the whole workspace)
            glob: e.g. "*.py", "tests/**/test_*.py"
        """
        if glob is not None:
            compile_glob(glob)
        folder = self.jail.resolve(path, "dir")
        found, cut = await workspace_files(self.jail, folder)
        selected, slow = await self._select(found, folder, glob)
        names = sorted(shown for shown, _ in selected)
        where = f"under {folder.shown}" if folder.shown != "." else "in the workspace"
        what = f" matching {glob!r}" if glob else ""
        if slow:
            what += f" (matching the glob was stopped after {MATCH_SECONDS:g} s; some are missing)"
        if not names:
            return f"No files {where}{what}."
        head = f"{len(names)} files {where}{what}"
        if len(names) > MAX_LISTED:
            head += f" (showing the first {MAX_LISTED}; narrow it with path or glob)"
        elif cut:
            head += " (the folder is very large; the listing stopped early)"
        return head + ":\n" + "\n".join(names[:MAX_LISTED])

    async def _select(
        self, found: list[tuple[Path, Path]], folder: JailedPath, glob: str | None
    ) -> tuple[list[tuple[str, Path]], bool]:
        """`(shown name, resolved path)` of the listed files that match the glob, and True when
        matching ran out of time. The matching runs in a worker thread with a deadline."""
        relative = [(listed.relative_to(folder.real).as_posix(), real) for listed, real in found]
        chosen, slow = await asyncio.to_thread(select, relative, glob)
        return [(self.jail.shown(folder.real / name), real) for name, real in chosen], slow

    # -- search -----------------------------------------------------------------------------

    def _check_search(self, arguments: dict[str, Any]) -> None:
        compile_pattern(arguments["pattern"], arguments.get("ignore_case", False))

    @tool(
        summary=lambda self, a: f"search the workspace for /{a.get('pattern')}/",
        precheck=_check_search,
    )
    async def search(
        self, pattern: str, path: str = ".", glob: str | None = None, ignore_case: bool = False
    ) -> str:
        """Search the workspace's text files with a regular expression (Python syntax); gives
        file:line: text for each matching line.

        Args:
            pattern: the regular expression, e.g. "def parse_\\w+"
            path: folder to search (default: the whole workspace)
            glob: only files matching this glob, e.g. "*.py"
            ignore_case: match regardless of case
        """
        compile_pattern(pattern, ignore_case)
        if glob is not None:
            compile_glob(glob)
        folder = self.jail.resolve(path, "dir")
        found, _ = await workspace_files(self.jail, folder)
        selected, _ = await self._select(found, folder, glob)
        files = [[shown, str(real)] for shown, real in selected]
        files = files[:MAX_SEARCH_FILES]
        job = {
            "pattern": pattern,
            "ignore_case": ignore_case,
            "files": files,
            "max_matches": MAX_MATCHES,
            "max_line": MATCH_LINE_CHARS,
            "max_file_bytes": max(self.config.max_read_bytes, 2_000_000),
        }
        hits, summary, timed_out = await grep(job, self.config.search_timeout)
        lines = [f"{h['file']}:{h['line']}: {h['text']}" for h in hits]
        if timed_out:
            note = (
                f"the search was stopped after {self.config.search_timeout:g} s (a slow pattern?);"
                " these are the matches found until then"
            )
        elif summary.get("cut"):
            note = f"stopped at {MAX_MATCHES} matches; narrow the pattern, path or glob"
        else:
            note = f"{len(hits)} matches in {summary.get('searched', 0)} files"
        if not hits:
            return (
                f"No match for /{pattern}/ ({note})." if timed_out else f"No match for /{pattern}/."
            )
        return note + ":\n" + "\n".join(lines)

    # -- run_tests --------------------------------------------------------------------------

    def _argv(self, selector: str | None) -> list[str]:
        argv = list(self.config.test_command)
        if selector is not None:
            argv.append(testrun.check_selector(selector, self.jail))
        return argv

    def _describe_run(self, arguments: dict[str, Any]) -> str:
        return f"run the tests: {shlex.join(self._argv(arguments.get('selector')))}"

    @tool(
        policy="ask",
        summary=_describe_run,
        precheck=lambda self, a: self._argv(a.get("selector")),
    )
    async def run_tests(self, selector: str | None = None) -> str:
        """Run the project's tests with the command the user configured and report the exit code
        and the end of the output.

        Args:
            selector: optional test file, folder or pytest node id to run only those tests,
                e.g. "tests/test_parse.py" or "tests/test_parse.py::test_empty"
        """
        argv = self._argv(selector)
        env = child_env(self.config.pass_env)
        run = await testrun.run_command(argv, self.jail.roots[0], self.config.test_timeout, env)
        return run.report(self.config.test_timeout)

    # -- propose_edit -----------------------------------------------------------------------

    def _plan(self, arguments: dict[str, Any]) -> tuple[JailedPath, edits.PlannedEdit, bool]:
        path, old, new = arguments["path"], arguments["old_text"], arguments["new_text"]
        if len(new) > self.config.max_read_bytes:
            raise ToolError(f"new_text is longer than {self.config.max_read_bytes} characters")
        target = self.jail.resolve(path, "new")
        text = self.config.open_text(target.uri) if self.config.open_text else None
        if text is None and target.exists:
            target = self.jail.require(target, "file")
            data, size = self.jail.read_head(target, self.config.max_read_bytes + 1)
            if size > self.config.max_read_bytes or is_binary(data):
                raise ToolError(f"{target.shown} is too large or binary to edit here")
            text = data.decode("utf-8", "replace")
        encoding = self.config.position_encoding
        if text is None:
            if old:
                raise ToolError(
                    f"{target.shown} does not exist; to create it pass old_text as an empty string"
                )
            return target, edits.plan_create(target.uri, new), True
        return target, edits.plan_replace(target.uri, text, old, new, target.shown, encoding), False

    def _named(self, path: object) -> str:
        """The file a path argument resolves to, as the user should see it in a question."""
        try:
            return self.jail.resolve(path, "new").shown
        except ToolError:
            return repr(path)

    def _edit_sensitivity(self, arguments: dict[str, Any]) -> str | None:
        """Why an edit of this file always needs the user's explicit yes (or None)."""
        target = self.jail.resolve(arguments["path"], "new")
        return edits.sensitive_reason(target.real.relative_to(target.root).parts)

    @tool(
        policy="ask",
        summary=lambda self, a: (
            f"propose an edit to {self._named(a.get('path'))}: "
            + one_line(str(a.get("description") or "(no description)"), DESCRIPTION_CHARS)
        ),
        precheck=lambda self, a: self._plan(a),
        sensitive=lambda self, a: self._edit_sensitivity(a),
    )
    async def propose_edit(
        self, path: str, old_text: str, new_text: str, description: str = ""
    ) -> str:
        """Propose a change to one file; the editor shows it and the user accepts or rejects it.
        old_text must be copied exactly from the file (without line numbers) and occur once.

        Args:
            path: the file to change (or create), relative to the workspace
            old_text: the exact text to replace; an empty string creates a new file
            new_text: the replacement text
            description: one line saying what the change does
        """
        assert self.config.apply_edit is not None
        target, planned, created = self._plan(
            {"path": path, "old_text": old_text, "new_text": new_text}
        )
        what = one_line(description, DESCRIPTION_CHARS) or (
            ("create " if created else "edit ") + target.shown
        )
        applied, reason = await self.config.apply_edit(f"Koma: {what}", planned.edit)
        lines = f"lines {planned.first_line}-{planned.last_line}"
        if not applied:
            raise ToolError(
                f"the edit to {target.shown} was not applied: {reason or 'the user rejected it'}"
            )
        verb = "created" if created else "changed"
        return f"The user accepted the edit: {target.shown} was {verb} ({lines})."


__all__ = ["PathRefused", "WorkspaceConfig", "WorkspaceTools"]

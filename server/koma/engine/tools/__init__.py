"""Tools for chat models: the toolkit, the robust loop, the jail and the workspace tools.

`toolkit` / `tool` / `Toolkit` turn typed Python functions into tools (`toolkit.py`);
`loop.ToolLoop` runs them inside `engine.chat.run_turn`; `workspace.WorkspaceTools` are the
editor's tools (read_file, list_files, search, run_tests, propose_edit) behind `jail.Jail` and
`policy.PolicyGate`. See docs/tools.md.
"""

from koma.engine.tools.toolkit import (
    Tool,
    ToolArgumentError,
    ToolError,
    Toolkit,
    as_toolkit,
    tool,
    toolkit,
)

__all__ = [
    "Tool",
    "ToolArgumentError",
    "ToolError",
    "Toolkit",
    "as_toolkit",
    "tool",
    "toolkit",
]

"""Fixtures of the tool tests; the helpers live in `tools_trap` (see its docstring)."""

from tools_trap import audit, trap

__all__ = ["audit", "trap"]

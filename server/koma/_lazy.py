"""Module attributes imported on first use (PEP 562): importing a package root stays cheap."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_attributes(module: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` that imports `name` from `table[name]` and keeps it."""
    namespace = sys.modules[module].__dict__

    def __getattr__(name: str) -> Any:
        source = table.get(name)
        if source is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        namespace[name] = value
        return value

    return __getattr__

"""No silent catch-all in the shipped package.

An `except Exception: pass` hides a bug and leaves no trace of why a feature quietly did
nothing. Every catch-all in `server/koma` either names the exceptions that can really happen
there, or leaves a word behind: a log line with the reason, an error result, a re-raise. This
test reads the source (no import) and fails on a handler for `Exception`, `BaseException` or
everything whose body only discards the failure — `pass`, `...`, `continue`, `break`, a
`return` of a constant or an empty container, a constant assigned to a name — and on
`contextlib.suppress(Exception)`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "server" / "koma"
BROAD = {"Exception", "BaseException"}


def _name(node: ast.expr) -> str | None:
    """`Exception` or `builtins.Exception` → "Exception"; anything else → its last name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _is_broad(kind: ast.expr | None) -> bool:
    if kind is None:  # a bare `except:`
        return True
    kinds = kind.elts if isinstance(kind, ast.Tuple) else [kind]
    return any(_name(k) in BROAD for k in kinds)


def _discards(value: ast.expr | None) -> bool:
    """A value that carries nothing about the failure: None, a constant, an empty container."""
    if value is None or isinstance(value, ast.Constant):
        return True
    if isinstance(value, ast.List | ast.Tuple | ast.Set):
        return not value.elts
    if isinstance(value, ast.Dict):
        return not value.keys
    return False


def _silent(body: list[ast.stmt]) -> bool:
    for statement in body:
        if isinstance(statement, ast.Pass | ast.Continue | ast.Break):
            continue
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            continue  # `...` or a string
        if isinstance(statement, ast.Return) and _discards(statement.value):
            continue
        if isinstance(statement, ast.Assign | ast.AnnAssign) and _discards(statement.value):
            continue
        return False
    return True


def silent_catches(source: str, filename: str = "<source>") -> list[str]:
    """`file:line` of every catch-all in `source` that swallows the failure without a word."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.ExceptHandler) and _is_broad(node.type) and _silent(node.body):
            found.append(f"{filename}:{node.lineno}")
        if isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                call = item.context_expr
                if (
                    isinstance(call, ast.Call)
                    and _name(call.func) == "suppress"
                    and any(_is_broad(arg) for arg in call.args)
                ):
                    found.append(f"{filename}:{node.lineno}")
    return found


def test_no_silent_catch_all_in_the_package() -> None:
    found = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        for hit in silent_catches(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE)))
    ]
    assert not found, (
        "a catch-all that swallows the failure without a word; name the exceptions that can "
        "happen there, or log the reason at debug (and say in a comment why it is broad): "
        + ", ".join(found)
    )


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("try:\n    f()\nexcept Exception:\n    pass\n", 3),
        ("try:\n    f()\nexcept:\n    pass\n", 3),
        ("try:\n    f()\nexcept (OSError, BaseException):\n    ...\n", 3),
        ("def g():\n    try:\n        f()\n    except Exception:\n        return None\n", 4),
        ("def g():\n    try:\n        f()\n    except Exception as exc:\n        return []\n", 4),
        ("try:\n    f()\nexcept builtins.Exception:\n    x = None\n", 3),
        ("for i in x:\n    try:\n        f()\n    except Exception:\n        continue\n", 4),
        ("with contextlib.suppress(Exception):\n    f()\n", 1),
        ("async def g():\n    async with suppress(ValueError, Exception):\n        await f()\n", 2),
    ],
)
def test_the_check_catches_a_silent_catch_all(body: str, line: int) -> None:
    assert silent_catches(body) == [f"<source>:{line}"]


@pytest.mark.parametrize(
    "body",
    [
        "try:\n    f()\nexcept OSError:\n    pass\n",
        "try:\n    f()\nexcept Exception as exc:\n    log.debug('f failed: %s', exc)\n",
        "try:\n    f()\nexcept Exception:\n    raise\n",
        "def g():\n    try:\n        f()\n    except Exception as exc:\n        return str(exc)\n",
        "with contextlib.suppress(TimeoutError):\n    f()\n",
    ],
)
def test_a_narrow_or_reported_catch_passes(body: str) -> None:
    assert silent_catches(body) == []

"""docs/architecture.md is the newcomer's map: it must name files that exist, and every module.

A move or rename that forgets the map, or a new module nobody placed on it, fails here. The
table rows ("Where things live") name files relative to their row's folder (`engine/tools/`
then `loop.py`); the prose names them from the repository root or from `server/koma`.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "server" / "koma"
TOP_FOLDERS = ("server/", "clients/", "testing/", "tests/", "benchmarks/", "scripts/", "docs/")
# A backticked file or folder name: `lsp/server.py`, `model_call.py`, `engine/completion/`.
FILE_NAME = re.compile(r"`([A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*(?:\.(?:py|ts|lua|sh)|/))`")


def _from_package_or_root(name: str) -> Path:
    return ROOT / name if name.startswith(TOP_FOLDERS) else PACKAGE / name


def _exists_under(folder: Path, name: str) -> list[Path]:
    """`folder/name`, or for a client's folder the file of that name anywhere in its sources."""
    if (folder / name).exists():
        return [folder / name]
    if not folder.is_relative_to(ROOT / "clients") or "/" in name:
        return []
    return [p for p in folder.rglob(name) if "node_modules" not in p.parts]


def _rows() -> list[tuple[list[Path], list[str]]]:
    """Each table row: the folders its first cell names, and every file name in the row."""
    rows = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        first = line.split("|")[1]
        folders = []
        for name in re.findall(r"`([^`]+)`", first):
            path = _from_package_or_root(name)
            folders.append(path if name.endswith("/") else path.parent)
        rows.append((folders, FILE_NAME.findall(line)))
    return rows


def named_files() -> tuple[set[Path], list[str]]:
    """(every file the document names, resolved; the names that resolve to nothing)."""
    found: set[Path] = set()
    missing: list[str] = []
    for folders, names in _rows():
        for name in names:
            hits = [p for folder in [PACKAGE, ROOT, *folders] for p in _exists_under(folder, name)]
            found.update(p.resolve() for p in hits)
            if not hits:
                missing.append(name)
    prose = [line for line in DOC.read_text(encoding="utf-8").splitlines() if line[:1] != "|"]
    for name in FILE_NAME.findall("\n".join(prose)):
        if "/" in name.rstrip("/") and not (
            _from_package_or_root(name).exists() or (ROOT / name).exists()
        ):
            missing.append(name)
    return found, missing


def test_every_file_the_architecture_names_exists() -> None:
    _, missing = named_files()
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"


def test_every_shipped_module_is_on_the_map() -> None:
    found, _ = named_files()
    unnamed = [
        str(p.relative_to(ROOT))
        for p in sorted(PACKAGE.rglob("*.py"))
        if p.name not in ("__init__.py", "__main__.py") and p.resolve() not in found
    ]
    assert not unnamed, f"docs/architecture.md's table does not place: {unnamed}"

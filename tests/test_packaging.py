"""What ships and what does not: Koma's wheel carries the product only.

The loopback simulator and the shared test helpers live outside `server/` (`testing/koma_sim`,
`tests/`): a user installing Koma gets neither, and the product cannot come to depend on them.
The simulator, in turn, imports nothing of Koma, so it stays written from the servers'
documented wire formats and cannot inherit the client's assumptions.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Names a test tool has in the tree; none may appear in a shipped file name.
TEST_TOOL_PARTS = ("simulator", "koma_sim", "conftest", "_support", "tests/", "testing/")


def test_the_wheel_holds_koma_and_no_simulator_or_test_helper(koma_wheel: Path) -> None:
    names = zipfile.ZipFile(koma_wheel).namelist()
    # The product is there (the check below is not passing on an empty wheel) ...
    for shipped in ("koma/__init__.py", "koma/cli.py", "koma/lsp/server.py", "koma/py.typed"):
        assert shipped in names
    # ... and only the product: one top-level package, no test tool anywhere.
    tops = {
        name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")
    }
    assert tops == {"koma"}
    assert [n for n in names if any(part in n for part in TEST_TOOL_PARTS)] == []


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
    return modules


def test_no_product_module_imports_a_test_tool() -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(
            m
            for m in imported_modules(path)
            if m.split(".")[0] in {"koma_sim", "tests", "conftest"}
        )
        for path in (REPO / "server" / "koma").rglob("*.py")
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}


def test_the_simulator_imports_nothing_of_koma() -> None:
    probe = (
        "import sys, koma_sim, koma_sim.__main__, koma_sim.env\n"
        "print(sorted(m for m in sys.modules if m == 'koma' or m.startswith('koma.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_install_sh_uses_python3_where_there_is_no_python(tmp_path: Path) -> None:
    # Debian, Ubuntu and macOS have `python3` and no `python` outside a virtual environment;
    # README's `./scripts/install.sh` must still install (here into a recording stand-in).
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "grep"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    stub = bin_dir / "python3"
    stub.write_text(f'#!{shutil.which("bash")}\necho "$*" >> {log}\n[[ "$*" != *"pip show"* ]]\n')
    stub.chmod(0o755)
    run = subprocess.run(
        [str(shutil.which("bash")), str(REPO / "scripts" / "install.sh")],
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "-m pip install -q -e .[embedded]" in log.read_text()

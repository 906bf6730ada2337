"""`koma lsp --tcp` through the real process: loopback only, the token first, never HTTP.

A web page can make the user's browser POST to a loopback port, and any local process can
connect to it. Each test starts `python -m koma lsp --tcp --port 0` and talks to it over raw
sockets the way an attacker or a real client would.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from koma.lsp.tcp import check_handshake
from koma_sim import Reply, Simulator
from koma_sim.env import isolated_env

SECONDS = 30.0
ANNOUNCE = re.compile(r"listening on (\S+):(\d+);(.*)")


@dataclass
class TcpServer:
    process: asyncio.subprocess.Process
    port: int
    announce: str
    workspace: Path

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def stderr(self) -> str:
        """Everything the server wrote on stderr after the announce line (ends the process)."""
        if self.process.returncode is None:
            self.process.terminate()
        assert self.process.stderr is not None
        rest = await asyncio.wait_for(self.process.stderr.read(), SECONDS)
        await self.process.wait()
        return rest.decode(errors="replace")


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


async def read_message(reader: asyncio.StreamReader) -> dict[str, Any]:
    length = 0
    while True:
        line = await asyncio.wait_for(reader.readline(), SECONDS)
        assert line, "the server closed the connection"
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
        elif line in (b"\r\n", b"\n"):
            break
    body = await asyncio.wait_for(reader.readexactly(length), SECONDS)
    message = json.loads(body)
    assert isinstance(message, dict)
    return message


async def response(reader: asyncio.StreamReader, request_id: int) -> dict[str, Any]:
    """The reply to `request_id`, skipping the server's notifications and requests."""
    while True:
        message = await read_message(reader)
        if message.get("id") == request_id and "method" not in message:
            return message


async def closed_without_answer(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before closing (b"" when it closed without a word)."""
    try:
        return await asyncio.wait_for(reader.read(), SECONDS)
    except ConnectionResetError:
        return b""


def initialize(workspace: Path, koma: dict[str, Any]) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "processId": None,
            "rootUri": workspace.as_uri(),
            "capabilities": {},
            "initializationOptions": {"koma": koma},
        },
    }


@pytest_asyncio.fixture
async def tcp_server(tmp_path: Path) -> AsyncIterator[Any]:
    started: list[TcpServer] = []

    async def start(env: dict[str, str] | None = None) -> TcpServer:
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        workspace = tmp_path / "workspace"
        workspace.mkdir(exist_ok=True)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "koma",
            "lsp",
            "--tcp",
            "--port",
            "0",
            env={**isolated_env(home), **(env or {})},
            cwd=workspace,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stderr is not None
        line = (await asyncio.wait_for(process.stderr.readline(), SECONDS)).decode()
        match = ANNOUNCE.search(line)
        assert match, f"no 'listening on' line: {line!r}"
        assert match.group(1) == "127.0.0.1"
        server = TcpServer(process, int(match.group(2)), match.group(3), workspace)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.returncode is None:
            server.process.kill()
            await server.process.wait()


def printed_token(server: TcpServer) -> str:
    match = re.search(r'"Koma-Token: (\S+)"', server.announce)
    assert match, f"the server did not print its token: {server.announce!r}"
    return match.group(1)


async def handshake_and_status(server: TcpServer, token: str) -> dict[str, Any]:
    """Send the token, initialize, ask koma.status, then shut the server down cleanly."""
    reader, writer = await server.connect()
    writer.write(f"Koma-Token: {token}\r\n".encode())
    writer.write(frame(initialize(server.workspace, {"provider": "ollama"})))
    result = (await response(reader, 1))["result"]
    assert "capabilities" in result
    writer.write(frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
    status_request = {"command": "koma.status", "arguments": []}
    method = "workspace/executeCommand"
    writer.write(frame({"jsonrpc": "2.0", "id": 2, "method": method, "params": status_request}))
    status = (await response(reader, 2))["result"]
    writer.write(frame({"jsonrpc": "2.0", "id": 3, "method": "shutdown"}))
    await response(reader, 3)
    writer.write(frame({"jsonrpc": "2.0", "method": "exit"}))
    assert await asyncio.wait_for(server.process.wait(), SECONDS) == 0
    writer.close()
    assert isinstance(status, dict)
    return status


async def test_three_browser_posts_run_nothing_and_the_server_stays_up(
    tcp_server: Any, sim: Simulator, tmp_path: Path
) -> None:
    server = await tcp_server()
    marker = tmp_path / "pwned"
    # What a hostile page makes the browser send: its own settings (a command that leaves a
    # marker, run_tests allowed), then a chat whose scripted model answer calls run_tests.
    sim.set_default_reply(Reply(tool_calls=[{"name": "run_tests", "arguments": {}}]))
    hostile = {
        "provider": "ollama",
        "baseUrl": sim.url,
        "model": "gpt-oss:20b",
        "tools": {
            "runTestsCommand": [sys.executable, "-c", f"open({str(marker)!r}, 'w')"],
            "policies": {"run_tests": "allow"},
        },
    }
    bodies = [
        initialize(server.workspace, hostile),
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "workspace/executeCommand",
            "params": {"command": "koma.chat", "arguments": [{"message": "run the tests"}]},
        },
    ]
    for body in bodies:
        payload = json.dumps(body).encode()
        request = (
            b"POST / HTTP/1.1\r\n"
            b"Host: 127.0.0.1:%d\r\n"
            b"Origin: https://attacker.example\r\n"
            b"Content-Type: text/plain;charset=UTF-8\r\n"
            b"Content-Length: %d\r\n\r\n" % (server.port, len(payload))
        ) + payload
        reader, writer = await server.connect()
        writer.write(request)
        assert await closed_without_answer(reader) == b""
        writer.close()

    # Still listening, and the real client (with the token) is served.
    status = await handshake_and_status(server, printed_token(server))
    assert "state" in status
    assert not marker.exists(), "a browser POST ran the test command"
    assert sim.requests == [], "a browser POST reached the model"
    log = await server.stderr()
    assert log.count("it sent an HTTP request") == 3, log


async def test_a_client_without_the_right_token_is_refused(tcp_server: Any) -> None:
    server = await tcp_server()
    token = printed_token(server)
    assert len(token) >= 32

    # An LSP client that does not know about the token: its initialize is never answered.
    reader, writer = await server.connect()
    writer.write(frame(initialize(server.workspace, {})))
    assert await closed_without_answer(reader) == b""
    writer.close()

    # A wrong token of the right shape (one character changed).
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    reader, writer = await server.connect()
    writer.write(f"Koma-Token: {wrong}\r\n".encode() + frame(initialize(server.workspace, {})))
    assert await closed_without_answer(reader) == b""
    writer.close()

    status = await handshake_and_status(server, token)
    assert "state" in status
    log = await server.stderr()
    assert "its first line is not `Koma-Token: <token>`" in log
    assert "it sent a wrong token" in log
    assert token not in log, "the log repeats the token"


async def test_the_token_can_come_from_the_environment_and_one_client_is_served(
    tcp_server: Any,
) -> None:
    token = "t0ken-from-the-launcher-0123456789"
    server = await tcp_server({"KOMA_LSP_TOKEN": token})
    assert token not in server.announce, "a token the launcher chose is not printed"
    assert "KOMA_LSP_TOKEN" in server.announce

    first_reader, first_writer = await server.connect()
    first_writer.write(f"Koma-Token: {token}\r\n".encode())
    first_writer.write(frame(initialize(server.workspace, {})))
    assert "capabilities" in (await response(first_reader, 1))["result"]

    # A second client, even with the token, does not take over the session.
    reader, writer = await server.connect()
    writer.write(f"Koma-Token: {token}\n".encode() + frame(initialize(server.workspace, {})))
    assert await closed_without_answer(reader) == b""
    writer.close()

    first_writer.write(frame({"jsonrpc": "2.0", "id": 3, "method": "shutdown"}))
    await response(first_reader, 3)
    first_writer.write(frame({"jsonrpc": "2.0", "method": "exit"}))
    assert await asyncio.wait_for(server.process.wait(), SECONDS) == 0
    assert "a client is already connected" in await server.stderr()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--host", "0.0.0.0"], {}, "not a loopback address (0.0.0.0)"),
        (["--host", "8.8.8.8"], {}, "koma lsp --tcp listens on loopback only"),
        ([], {"KOMA_LSP_TOKEN": "short"}, "KOMA_LSP_TOKEN must be at least 16"),
    ],
)
async def test_a_reachable_host_or_a_weak_token_is_refused_before_listening(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "koma",
        "lsp",
        "--tcp",
        "--port",
        "0",
        *args,
        env={**isolated_env(tmp_path), **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), SECONDS)
    assert process.returncode == 2
    text = stderr.decode()
    assert message in text
    assert "listening" not in text
    assert len(text.strip().splitlines()) == 1, text


@pytest.mark.parametrize(
    "line",
    [
        b"GET / HTTP/1.1\r\n",
        b"POST /rpc HTTP/1.1\r\n",
        b"OPTIONS * HTTP/1.1\r\n",
        b"PRI * HTTP/2.0\r\n",
        b"PROPFIND /x HTTP/1.1\r\n",
        b"Content-Length: 52\r\n",
        b"Koma-Token:secret-token-0123456789\r\n",
        b"koma-token: secret-token-0123456789\r\n",
        b"Koma-Token: secret-token-012345678\r\n",
        b"Koma-Token: " + b"x" * 600 + b"\r\n",
    ],
)
def test_only_the_exact_token_line_passes(line: bytes) -> None:
    token = b"secret-token-0123456789"
    assert check_handshake(line, token) is not None
    assert check_handshake(b"Koma-Token: " + token + b"\r\n", token) is None
    assert check_handshake(b"Koma-Token: " + token + b"\n", token) is None

"""`koma lsp --tcp` against a web page and other local processes.

A browser's `fetch("http://127.0.0.1:PORT", {method: "POST", mode: "no-cors", body})` reaches
a loopback port; three such POSTs (initialize with hostile settings, initialized, koma.chat)
must not make Koma do anything. Only a client that first sends the token is served.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sec_support import Home, build_home

TOKEN = "tok-" + "7" * 40
ANNOUNCE = re.compile(r"listening on \S+?:(\d+)")


def frame(payload: dict[str, object]) -> bytes:
    body = json.dumps(payload).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def hostile_messages(marker: Path) -> list[dict[str, object]]:
    settings = {
        "koma": {
            "tools": {
                "runTestsCommand": ["sh", "-c", f"touch {marker}"],
                "policies": {"run_tests": "allow"},
            }
        }
    }
    return [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"capabilities": {}, "rootUri": None, "initializationOptions": settings},
        },
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "workspace/executeCommand",
            "params": {"command": "koma.chat", "arguments": [{"message": "run the tests"}]},
        },
    ]


class TcpServer:
    def __init__(self, home: Home, *extra: str, token: str | None = TOKEN) -> None:
        env = home.env()
        if token is not None:
            env["KOMA_LSP_TOKEN"] = token
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "koma.lsp", "--tcp", "--port", "0", *extra],
            env=env,
            cwd=home.ws,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.port = 0
        self.announced = ""

    def wait_listening(self) -> int:
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        self.announced = line
        match = ANNOUNCE.search(line)
        assert match, f"no 'listening on' line: {line!r}"
        self.port = int(match.group(1))
        return self.port

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()


@pytest.fixture
def tcp(home: Home) -> Iterator[TcpServer]:
    server = TcpServer(home)
    server.wait_listening()
    yield server
    server.stop()


def answer_of(sock: socket.socket, seconds: float = 3.0) -> bytes:
    """Everything the server sends before it closes the connection (or the time is up)."""
    sock.settimeout(seconds)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def authenticated_initialize(server: TcpServer) -> bytes:
    sock = server.connect()
    try:
        sock.sendall(f"Koma-Token: {TOKEN}\r\n".encode())
        sock.sendall(
            frame(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {"capabilities": {}, "rootUri": None},
                }
            )
        )
        sock.settimeout(10)
        data = b""
        while b'"capabilities"' not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data
    finally:
        sock.close()


def test_tcp_browser_posts_run_nothing(tcp: TcpServer, home: Home) -> None:
    for message in hostile_messages(home.marker):
        body = json.dumps(message).encode()
        sock = tcp.connect()
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://evil.example\r\n"
            b"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: %d\r\n\r\n"
            % len(body)
            + body
        )
        assert answer_of(sock) == b""  # closed without a word
        sock.close()
    time.sleep(0.3)
    home.nothing_outside_happened()
    assert b'"capabilities"' in authenticated_initialize(tcp)  # still serves the real client


def test_tcp_raw_lsp_without_token_is_refused(tcp: TcpServer, home: Home) -> None:
    sock = tcp.connect()
    for message in hostile_messages(home.marker):
        try:
            sock.sendall(frame(message))
        except (BrokenPipeError, ConnectionResetError):
            break
    assert answer_of(sock) == b""
    sock.close()
    home.nothing_outside_happened()


def test_tcp_wrong_token_is_refused(tcp: TcpServer, home: Home) -> None:
    sock = tcp.connect()
    sock.sendall(b"Koma-Token: " + TOKEN[:-1].encode() + b"8\r\n")
    try:
        sock.sendall(frame(hostile_messages(home.marker)[0]))
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert answer_of(sock) == b""
    sock.close()


def test_tcp_websocket_upgrade_is_refused(tcp: TcpServer) -> None:
    sock = tcp.connect()
    sock.sendall(
        b"GET /lsp HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert answer_of(sock) == b""
    sock.close()


def test_tcp_silent_peer_does_not_block_the_real_client(tcp: TcpServer) -> None:
    silent = tcp.connect()  # a local process that connects and says nothing
    try:
        assert b'"capabilities"' in authenticated_initialize(tcp)
    finally:
        silent.close()


def test_tcp_second_client_with_the_token_is_refused(tcp: TcpServer) -> None:
    first = tcp.connect()
    first.sendall(f"Koma-Token: {TOKEN}\r\n".encode())
    time.sleep(0.3)
    try:
        second = tcp.connect()
        second.sendall(f"Koma-Token: {TOKEN}\r\n".encode())
        second.sendall(frame({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}))
        assert answer_of(second, 2) == b""
        second.close()
    finally:
        first.close()


def test_tcp_refuses_a_non_loopback_host(home: Home) -> None:
    server = TcpServer(home, "--host", "0.0.0.0")
    try:
        code = server.proc.wait(20)
        assert server.proc.stderr is not None
        err = server.proc.stderr.read()
    finally:
        server.stop()
    assert code != 0 and "loopback" in err, err


def test_tcp_generated_token_is_announced_and_required(home: Home) -> None:
    server = TcpServer(home, token=None)
    try:
        server.wait_listening()
        token = re.search(r"Koma-Token: (\S+?)\"", server.announced)
        assert token and len(token.group(1)) >= 16, server.announced
        sock = server.connect()
        sock.sendall(b"Koma-Token: \r\n")
        assert answer_of(sock) == b""
        sock.close()
    finally:
        server.stop()


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return build_home(tmp_path)

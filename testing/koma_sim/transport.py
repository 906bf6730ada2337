"""HTTP plumbing of the simulator: one thread per connection, streamed chunked responses, and
precise client-disconnect detection.

Benchmarks measure how fast a client's cancel reaches the server, so every pause between tokens
waits on the client socket itself: an EOF wakes the wait at once and is timestamped.
"""

from __future__ import annotations

import json
import select
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from koma_sim.script import RequestRecord

if TYPE_CHECKING:
    from koma_sim.simulator import Simulator


# Endpoints whose request body is raw bytes handed to the route as `ex.body`.
RAW_BODY_ENDPOINTS = frozenset({"blob"})


class ClientGone(Exception):
    """The client closed the connection (or the simulator is stopping) mid-response."""


class BadRequest(Exception):
    """The request body could not be read as JSON."""


class Exchange:
    """One request/response: the parsed request plus ways to answer, stream and wait."""

    def __init__(self, sim: Simulator, handler: Handler, record: RequestRecord) -> None:
        self.sim = sim
        self.handler = handler
        self.record = record
        self.body: Any = record.body
        self.headers_sent = False
        self._chunked = handler.request_version != "HTTP/1.0"

    # -- plain responses -------------------------------------------------------------------
    def send_bytes(self, status: int, data: bytes, content_type: str) -> None:
        """A complete response with Content-Length."""
        h = self.handler
        self.record.status = status
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        self.headers_sent = True
        # A sized body is complete: no chunk terminator may follow it on a kept-alive connection.
        self._chunked = False
        if self.record.method != "HEAD":
            self._write(data)

    def send_json(self, status: int, obj: Any) -> None:
        """A complete JSON response."""
        data = json.dumps(obj, separators=(",", ":")).encode()
        self.send_bytes(status, data, "application/json; charset=utf-8")

    # -- streamed responses ----------------------------------------------------------------
    def stream(self, data: bytes, content_type: str) -> None:
        """Write one piece of a streamed 200 response; headers go out with the first piece."""
        h = self.handler
        if not self.headers_sent:
            self.record.status = 200
            h.send_response(200)
            h.send_header("Content-Type", content_type)
            h.send_header("Cache-Control", "no-cache")
            if self._chunked:
                h.send_header("Transfer-Encoding", "chunked")
            else:
                h.send_header("Connection", "close")
                h.close_connection = True
            h.end_headers()
            self.headers_sent = True
        self._write(b"%x\r\n%s\r\n" % (len(data), data) if self._chunked else data)

    def end_stream(self) -> None:
        """Terminate a streamed response."""
        if self.headers_sent and self._chunked:
            self._write(b"0\r\n\r\n")

    def _write(self, data: bytes) -> None:
        if self.sim.stopping:
            raise ClientGone("simulator stopping")
        try:
            self.handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as exc:
            self.mark_disconnected()
            raise ClientGone(str(exc)) from exc
        if self.record.first_byte_at is None:
            self.record.first_byte_at = time.perf_counter()

    # -- waiting ---------------------------------------------------------------------------
    def mark_disconnected(self) -> None:
        """Record the moment the client was seen gone (only the first time counts)."""
        if not self.record.client_disconnected:
            self.record.disconnected_at = time.perf_counter()
            self.record.client_disconnected = True
            self.handler.close_connection = True
            self.sim.notify()

    def wait(self, seconds: float) -> None:
        """Pause for `seconds`, raising ClientGone the moment the client hangs up.

        Zero still polls the socket once, so a closed client is noticed between tokens even
        without delays.
        """
        sock = self.handler.connection
        deadline = time.perf_counter() + max(0.0, seconds)
        while True:
            remaining = max(0.0, deadline - time.perf_counter())
            try:
                client_ready = self._readable(sock, remaining)
            except (OSError, ValueError) as exc:
                self.mark_disconnected()
                raise ClientGone(str(exc)) from exc
            if self.sim.stopping:
                raise ClientGone("simulator stopping")
            if client_ready:
                try:
                    peeked = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                except BlockingIOError:
                    peeked = b"?"
                except OSError as exc:
                    self.mark_disconnected()
                    raise ClientGone(str(exc)) from exc
                if peeked == b"":
                    self.mark_disconnected()
                    raise ClientGone("client closed the connection")
                # The client sent more bytes (a pipelined request): the socket stays readable,
                # so sleep in short slices instead of spinning.
                time.sleep(min(remaining, 0.002))
            if deadline - time.perf_counter() <= 0:
                return

    def _readable(self, sock: socket.socket, timeout: float) -> bool:
        """Wait until the client socket is readable (data, EOF or error) or the sim stops."""
        wake = self.sim.wake_fd
        if hasattr(select, "poll"):
            poller = select.poll()
            events = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR
            poller.register(sock, events)
            poller.register(wake, select.POLLIN)
            ready = poller.poll(timeout * 1000.0)
            return any(fd == sock.fileno() for fd, _ in ready)
        readable, _, _ = select.select([sock, wake], [], [], timeout)
        return sock in readable


Route = Callable[[Exchange], None]


class Handler(BaseHTTPRequestHandler):
    """Reads a request, records it, and hands it to the flavour's route."""

    protocol_version = "HTTP/1.1"
    server: SimHTTPServer

    def setup(self) -> None:
        super().setup()
        # Token-sized writes must leave at once; Nagle would add tens of ms per token.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def handle(self) -> None:
        """Serve kept-alive requests; a client resetting an idle connection is not an error."""
        try:
            super().handle()
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def finish(self) -> None:
        self.server.track(self.connection, False)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging; tests inspect `sim.requests` instead."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        sim = self.server.sim
        started = time.perf_counter()
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        endpoint, route = sim.route(self.command, path)
        body: Any = None
        bad: str | None = None
        try:
            raw = self._read_body()
        except (ValueError, OSError) as exc:
            raw, bad = b"", f"unreadable request body: {exc}"
            self.close_connection = True
        if endpoint in RAW_BODY_ENDPOINTS:
            body = raw  # uploaded files (blobs) are bytes, not JSON
        elif raw.strip():
            try:
                body = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                bad = f"invalid JSON body: {exc}"
        model = body.get("model") if isinstance(body, dict) else None
        record = RequestRecord(
            method=self.command,
            path=path,
            endpoint=endpoint,
            body=body if bad is None else raw.decode("utf-8", "replace"),
            model=model if isinstance(model, str) else None,
            started_at=started,
            query=parts.query,
            headers={k.lower(): v for k, v in self.headers.items()},
        )
        sim.record(record)
        ex = Exchange(sim, self, record)
        sim.active(+1)
        try:
            if bad is not None and endpoint != "unknown":
                sim.send_error(ex, 400, bad)
            else:
                route(ex)
            if not ex.headers_sent:
                sim.send_error(ex, 500, "simulator produced no response")
            ex.end_stream()
            record.completed = not record.client_disconnected
        except ClientGone:
            self.close_connection = True
        except Exception as exc:  # a simulator bug must not kill the server thread
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            if not ex.headers_sent:
                try:
                    sim.send_error(ex, 500, f"simulator internal error: {exc}")
                except (ClientGone, OSError):
                    pass
        finally:
            record.ended_at = time.perf_counter()
            record.finished.set()
            sim.active(-1)


class SimHTTPServer(ThreadingHTTPServer):
    """Loopback server whose handler threads die with the process."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, port: int, sim: Simulator) -> None:
        self.sim = sim
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), Handler)

    def track(self, conn: socket.socket, add: bool) -> None:
        """Remember open client connections so stop() can close kept-alive ones."""
        with self._connections_lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def close_connections(self) -> None:
        """Shut every client connection, so no pooled connection outlives the simulator."""
        with self._connections_lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve_in_thread(server: SimHTTPServer) -> threading.Thread:
    """Run the accept loop on a daemon thread."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.name = f"koma-simulator-{server.server_address[1]}"
    thread.start()
    return thread

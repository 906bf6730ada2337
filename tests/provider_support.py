"""What the provider tests share: a canned loopback server, a closed port, stream collectors."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from koma.providers.base import WireChunk


async def collect(stream: AsyncIterator[WireChunk]) -> list[WireChunk]:
    return [chunk async for chunk in stream]


def closed_port() -> int:
    """A loopback port nobody listens on, for the "server is not running" paths."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sse(*events: dict[str, Any] | str) -> bytes:
    """Server-sent events, one `data:` line each; a string (such as `[DONE]`) is sent as is."""
    return b"".join(
        f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode() for e in events
    )


class Canned:
    """Answers every path with one fixed response, for wire shapes the simulator lacks.

    LM Studio's quirk is exactly that: unknown paths get HTTP 200 with an error body. The paths
    asked are recorded in `paths`; `url` is the server root plus `suffix` (e.g. `/v1`).
    """

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        *,
        suffix: str = "",
    ) -> None:
        answer = (status, body, content_type)
        self.paths: list[str] = []
        paths = self.paths

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                paths.append(self.path)
                status, body, content_type = answer
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{suffix}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

"""The TCP transport of `koma lsp --tcp`: loopback only, a secret token first, never HTTP.

Any local process and any web page the user visits can open a connection to a loopback port
(a browser's `fetch("http://127.0.0.1:2087", {method: "POST", mode: "no-cors", body})` is
delivered), and an LSP server obeys whoever talks to it: `initialize` with the attacker's
settings, then `koma.chat`, would run a command as the user. So the listener

- binds only to loopback addresses (a non-loopback `--host` is refused before anything listens);
- requires the first line a client sends to be `Koma-Token: <token>`, compared in constant time,
  where the token is random per run (printed on stderr for the user who started the server) or
  comes from `KOMA_LSP_TOKEN` (for a launcher that starts the server and the client together);
- closes, without answering, a connection whose first line looks like HTTP (a browser) or holds
  anything but the token, and one that sends nothing within a few seconds;
- serves one client: after that client leaves the server exits, as with stdio.

pygls' own `start_tcp` accepts whatever connects, so this module replaces it and hands the
streams of an authenticated connection to pygls' message loop.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import re
import secrets
import socket
import sys
import threading
from collections.abc import Callable, Mapping

from pygls.io_ import run_async
from pygls.server import JsonRPCServer

from koma.errors import ConfigError

logger = logging.getLogger("koma.lsp.tcp")

TOKEN_ENV = "KOMA_LSP_TOKEN"
TOKEN_PREFIX = b"Koma-Token: "
MIN_TOKEN_CHARS = 16
HANDSHAKE_SECONDS = 5.0
MAX_HANDSHAKE_BYTES = 512

# A request line of HTTP/1.x (`POST / HTTP/1.1`), the HTTP/2 preface, or a known method name:
# what a browser, curl or a proxy sends first.
_HTTP_LINE = re.compile(
    rb"^(?:(?:GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS|CONNECT|TRACE|PRI)\s|[A-Z]+ \S+ HTTP/\d)"
)


def loopback_host(host: str) -> str:
    """The host to bind, after checking that every address it names is a loopback address.

    Why: a TCP server on a reachable interface lets the whole network drive the user's editor
    and run commands as them; the token is a second line of defence, not the only one.
    """
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as err:
        raise ConfigError(
            f"--host {host!r} cannot be resolved ({err})",
            hint="use 127.0.0.1 or ::1: the TCP transport listens on loopback only",
        ) from err
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        if not ipaddress.ip_address(address).is_loopback:
            raise ConfigError(
                f"--host {host} is not a loopback address ({address}); "
                "koma lsp --tcp listens on loopback only",
                hint="use 127.0.0.1 or ::1 (an SSH tunnel reaches it from another machine)",
            )
    return host


def resolve_token(env: Mapping[str, str]) -> tuple[str, bool]:
    """The token clients must send, and whether it was generated here (so must be shown)."""
    given = env.get(TOKEN_ENV, "")
    if not given:
        return secrets.token_urlsafe(32), True
    if len(given) < MIN_TOKEN_CHARS or not given.isascii() or not given.isprintable():
        raise ConfigError(
            f"{TOKEN_ENV} must be at least {MIN_TOKEN_CHARS} printable ASCII characters",
            hint="unset it to get a random token, or use e.g. `openssl rand -hex 32`",
        )
    if any(ch.isspace() for ch in given):
        raise ConfigError(f"{TOKEN_ENV} must not contain spaces")
    return given, False


def check_handshake(line: bytes, token: bytes) -> str | None:
    """None when `line` is the token line, else why the connection is refused (for the log)."""
    if _HTTP_LINE.match(line):
        return "it sent an HTTP request (a web page or an HTTP client), not the token"
    if len(line) > MAX_HANDSHAKE_BYTES:
        return "its first line is too long to be the token line"
    text = line.rstrip(b"\r\n")
    if not text.startswith(TOKEN_PREFIX):
        return "its first line is not `Koma-Token: <token>`"
    # compare_digest takes the same time wherever the first difference is: no guessing the
    # token one character at a time from response times.
    if not hmac.compare_digest(text[len(TOKEN_PREFIX) :], token):
        return "it sent a wrong token"
    return None


class TokenGate:
    """Accepts connections, lets through the first one that sends the token, refuses the rest."""

    def __init__(self, server: JsonRPCServer, token: str) -> None:
        self.server = server
        self.token = token.encode("ascii")
        self.stop_event = threading.Event()
        self.finished = asyncio.Event()
        self.serving = False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: check its first line, then either close it or run the LSP loop."""
        peer = writer.get_extra_info("peername")
        try:
            line = await asyncio.wait_for(reader.readline(), HANDSHAKE_SECONDS)
        except TimeoutError:
            reason: str | None = f"it sent no token within {HANDSHAKE_SECONDS:g} s"
        except (ValueError, asyncio.LimitOverrunError):
            reason = "its first line is too long to be the token line"
        except (ConnectionError, asyncio.IncompleteReadError):
            reason = "it closed the connection"
        else:
            reason = check_handshake(line, self.token)
        if reason is None and self.serving:
            reason = "a client is already connected"
        if reason is not None:
            logger.warning("refused a connection from %s: %s", peer, reason)
            writer.close()
            return
        self.serving = True
        logger.info("client connected from %s", peer)
        self.server.protocol.set_writer(writer)
        try:
            await run_async(
                stop_event=self.stop_event,
                reader=reader,
                protocol=self.server.protocol,
                logger=logger,
                error_handler=self.server.report_server_error,
            )
        except (ConnectionError, asyncio.IncompleteReadError):
            logger.info("the client connection was lost")
        finally:
            self.finished.set()


async def serve(
    server: JsonRPCServer,
    host: str,
    port: int,
    token: str,
    announce: Callable[[str], None],
) -> None:
    """Listen on loopback until the authenticated client leaves (or the server is shut down)."""
    gate = TokenGate(server, token)
    try:
        listener = await asyncio.start_server(gate.handle, host, port)
    except OSError as err:
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror or err}") from err
    # As pygls' own start_tcp does: `shutdown` (and `exit`) stop this loop and the listener.
    server._stop_event = gate.stop_event
    server._server = listener
    bound = listener.sockets[0].getsockname()
    announce(f"listening on {bound[0]}:{bound[1]}")
    async with listener:
        await gate.finished.wait()
    server.shutdown()


def start_tcp(server: JsonRPCServer, host: str, port: int, env: Mapping[str, str]) -> None:
    """Run `server` over TCP behind the loopback and token checks; blocks until it ends."""
    host = loopback_host(host)
    token, generated = resolve_token(env)

    def announce(where: str) -> None:
        if generated:
            note = f'the first line a client sends must be "Koma-Token: {token}"'
        else:
            note = f"clients must first send the token from {TOKEN_ENV}"
        print(f"koma lsp: {where}; {note}", file=sys.stderr, flush=True)

    asyncio.run(serve(server, host, port, token, announce))

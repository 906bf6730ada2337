"""A loopback model server that answers with seeded mutations of valid streams.

Both wires are served from one port: Ollama's NDJSON (`/api/chat`, `/api/generate`) and the
OpenAI-compatible SSE (`/v1/chat/completions`, `/v1/completions`). Which mutation a generation
request gets is chosen by the text `fuzzcase-N` somewhere in its body (the prompt, the chat
message, the document around the cursor), so concurrent clients never mix their cases up. The
mutations are what a flaky server or proxy does: truncation, re-chunking inside UTF-8 and JSON,
dropped / duplicated / reordered records, wrong JSON types, deleted fields, 1–4 MB fields, wrong
content types, HTTP errors with JSON / HTML / empty bodies, broken chunked encoding, connection
resets, slow drips that then stall, and `{"error": …}` in the middle of a stream.

Raw sockets, not `http.server`, because half of these cannot be said in well-formed HTTP.
"""

from __future__ import annotations

import copy
import json
import random
import re
import select
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

THINKING = ["The user ", "greets; ", "answer ", "politely."]
# Multi-byte characters, so that re-chunking splits inside UTF-8 sequences.
ANSWER_PIECES = ["Héllo ", "wörld ", "✓ ", "日本語 ", "done."]
ANSWER = "".join(ANSWER_PIECES)

KINDS = (
    "valid",
    "bom",
    "rechunk",
    "truncate",
    "drop",
    "duplicate",
    "reorder",
    "wrong_type",
    "delete_field",
    "big_field",
    "content_type",
    "http_error",
    "chunked_error",
    "reset",
    "stall",
    "stall_first",
    "drip",
    "mid_error",
)
# Kinds after which a client must have the whole, exact answer.
EXACT = ("valid", "bom", "rechunk")
BAD_VALUES: tuple[Any, ...] = (True, False, 3.5, 7, [], {}, [1, "x"], {"k": 1}, "text", None)
HTML_PAGE = (
    "<html>\n<head><title>503 Service Temporarily Unavailable</title>"
    "<style>body { color: red }</style></head>\n<body>\n"
    "<center><h1>503 Service Temporarily Unavailable</h1></center>\n"
    "<hr><center>nginx/1.25.3</center>\n</body>\n</html>\n"
)
CASE_PATTERN = re.compile(rb"fuzzcase-(\d+)")


@dataclass(frozen=True)
class Case:
    """One seeded mutation; `number` is what the client writes as `fuzzcase-N`."""

    number: int
    kind: str
    seed: str

    @property
    def tag(self) -> str:
        return f"fuzzcase-{self.number}"


def make_cases(seed: int, count: int, start: int = 0) -> list[Case]:
    """`count` cases cycling through every kind, each with its own seeded parameters."""
    return [Case(n, KINDS[n % len(KINDS)], f"{seed}:{n}") for n in range(start, start + count)]


@dataclass
class Plan:
    """How one response goes on the wire."""

    status: int = 200
    content_type: str = "application/x-ndjson"
    pieces: list[bytes] = field(default_factory=list)
    delay: float = 0.0  # between pieces
    framing: str = "chunked"  # chunked | length | close
    end: str = "finish"  # finish | close | reset | stall | bad_chunk


# -- the valid streams ------------------------------------------------------------------------


def valid_records(path: str) -> list[Any]:
    """The records of a good answer on `path`; the string "[DONE]" ends an SSE stream."""
    if path.startswith("/api/"):
        chat = path == "/api/chat"
        out: list[Any] = []
        for t in THINKING:
            if chat:
                out.append(
                    {
                        "model": "m",
                        "message": {"role": "assistant", "content": "", "thinking": t},
                        "done": False,
                    }
                )
            else:
                out.append({"model": "m", "response": "", "thinking": t, "done": False})
        for c in ANSWER_PIECES:
            if chat:
                out.append(
                    {"model": "m", "message": {"role": "assistant", "content": c}, "done": False}
                )
            else:
                out.append({"model": "m", "response": c, "done": False})
        final: dict[str, Any] = {
            "model": "m",
            "done": True,
            "done_reason": "stop",
            "total_duration": 12_000_000,
            "load_duration": 1_000_000,
            "prompt_eval_count": 12,
            "prompt_eval_duration": 2_000_000,
            "eval_count": 9,
            "eval_duration": 9_000_000,
        }
        if chat:
            final["message"] = {"role": "assistant", "content": ""}
        else:
            final["response"] = ""
        out.append(final)
        return out
    chat = path.endswith("/chat/completions")
    out = []
    for t in THINKING if chat else []:
        out.append({"id": "x", "choices": [{"index": 0, "delta": {"reasoning": t}}]})
    for c in ANSWER_PIECES:
        if chat:
            out.append({"id": "x", "choices": [{"index": 0, "delta": {"content": c}}]})
        else:
            out.append({"id": "x", "choices": [{"index": 0, "text": c}]})
    finish: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
    finish.update({"delta": {}} if chat else {"text": ""})
    out.append({"id": "x", "choices": [finish]})
    out.append(
        {
            "id": "x",
            "choices": [],
            "usage": {"prompt_tokens": 12, "completion_tokens": 9},
            "timings": {"prompt_ms": 2.0, "predicted_ms": 9.0, "predicted_per_second": 1000.0},
        }
    )
    out.append("[DONE]")
    return out


def serialize(path: str, records: list[Any]) -> bytes:
    if path.startswith("/api/"):
        return b"".join((json.dumps(r, ensure_ascii=False) + "\n").encode() for r in records)
    return b"".join(
        f"data: {r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)}\n\n".encode()
        for r in records
    )


def content_type_of(path: str) -> str:
    return "application/x-ndjson" if path.startswith("/api/") else "text/event-stream"


# -- mutations --------------------------------------------------------------------------------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path inside a JSON value (objects and lists), for picking what to break."""
    out: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            out.append((*prefix, key))
            out.extend(_paths(inner, (*prefix, key)))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            out.append((*prefix, i))
            out.extend(_paths(inner, (*prefix, i)))
    return out


def _parent(record: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        record = record[key]
    return record


def _text_paths(record: Any) -> list[tuple[Any, ...]]:
    keys = ("content", "thinking", "response", "reasoning", "text")
    return [p for p in _paths(record) if p and p[-1] in keys]


def plan_for(case: Case, path: str) -> Plan:
    """The response to `path` for `case`; the same case and path always give the same plan."""
    rng = random.Random(f"{case.seed}:{path}")
    records = valid_records(path)
    plan = Plan(content_type=content_type_of(path))
    kind = case.kind
    dicts = [i for i, r in enumerate(records) if isinstance(r, dict)]
    if kind == "drop":
        del records[rng.randrange(len(records))]
    elif kind == "duplicate":
        i = rng.randrange(len(records))
        records.insert(i, copy.deepcopy(records[i]))
    elif kind == "reorder":
        i, j = rng.sample(range(len(records)), 2)
        records[i], records[j] = records[j], records[i]
    elif kind == "wrong_type":
        record = records[rng.choice(dicts)]
        target = rng.choice(_text_paths(record) or _paths(record))
        _parent(record, target)[target[-1]] = rng.choice(BAD_VALUES)
    elif kind == "delete_field":
        record = records[rng.choice(dicts)]
        target = rng.choice(_paths(record))
        parent = _parent(record, target)
        del parent[target[-1]]
    elif kind == "big_field":
        record = records[rng.choice(dicts)]
        targets = _text_paths(record) or _paths(record)
        target = rng.choice(targets)
        size = rng.randint(1, 4) * 1024 * 1024
        _parent(record, target)[target[-1]] = "é" * (size // 2)
    elif kind == "mid_error":
        at = rng.randrange(1, len(records) - 1)
        message = rng.choice(["model runner crashed", "CUDA error: out of memory\n  at layer 7"])
        shape = rng.choice(["plain", "object"])
        err: dict[str, Any] = (
            {"error": message} if shape == "plain" else {"error": {"message": message, "code": 500}}
        )
        records.insert(at, err)
    body = serialize(path, records)
    plan.pieces = [body]
    if kind == "bom":
        plan.pieces = [b"\xef\xbb\xbf" + body]
    elif kind == "rechunk":
        plan.pieces = _split(body, rng, 1, 7)
        plan.delay = 0.0005
    elif kind == "truncate":
        plan.pieces = [body[: rng.randrange(1, len(body) - 1)]]
        plan.framing = rng.choice(["close", "chunked"])
        plan.end = "close"
    elif kind == "content_type":
        plan.content_type = rng.choice(
            [
                "text/html; charset=utf-8",
                "application/json",
                "text/plain",
                "application/octet-stream",
            ]
        )
        if rng.random() < 0.5:
            plan.pieces = [HTML_PAGE.encode()]
    elif kind == "http_error":
        plan.status = rng.choice([400, 404, 429, 500, 502, 503])
        body_kind = rng.choice(["json", "json_object", "html", "empty", "text"])
        plan.framing = "length"
        if body_kind == "json":
            plan.content_type = "application/json"
            plan.pieces = [json.dumps({"error": "the server\nis unhappy  today"}).encode()]
        elif body_kind == "json_object":
            plan.content_type = "application/json"
            plan.pieces = [
                json.dumps({"error": {"message": "bad request", "type": "invalid"}}).encode()
            ]
        elif body_kind == "html":
            plan.content_type = "text/html"
            plan.pieces = [HTML_PAGE.encode()]
        elif body_kind == "text":
            plan.content_type = "text/plain"
            plan.pieces = [b"upstream connect error or disconnect/reset before headers\n\n  x"]
        else:
            plan.pieces = []
    elif kind == "chunked_error":
        cut = rng.randrange(1, len(body) - 1)
        plan.pieces = [body[:cut]]
        plan.end = "bad_chunk"
    elif kind == "reset":
        plan.pieces = [body[: rng.randrange(0, len(body) - 1)]]
        plan.end = "reset"
    elif kind == "stall":
        plan.pieces = [body[: rng.randrange(1, len(body) - 1)]]
        plan.end = "stall"
    elif kind == "stall_first":
        plan.pieces = []
        plan.end = "stall"
    elif kind == "drip":
        count = rng.randint(3, 12)
        plan.pieces = [body[i : i + 1] for i in range(count)]
        plan.delay = 0.05
        plan.end = "stall"
    return plan


def _split(body: bytes, rng: random.Random, low: int, high: int) -> list[bytes]:
    out, i = [], 0
    while i < len(body):
        step = rng.randint(low, high)
        out.append(body[i : i + step])
        i += step
    return out


# -- the server -------------------------------------------------------------------------------

MODELS = ["fuzz-oss", "fuzz-coder"]
STALL_LIMIT = 20.0  # a stalled response is given up after this long even if nobody hangs up


class FuzzServer:
    """A threaded loopback server; `url` is its root (append `/v1` for the OpenAI wire)."""

    def __init__(self, cases: list[Case]) -> None:
        self.cases = {c.number: c for c in cases}
        self.served: list[tuple[int | None, str]] = []
        # Set by unit tests: the plan for every generation request, whatever its body.
        self.plan: Callable[[str], Plan] | None = None
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer._handle(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,))
        self._thread.daemon = True
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(self, cases: list[Case]) -> None:
        self.cases.update({c.number: c for c in cases})

    # -- one connection ----------------------------------------------------------------------

    def _handle(self, conn: socket.socket) -> None:
        try:
            request = _read_request(conn)
        except (OSError, ValueError):
            return
        if request is None:
            return
        method, path, body = request
        try:
            if path.rstrip("/") in _GENERATION_PATHS:
                # The last mention: the prompt may quote other open files before the cursor's.
                found = CASE_PATTERN.findall(body)
                case = self.cases.get(int(found[-1])) if found else None
                self.served.append((case.number if case else None, path))
                if self.plan is not None:
                    plan = self.plan(path)
                elif case is None:
                    plan = Plan(content_type=content_type_of(path))
                    plan.pieces = [serialize(path, valid_records(path))]
                else:
                    plan = plan_for(case, path)
                _send(conn, plan)
            else:
                status, obj = _metadata(method, path)
                _send(
                    conn,
                    Plan(status, "application/json", [json.dumps(obj).encode()], 0.0, "length"),
                )
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass


_GENERATION_PATHS = ("/api/chat", "/api/generate", "/v1/chat/completions", "/v1/completions")


def _metadata(method: str, path: str) -> tuple[int, Any]:
    """The non-generation endpoints the providers ask before streaming (always well-formed)."""
    if path == "/api/version":
        return 200, {"version": "0.12.3"}
    if path == "/api/tags":
        return 200, {"models": [{"name": m, "model": m, "size": 1000} for m in MODELS]}
    if path == "/api/ps":
        return 200, {"models": []}
    if path == "/api/show":
        return 200, {
            "capabilities": ["completion", "insert"],
            "details": {"family": "llama", "parameter_size": "1B"},
            "model_info": {"general.architecture": "llama", "llama.context_length": 8192},
        }
    if path.startswith("/v1/models") or path.startswith("/api/v0/models"):
        return 200, {"data": [{"id": m, "object": "model"} for m in MODELS]}
    return 404, {"error": f"no route {method} {path}"}


def _read_request(conn: socket.socket) -> tuple[str, str, bytes] | None:
    conn.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return method, path.split("?")[0], body


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def _send(conn: socket.socket, plan: Plan) -> None:
    head = [
        f"HTTP/1.1 {plan.status} {_REASONS.get(plan.status, 'X')}",
        f"Content-Type: {plan.content_type}",
        "Connection: close",
    ]
    if plan.framing == "chunked":
        head.append("Transfer-Encoding: chunked")
    elif plan.framing == "length":
        head.append(f"Content-Length: {sum(len(p) for p in plan.pieces)}")
    conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    for piece in plan.pieces:
        # An empty piece sends nothing but still waits: a server that is slow to start.
        if piece and plan.framing == "chunked":
            conn.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        elif piece:
            conn.sendall(piece)
        if plan.delay:
            time.sleep(plan.delay)
    if plan.end == "finish":
        if plan.framing == "chunked":
            conn.sendall(b"0\r\n\r\n")
    elif plan.end == "bad_chunk":
        conn.sendall(b"zz-not-a-size\r\nxxxx\r\n")
    elif plan.end == "reset":
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    elif plan.end == "stall":
        # Hold the connection open, silent, until the client gives up (or the limit).
        select.select([conn], [], [], STALL_LIMIT)


# -- judging an outcome -----------------------------------------------------------------------

INTERNAL = re.compile(
    r"\b(TypeError|KeyError|AttributeError|ValueError|IndexError|ValidationError|Traceback)\b"
    r"|unexpected |\(a bug\)|chat failed"
)


def clear_error(text: str) -> str | None:
    """Why `text` is not a clear one-line error, or None when it is one."""
    if not text.strip():
        return "empty error"
    if "\n" in text or "\r" in text:
        return "more than one line"
    if len(text) > 800:
        return f"{len(text)} characters long"
    if "<" in text and re.search(r"<(html|body|head|center|h1|hr)\b", text, re.IGNORECASE):
        return "HTML tags"
    if INTERNAL.search(text):
        return "an internal exception"
    return None


def expected_error(case: Case, text: str) -> str | None:
    """Kind-specific checks of an error: which wait ran out, the status kept."""
    if case.kind in EXACT:
        return "an error where the answer was valid"
    if case.kind == "stall_first" and "firstByteTimeoutSeconds" not in text:
        return "a silent server must end in the first-byte timeout"
    if case.kind in ("stall", "drip") and "Timeout" not in text and "stall" not in text:
        return "a stalled stream must end in a timeout"
    return None

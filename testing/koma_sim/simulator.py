"""The `Simulator`: a real loopback HTTP server speaking Ollama / OpenAI-compatible wire formats
from a script, recording every request so tests can assert what a client did.
"""

from __future__ import annotations

import copy
import socket
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from koma_sim import blobs, llamacpp, lmstudio, ollama, openai
from koma_sim.script import (
    FLAVORS,
    Reply,
    RequestRecord,
    SimModel,
    default_catalog,
    default_models,
)
from koma_sim.store import ModelStore
from koma_sim.transport import Exchange, Route, SimHTTPServer, serve_in_thread

RouteTable = dict[tuple[str, str], tuple[str, Route]]
DEFAULT_REPLY_TEXT = "Hello from the simulator."


class Simulator:
    """A scripted local model server on 127.0.0.1 (see the package docstring for the API)."""

    def __init__(
        self,
        models: Iterable[SimModel] | None = None,
        *,
        ttft_ms: float = 0.0,
        token_delay_ms: float = 0.0,
        flavor: str = "ollama",
        port: int = 0,
        catalog: Iterable[SimModel] | None = None,
        replies: Iterable[Reply] = (),
        default_reply: Reply | None = None,
        version: str = "0.12.3",
    ) -> None:
        if flavor not in FLAVORS:
            raise ValueError(f"flavor must be one of {FLAVORS}, got {flavor!r}")
        self.flavor = flavor
        self.ttft_ms = float(ttft_ms)
        self.token_delay_ms = float(token_delay_ms)
        self.version = version
        self.port = port
        installed = list(models) if models is not None else default_models()
        self.store = ModelStore(installed, list(catalog) if catalog is not None else [])
        for entry in default_catalog():
            if self.store.catalog_entry(entry.name) is None:
                self.store.add_to_catalog(entry)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._replies: list[Reply] = list(replies)
        self._initial_replies = list(replies)
        self._initial_default = default_reply or Reply(content=DEFAULT_REPLY_TEXT)
        self._default = copy.deepcopy(self._initial_default)
        self._requests: list[RequestRecord] = []
        self._routes = self._build_routes()
        self._server: SimHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._active = 0
        self.stopping = False

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, port: int | None = None) -> str:
        """Bind 127.0.0.1 (port 0 = any free port), serve in a background thread, return URL."""
        if self._server is not None:
            return self.url
        if self.stopping:
            self._wake_r, self._wake_w = socket.socketpair()
            self.stopping = False
        self._server = SimHTTPServer(self.port if port is None else port, self)
        self.port = int(self._server.server_address[1])
        self._thread = serve_in_thread(self._server)
        return self.url

    def stop(self) -> None:
        """Stop accepting, wake every streaming handler so it ends, release the port."""
        if self._server is None:
            return
        self.stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None
        # Responses in flight notice `stopping` at their next wait or write; the wake socket
        # must stay open until they have.
        deadline = time.monotonic() + 5
        with self._changed:
            while self._active and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())
            if not self._active:
                self._wake_r.close()
                self._wake_w.close()

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:40123`."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        """Base URL of the OpenAI-compatible layer (`url + "/v1"`)."""
        return self.url + "/v1"

    @property
    def wake_fd(self) -> socket.socket:
        """Becomes readable when the simulator stops, ending every wait."""
        return self._wake_r

    # -- script ----------------------------------------------------------------------------
    def add_reply(self, reply: Reply) -> Reply:
        """Append a scripted reply (first match in insertion order wins)."""
        with self._lock:
            self._replies.append(reply)
        return reply

    def set_default_reply(self, reply: Reply) -> None:
        """The reply used when no scripted reply matches."""
        with self._lock:
            self._default = reply

    def add_model(self, model: SimModel) -> None:
        """Install another model."""
        self.store.install(model)

    @property
    def models(self) -> list[SimModel]:
        """Installed models."""
        return self.store.installed()

    def loaded_models(self) -> list[str]:
        """Names of models currently loaded."""
        return [entry.model.name for entry in self.store.loaded()]

    def pick_reply(self, endpoint: str, model: str | None, text: str) -> Reply:
        """First matching, unexhausted reply (counting its use), else the default."""
        with self._lock:
            for reply in self._replies:
                if reply.exhausted:
                    continue
                if reply.endpoint is not None and reply.endpoint != endpoint:
                    continue
                if reply.model is not None and reply.model != model:
                    continue
                if reply.match is not None and reply.match not in text:
                    continue
                reply.used += 1
                return reply
            return self._default

    def reset(self) -> None:
        """Forget requests and scripted replies; restore models, default reply, nothing loaded."""
        with self._lock:
            self._requests.clear()
            self._replies = list(self._initial_replies)
            for reply in self._replies:
                reply.used = 0
            self._default = copy.deepcopy(self._initial_default)
        self.store.reset()

    # -- records ---------------------------------------------------------------------------
    def record(self, record: RequestRecord) -> None:
        """Store a request as soon as it arrives (before its response)."""
        with self._changed:
            self._requests.append(record)
            self._changed.notify_all()

    def active(self, delta: int) -> None:
        """Count responses in flight (stop waits for them) and wake waiters."""
        with self._changed:
            self._active += delta
            self._changed.notify_all()

    def notify(self) -> None:
        """Wake waiters after a record changed."""
        with self._changed:
            self._changed.notify_all()

    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot of all requests so far (the records themselves keep updating)."""
        with self._lock:
            return list(self._requests)

    def wait_for_requests(
        self, n: int, timeout: float = 10.0, endpoint: str | None = None
    ) -> list[RequestRecord]:
        """Block until at least n requests (optionally of one endpoint) arrived; TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [r for r in self._requests if endpoint in (None, r.endpoint)]
                if len(found) >= n:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"saw {len(found)} of {n} requests within {timeout}s")
                self._changed.wait(remaining)

    def wait_for_disconnect(self, record: RequestRecord, timeout: float = 10.0) -> bool:
        """True once the server saw this request's client hang up; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not record.client_disconnected:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def wait_for_completion(self, record: RequestRecord, timeout: float = 10.0) -> bool:
        """True once the response to this request ended (sent fully or cut off)."""
        return record.finished.wait(timeout)

    # -- routing ---------------------------------------------------------------------------
    def _build_routes(self) -> RouteTable:
        table: RouteTable = {}
        table.update(openai.routes(self))
        if self.flavor == "ollama":
            table.update(ollama.routes(self))
        elif self.flavor == "lmstudio":
            table.update(lmstudio.routes(self))
        elif self.flavor in ("llamacpp", "vllm"):
            table.update(llamacpp.routes(self))
        return table

    def route(self, method: str, path: str) -> tuple[str, Route]:
        """The (endpoint name, handler) for a request line."""
        key = (method if method != "HEAD" else "GET", path)
        if key in self._routes:
            return self._routes[key]
        if self.flavor == "lmstudio":
            found = lmstudio.dynamic_route(self, key[0], path)
            if found is not None:
                return found
        if self.flavor == "ollama":
            found = blobs.dynamic_route(self, key[0], path)
            if found is not None:
                return found
        return "unknown", self._unknown

    def _unknown(self, ex: Exchange) -> None:
        method, path = ex.record.method, ex.record.path
        if self.flavor == "lmstudio":
            ex.send_json(200, {"error": f"Unexpected endpoint or method. ({method} {path})"})
        elif self.flavor == "ollama":
            ex.send_bytes(404, b"404 page not found", "text/plain")
        elif self.flavor == "llamacpp":
            body = {"code": 404, "message": "File Not Found", "type": "not_found_error"}
            ex.send_json(404, {"error": body})
        else:
            ex.send_json(404, {"detail": "Not Found"})

    def send_error(self, ex: Exchange, status: int, message: str, code: str | None = None) -> None:
        """An error in the wire format of the requested path (Ollama native vs OpenAI-style)."""
        path = ex.record.path
        native = self.flavor == "ollama" and not path.startswith("/v1")
        if native:
            ex.send_json(status, {"error": message})
            return
        ex.send_json(status, {"error": openai_error(self.flavor, status, message, code)})


def openai_error(flavor: str, status: int, message: str, code: str | None = None) -> dict[str, Any]:
    """The `error` object of an OpenAI-compatible server of this flavour."""
    if flavor == "ollama":
        kinds = {400: "invalid_request_error", 404: "not_found_error"}
    else:
        kinds = {
            400: "invalid_request_error",
            401: "authentication_error",
            404: "not_found_error",
            429: "rate_limit_error",
        }
    kind = kinds.get(status, "api_error" if flavor == "ollama" else "server_error")
    return {
        "message": message,
        "type": kind,
        "param": None,
        "code": status if flavor == "llamacpp" else code,
    }

"""Ollama blobs (`HEAD`/`POST /api/blobs/sha256:<hex>`) and `/api/create` from uploaded files.

A client creating a model from a local GGUF (`FROM ./model.gguf`) or with a LoRA adapter
(`ADAPTER ./adapter.gguf`) uploads each file as a blob first, then names it by digest in the
create request's `files` / `adapters`. The upload's SHA-256 must match the digest in the path
(400 otherwise, as Ollama answers); `HEAD` says whether the server already has it (200 / 404).
"""

from __future__ import annotations

import hashlib
import re
import threading
import weakref
from typing import TYPE_CHECKING, Any

from koma_sim.script import SimModel
from koma_sim.transport import Exchange, Route

if TYPE_CHECKING:
    from koma_sim.simulator import Simulator

ENDPOINT = "blob"
_DIGEST = re.compile(r"^sha256[:-]([0-9a-f]{64})$")
_STORES: weakref.WeakKeyDictionary[Any, dict[str, int]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def blobs_of(sim: Simulator) -> dict[str, int]:
    """Digest (`sha256:<hex>`) → size of every blob uploaded to this simulator."""
    with _LOCK:
        return _STORES.setdefault(sim, {})


def dynamic_route(sim: Simulator, method: str, path: str) -> tuple[str, Route] | None:
    """`/api/blobs/<digest>` for HEAD (GET is how the router sees it) and POST."""
    prefix = "/api/blobs/"
    if not path.startswith(prefix) or method not in ("GET", "POST"):
        return None
    digest = path[len(prefix) :]

    def handle(ex: Exchange) -> None:
        match = _DIGEST.match(digest)
        if match is None:
            ex.sim.send_error(ex, 400, f"invalid digest format: {digest}")
            return
        key = f"sha256:{match.group(1)}"
        store = blobs_of(ex.sim)
        if ex.record.method in ("HEAD", "GET"):
            status = 200 if key in store else 404
            ex.send_bytes(status, b"", "text/plain; charset=utf-8")
            return
        data = ex.body if isinstance(ex.body, bytes) else b""
        if hashlib.sha256(data).hexdigest() != match.group(1):
            ex.sim.send_error(ex, 400, "digest mismatch")
            return
        with _LOCK:
            store[key] = len(data)
        ex.send_bytes(201, b"", "text/plain; charset=utf-8")

    return ENDPOINT, handle


def missing(sim: Simulator, mapping: Any) -> str | None:
    """The first digest of a `files`/`adapters` mapping that was never uploaded (or bad shape)."""
    if not isinstance(mapping, dict):
        return "must map file names to digests"
    store = blobs_of(sim)
    for name, digest in mapping.items():
        if not isinstance(digest, str) or digest not in store:
            return f"{name}: no blob {digest}"
    return None


def model_from_files(sim: Simulator, name: str, files: dict[str, str]) -> SimModel:
    """A model made from uploaded weights: its size is the blobs' total, its format GGUF."""
    store = blobs_of(sim)
    size = sum(store[digest] for digest in files.values())
    first = next(iter(files.values()))
    return SimModel(name=name, size=size, digest=first.split(":", 1)[1], format="gguf")

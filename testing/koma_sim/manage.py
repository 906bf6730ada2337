"""Ollama model management: `/api/pull`, `/api/create` (structured, post-0.5.5) and `/api/delete`.

Pull and create stream NDJSON status lines paced by the token delay, so progress bars and
cancellation can be exercised; afterwards the model really is installed in the store.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from koma_sim import blobs
from koma_sim.ollama import body_dict, line
from koma_sim.playback import ms
from koma_sim.script import SimModel
from koma_sim.transport import Exchange

_FULL_PRECISION = ("F16", "F32", "BF16")


def _status(ex: Exchange, stream: bool, obj: dict[str, Any], first: bool = False) -> None:
    """Send one status line (streamed) after the pacing delay; buffered mode only waits."""
    if not first:
        ex.wait(ms(None, ex.sim.token_delay_ms))
    if stream:
        line(ex, obj)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _name_of(body: dict[str, Any]) -> str | None:
    name = body.get("model") or body.get("name")
    return name if isinstance(name, str) and name else None


def _canonical(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _named_body(ex: Exchange) -> tuple[dict[str, Any], str] | None:
    """The JSON body and the model it names; None once the error answer has been sent."""
    body = body_dict(ex)
    if body is None:
        return None
    name = _name_of(body)
    if name is None:
        ex.sim.send_error(ex, 400, "model is required")
        return None
    return body, name


def _install(ex: Exchange, stream: bool, model: SimModel) -> None:
    """Put the model in the store, then report success the way the client asked for."""
    ex.sim.store.install(model)
    if stream:
        _status(ex, stream, {"status": "success"})
    else:
        ex.send_json(200, {"status": "success"})


def _fail(ex: Exchange, stream: bool, status: int, message: str) -> None:
    """A failure after streaming may have begun: an error line, else an HTTP error."""
    if stream:
        line(ex, {"error": message})
    else:
        ex.sim.send_error(ex, status, message)


def pull(ex: Exchange) -> None:
    """POST /api/pull: manifest, per-layer progress, verify, write, success."""
    named = _named_body(ex)
    if named is None:
        return
    body, name = named
    stream = body.get("stream", True) is not False
    _status(ex, stream, {"status": "pulling manifest"}, first=True)
    entry = ex.sim.store.catalog_entry(name)
    if entry is None:
        _fail(ex, stream, 500, "pull model manifest: file does not exist")
        return
    layers = [
        (entry.digest, entry.size),
        (_digest(entry.template), len(entry.template)),
        (_digest(json.dumps(entry.parameters, sort_keys=True)), 96),
    ]
    for index, (digest, total) in enumerate(layers):
        steps = 4 if index == 0 else 1
        for step in range(1, steps + 1):
            progress = {
                "status": f"pulling {digest[:12]}",
                "digest": f"sha256:{digest}",
                "total": total,
                "completed": total * step // steps,
            }
            _status(ex, stream, progress)
    for status in ("verifying sha256 digest", "writing manifest"):
        _status(ex, stream, {"status": status})
    _install(ex, stream, entry)


def create(ex: Exchange) -> None:
    """POST /api/create with structured fields; a bare `modelfile` body is rejected (400)."""
    named = _named_body(ex)
    if named is None:
        return
    body, name = named
    base_name = body.get("from")
    files = body.get("files")
    for field in ("files", "adapters"):
        problem = blobs.missing(ex.sim, body[field]) if body.get(field) else None
        if problem:
            ex.sim.send_error(ex, 400, f"{field}: {problem}")
            return
    if (not isinstance(base_name, str) or not base_name) and files:
        ex.sim.store.install(blobs.model_from_files(ex.sim, _canonical(name), files))
        base_name = _canonical(name)
    if not isinstance(base_name, str) or not base_name:
        ex.sim.send_error(ex, 400, "neither 'from' or 'files' was specified")
        return
    params = body.get("parameters", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        ex.sim.send_error(ex, 400, "parameters must be an object")
        return
    stream = body.get("stream", True) is not False
    base = ex.sim.store.find(base_name)
    _status(ex, stream, {"status": "gathering model components"}, first=True)
    if base is None:
        _fail(ex, stream, 404, f'model "{base_name}" not found, try pulling it first')
        return
    model = copy.deepcopy(base)
    model.name = _canonical(name)
    model.parameters = {**base.parameters, **params}
    quantize = body.get("quantize")
    if isinstance(quantize, str) and quantize:
        if base.quantization.upper() not in _FULL_PRECISION:
            _fail(ex, stream, 400, "quantization is only supported for F16 and F32 models")
            return
        _status(ex, stream, {"status": f"quantizing {base.quantization} model to {quantize}"})
        model.quantization = quantize.upper()
    _status(ex, stream, {"status": f"using existing layer sha256:{base.digest}"})
    for key in ("template", "system", "license", "adapters", "messages"):
        if body.get(key):
            value = body[key]
            if key == "template" and isinstance(value, str):
                model.template = value
            if key == "system" and isinstance(value, str):
                model.system = value
            digest = _digest(json.dumps(value, sort_keys=True))
            _status(ex, stream, {"status": f"creating new layer sha256:{digest}"})
    if params:
        digest = _digest(json.dumps(params, sort_keys=True))
        _status(ex, stream, {"status": f"creating new layer sha256:{digest}"})
    model.digest = _digest(json.dumps([model.name, base.digest, model.parameters], default=str))
    _status(ex, stream, {"status": "writing manifest"})
    _install(ex, stream, model)


def delete(ex: Exchange) -> None:
    """DELETE /api/delete: 200 with an empty body, 404 when not installed."""
    named = _named_body(ex)
    if named is None:
        return
    _, name = named
    if not ex.sim.store.remove(name):
        ex.sim.send_error(ex, 404, f'model "{name}" not found')
        return
    ex.send_bytes(200, b"", "application/json; charset=utf-8")

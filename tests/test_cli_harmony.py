"""`koma chat --json` on the raw Harmony shapes that used to go wrong (issue: 3 of 14 of
llama.cpp's gpt-oss vectors), over the Ollama and the OpenAI-compatible wire."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from harmony_vectors import by_id
from koma.cli import main
from koma_sim import Reply, Simulator
from koma_sim.script import gpt_oss_20b

pytestmark = pytest.mark.usefixtures("isolated")

FAILING_SHAPES = [
    "lc-recipient-role-header",
    "lc-recipient-role-header-constrain",
    "lc-stray-commentary-before-final",
]


@pytest.fixture(scope="module", params=["ollama", "vllm"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, Simulator]]:
    """One server per wire for the whole module (not the root `sim`, which is per test): each
    vector case scripts its own reply (`times=1`)."""
    with Simulator(models=[gpt_oss_20b()], flavor=request.param) as sim:
        provider = "ollama" if request.param == "ollama" else "openai"
        url = sim.url if request.param == "ollama" else sim.openai_url
        yield provider, url, sim


@pytest.mark.parametrize("vector_id", FAILING_SHAPES)
def test_chat_json_reads_the_shapes_that_used_to_fail(
    server: tuple[str, str, Simulator], vector_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    provider, url, sim = server
    vector = by_id(vector_id)
    sim.add_reply(Reply(content=vector.text, reasoning_field="none", times=1))
    argv = ["chat", "--provider", provider, "--base-url", url, "--model", "gpt-oss:20b"]
    code = main([*argv, "--json", "hi"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["text"] == vector.final
    assert {k: v for k, v in result["channels"].items() if v} == vector.channels()
    assert [(c["name"], c["arguments"]) for c in result["tool_calls"]] == list(vector.tool_calls)
    assert " to=" not in result["text"] and "<|" not in result["text"]
    if vector.tool_calls:
        assert result["text"] == ""  # the call is a call, not an answer
    else:
        assert result["text"] == "Hello, world!\nWhat's up?"  # the final is no longer lost

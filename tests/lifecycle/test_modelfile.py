"""Modelfiles parse and write back unchanged, and become `/api/create` structured fields."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from koma.engine.lifecycle.modelfile import (
    Modelfile,
    ModelfileError,
    parse_modelfile,
    to_create_request,
    variant_modelfile,
    write_modelfile,
)
from koma.engine.lifecycle.variants import create_variant, harmony_warnings
from koma.errors import CapabilityMissing, ConfigError, StreamError
from koma.providers.lmstudio import LMStudioProvider
from koma.providers.ollama import OllamaProvider
from koma_sim import SimModel, Simulator

# The Modelfile of the GPT-OSS guide, verbatim (docs/local-models.md, "Custom variants", says
# what Koma warns about in it).
GUIDE_MODELFILE = Path(__file__).parent / "data" / "guide.Modelfile"

# The GPT-OSS guide's "high-creativity variant", verbatim (docs/local-models.md shows it).
CREATIVE = """FROM gpt-oss-120b:q4_k_m
PARAMETER temperature 1.2
PARAMETER top_p 0.98
PARAMETER repeat_penalty 0.9
"""

EVERYTHING = '''# every instruction, in mixed case
from gpt-oss:20b
ADAPTER ./lora/medical.gguf
PARAMETER temperature 0.7
parameter stop "<|return|>"
PARAMETER stop "<|call|>"
PARAMETER num_ctx 16384
SYSTEM """You are terse.
Answer in one line."""
TEMPLATE """{{ .System }}
{{ .Prompt }}"""
MESSAGE user Is water wet?
MESSAGE assistant """Yes.
"""
LICENSE """Apache License
Version 2.0"""
RENDERER harmony
PARSER harmony
'''


def guide_modelfile() -> str:
    return GUIDE_MODELFILE.read_text(encoding="utf-8")


def test_every_instruction_parses() -> None:
    model = parse_modelfile(EVERYTHING)
    assert model.from_ == "gpt-oss:20b"
    assert model.adapters == ["./lora/medical.gguf"]
    assert model.parameters == [
        ("temperature", "0.7"),
        ("stop", "<|return|>"),
        ("stop", "<|call|>"),
        ("num_ctx", "16384"),
    ]
    assert model.system == "You are terse.\nAnswer in one line."
    assert model.template == "{{ .System }}\n{{ .Prompt }}"
    assert model.messages == [("user", "Is water wet?"), ("assistant", "Yes.\n")]
    assert model.license == ["Apache License\nVersion 2.0"]
    assert model.extras == {"renderer": "harmony", "parser": "harmony"}


@pytest.mark.parametrize("text", [EVERYTHING, CREATIVE], ids=["everything", "creative"])
def test_round_trip(text: str) -> None:
    model = parse_modelfile(text)
    written = write_modelfile(model)
    assert parse_modelfile(written) == model
    assert write_modelfile(parse_modelfile(written)) == written


def test_the_guides_modelfile_round_trips_and_its_comments_are_reported() -> None:
    model = parse_modelfile(guide_modelfile())
    assert model.parameter("num_ctx") == "32768"  # "32768      # Start with 32K context"
    assert model.parameter("num_gpu") == "999"
    assert [k for k, _ in model.parameters].count("stop") == 2
    assert model.system is not None and model.system.startswith("\nYou are GPT-OSS-120B")
    assert len(model.warnings) == 2 and "trailing comment" in model.warnings[0]
    assert parse_modelfile(write_modelfile(model)) == model


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("PARAMETER temperature 0.7\n", "no FROM"),
        ("FROM x\nFROB y\n", "line 2: unknown instruction"),
        ('FROM x\nSYSTEM """never closed\n', 'line 2: the """ string is never closed'),
        ("FROM x\nMESSAGE robot hi\n", "line 2: MESSAGE role"),
        ("FROM x\nPARAMETER temperature\n", "line 2: PARAMETER needs"),
    ],
)
def test_bad_modelfiles_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ModelfileError, match=message):
        parse_modelfile(text)


def test_structured_fields_for_api_create() -> None:
    request = to_create_request(parse_modelfile(EVERYTHING), "terse", Path("/models"))
    body = request.body
    assert "modelfile" not in body
    assert body["from"] == "gpt-oss:20b"
    assert body["parameters"] == {
        "temperature": 0.7,
        "stop": ["<|return|>", "<|call|>"],
        "num_ctx": 16384,
    }
    assert body["system"] == "You are terse.\nAnswer in one line."
    assert body["messages"] == [
        {"role": "user", "content": "Is water wet?"},
        {"role": "assistant", "content": "Yes.\n"},
    ]
    assert body["license"] == "Apache License\nVersion 2.0"
    assert (body["renderer"], body["parser"]) == ("harmony", "harmony")
    assert request.adapters == {"medical.gguf": Path("/models/lora/medical.gguf")}


def test_removed_options_are_reported_not_sent_and_bad_values_fail() -> None:
    model = parse_modelfile(
        "FROM gpt-oss:20b\nPARAMETER use_mlock true\nPARAMETER mirostat 2\n"
        "PARAMETER temperature 1\nPARAMETER temperature 0.5\n"
    )
    request = to_create_request(model, "v")
    assert request.body["parameters"] == {"temperature": 0.5}
    text = "\n".join(request.warnings)
    assert "use_mlock" in text and "removed in 0.7" in text
    assert "mirostat" in text
    assert "more than once" in text
    with pytest.raises(ModelfileError, match="num_ctx must be an integer"):
        to_create_request(parse_modelfile("FROM x\nPARAMETER num_ctx lots\n"), "v")


def test_a_chatml_template_on_gpt_oss_is_reported() -> None:
    request = to_create_request(parse_modelfile(guide_modelfile()), "gpt-oss-120b")
    request.body["from"] = "gpt-oss:120b"
    found = harmony_warnings(request, "gptoss")
    assert any("Harmony" in w for w in found)
    assert any("<|im_end|>" in w for w in found)
    assert harmony_warnings(to_create_request(parse_modelfile(CREATIVE), "c"), "gptoss") == []
    other = to_create_request(parse_modelfile(guide_modelfile()), "llama")
    other.body["from"] = "llama3.2"
    assert harmony_warnings(other, "llama") == []


def test_variant_flags_make_the_same_modelfile_as_the_guide() -> None:
    flags = variant_modelfile(
        "gpt-oss-120b:q4_k_m", temperature=1.2, top_p=0.98, repeat_penalty=0.9
    )
    assert flags == parse_modelfile(CREATIVE)
    with_all = variant_modelfile(
        "gpt-oss:20b", top_k=40, num_ctx=8192, system="Be brief.", adapter="./a.gguf"
    )
    assert with_all.parameters == [("top_k", "40"), ("num_ctx", "8192")]
    assert (with_all.system, with_all.adapters) == ("Be brief.", ["./a.gguf"])


def test_values_that_cannot_be_written_are_refused() -> None:
    with pytest.raises(ModelfileError):
        write_modelfile(Modelfile(from_="x", system='has """ inside'))


# -- creating through the simulated Ollama -------------------------------------------------------


async def test_the_creative_variant_is_created_with_structured_fields(
    sim: Simulator, provider: OllamaProvider
) -> None:
    base = SimModel(name="gpt-oss-120b:q4_k_m", family="gptoss", capabilities=["completion"])
    sim.add_model(base)
    statuses: list[str] = []
    request = to_create_request(parse_modelfile(CREATIVE), "gpt-oss-creative")
    assert await create_variant(provider, request, statuses.append) == "success"
    (create,) = [r for r in sim.requests if r.endpoint == "create"]
    assert create.body["from"] == "gpt-oss-120b:q4_k_m"
    assert create.body["parameters"] == {"temperature": 1.2, "top_p": 0.98, "repeat_penalty": 0.9}
    assert "modelfile" not in create.body
    assert statuses[-1] == "success"
    created = await provider.show("gpt-oss-creative")
    assert created.name == "gpt-oss-creative"
    assert "gpt-oss-creative:latest" in [m.name for m in await provider.list_models()]


async def test_the_removed_modelfile_field_is_rejected_by_the_server(sim: Simulator) -> None:
    async with httpx.AsyncClient(base_url=sim.url, trust_env=False) as client:
        answer = await client.post(
            "/api/create", json={"model": "x", "modelfile": CREATIVE, "stream": False}
        )
    assert answer.status_code == 400
    assert "from" in answer.json()["error"]


async def test_an_adapter_is_uploaded_once_and_named_by_digest(
    sim: Simulator, provider: OllamaProvider, tmp_path: Path
) -> None:
    adapter = tmp_path / "medical-adapter.gguf"
    adapter.write_bytes(b"GGUF\x00\x01lora-weights" * 100)
    digest = "sha256:" + hashlib.sha256(adapter.read_bytes()).hexdigest()
    model = variant_modelfile("gpt-oss:20b", temperature=0.3, adapter=str(adapter))
    for name in ("gpt-oss-20b-medical", "gpt-oss-20b-medical-2"):
        await create_variant(provider, to_create_request(model, name))
    uploads = [r for r in sim.requests if r.endpoint == "blob" and r.method == "POST"]
    assert len(uploads) == 1  # the second create found the blob already there (HEAD 200)
    creates = [r for r in sim.requests if r.endpoint == "create"]
    assert [c.body["adapters"] for c in creates] == [{"medical-adapter.gguf": digest}] * 2


async def test_a_local_gguf_becomes_a_model(
    sim: Simulator, provider: OllamaProvider, tmp_path: Path
) -> None:
    weights = tmp_path / "gpt-oss-120b-q4_k_m.gguf"
    weights.write_bytes(b"GGUF" + bytes(range(256)) * 40)
    (tmp_path / "Modelfile").write_text("FROM ./gpt-oss-120b-q4_k_m.gguf\nPARAMETER top_k 40\n")
    model = parse_modelfile((tmp_path / "Modelfile").read_text())
    request = to_create_request(model, "gpt-oss-120b", tmp_path)
    await create_variant(provider, request)
    (create,) = [r for r in sim.requests if r.endpoint == "create"]
    assert list(create.body["files"]) == ["gpt-oss-120b-q4_k_m.gguf"]
    installed = {m.name: m for m in await provider.list_models()}
    assert installed["gpt-oss-120b:latest"].size_bytes == weights.stat().st_size


async def test_create_failures_are_clear(
    sim: Simulator, provider: OllamaProvider, tmp_path: Path
) -> None:
    missing_base = to_create_request(variant_modelfile("nope:1b", temperature=1.0), "v")
    with pytest.raises(StreamError, match="not found"):
        await create_variant(provider, missing_base)
    missing_file = to_create_request(variant_modelfile("x", adapter=str(tmp_path / "no.gguf")), "v")
    with pytest.raises(ConfigError, match="does not exist"):
        await create_variant(provider, missing_file)
    with Simulator(flavor="lmstudio") as studio:
        lms = LMStudioProvider(studio.openai_url)
        try:
            with pytest.raises(CapabilityMissing, match="cannot create"):
                await create_variant(lms, missing_base)
        finally:
            await lms.aclose()

"""The quantization table (docs/local-models.md), recommendations per machine, GPU/CPU options."""

from __future__ import annotations

import pytest
from lc_support import GB, machine

from koma.engine.lifecycle.hardware import GpuMemory, MemorySnapshot
from koma.engine.lifecycle.options import (
    OptionValueError,
    coerce_option,
    placement_problems,
    placement_summary,
    validate_ollama_options,
)
from koma.engine.lifecycle.quantization import (
    GPT_OSS_120B_TABLE,
    best_table_row,
    fit,
    recommend,
    table_row,
)
from koma.settings import GpuSettings, KomaSettings


def test_the_guides_table() -> None:
    rows = {r.name: (r.size_gb, r.ram_gb, r.quality) for r in GPT_OSS_120B_TABLE}
    assert rows == {
        "Q4_0": (65, 32, "Good"),
        "Q4_K_M": (67, 32, "Better"),
        "Q5_K_M": (82, 48, "Very Good"),
        "Q6_K": (98, 64, "Excellent"),
        "Q8_0": (127, 96, "Near Perfect"),
        "FP16": (240, 128, "Perfect"),
    }
    fp16 = table_row("f16")
    assert fp16 is not None and fp16.ram_or_more  # "128GB+"
    assert table_row("q4_k_m") == GPT_OSS_120B_TABLE[1]
    assert table_row("MXFP4") is None and table_row(None) is None


@pytest.mark.parametrize(
    ("snapshot", "model", "how"),
    [
        # 192 GB: 80 % = 153.6 GB ≥ 65.4 + 1.5 → the 120b runs fully.
        (machine(192, 180), "gpt-oss:120b", "fully"),
        # 64 GB: 51.2 GB usable < 66.9 needed → not the 120b; 20b (13.8 + 1.5) fits.
        (machine(64, 50), "gpt-oss:20b", "fully"),
        # 16 GB: 12.8 GB usable < 15.3 → 20b only partially (16 GB RAM ≥ 13.8 GB weights).
        (machine(16, 12), "gpt-oss:20b", "partially"),
        # 8 GB: nothing of gpt-oss; a small coding model.
        (machine(8, 6), "qwen2.5-coder:1.5b", "fully"),
    ],
)
def test_recommendation_per_machine(snapshot: MemorySnapshot, model: str, how: str) -> None:
    advice = recommend(snapshot)
    assert (advice.model, advice.fit) == (model, how)
    assert advice.command == f"ollama pull {model}"
    assert advice.to_dict()["model"] == model


def test_gpu_memory_counts_and_the_best_gguf_row() -> None:
    # 64 GB RAM + 2 × 48 GB VRAM = 160 GB; 80 % = 128 GB: Q8_0 (127 + 1.5 = 128.5) just misses,
    # Q6_K (98 GB) fits fully.
    workstation = MemorySnapshot(
        64 * GB,
        60 * GB,
        (GpuMemory("A6000", 48 * GB, 47 * GB), GpuMemory("A6000", 48 * GB, 47 * GB)),
    )
    row, how = best_table_row(workstation)
    assert row is not None and (row.name, how) == ("Q6_K", "fully")
    assert recommend(workstation).model == "gpt-oss:120b"
    # 48 GB RAM alone: nothing of the table fits fully; Q5_K_M needs 48 GB RAM → partial.
    row, how = best_table_row(machine(48, 40))
    assert row is not None and (row.name, how) == ("Q5_K_M", "partially")
    assert fit(240 * GB, machine(64, 60), 128 * GB) == "no"


def test_ollama_options_removed_unknown_and_typed() -> None:
    accepted, problems = validate_ollama_options(
        {"num_gpu": "999", "use_mmap": "false", "stop": "<|return|>", "use_mlock": True, "foo": 1}
    )
    assert accepted == {"num_gpu": 999, "use_mmap": False, "stop": ["<|return|>"]}
    reasons = {p.key: p.message for p in problems}
    assert "removed in 0.7" in reasons["use_mlock"]
    assert "not an Ollama option" in reasons["foo"]
    assert coerce_option("temperature", "0.7") == 0.7
    for key, value in (("num_ctx", "1.5"), ("use_mmap", "maybe"), ("top_p", "high")):
        with pytest.raises(OptionValueError, match=key):
            coerce_option(key, value)


def test_placement_settings_other_servers_cannot_apply_are_reported() -> None:
    settings = KomaSettings(gpu=GpuSettings(num_gpu=40, num_thread=8))
    assert placement_problems(settings, "ollama") == []
    problems = placement_problems(settings, "lmstudio")
    assert [p.key for p in problems] == ["gpu.numGpu", "gpu.numThread"]
    assert "lms load" in problems[0].message
    assert "llama-server -ngl" in placement_problems(settings, "llamacpp")[0].message
    assert placement_summary(settings) == "num_gpu 40, num_thread 8, main_gpu auto, use_mmap auto"
    assert placement_problems(KomaSettings(), "vllm") == []

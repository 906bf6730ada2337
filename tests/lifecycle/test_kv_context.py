"""KV-cache arithmetic and the largest safe context, checked against numbers worked out by hand.

gpt-oss shapes, from the public configs (openai/gpt-oss-120b and -20b `config.json`):
num_hidden_layers 36 (120b) / 24 (20b), num_key_value_heads 8, head_dim 64,
sliding_window 128, layer_types alternating sliding_attention / full_attention (even layers
slide). Ollama's `/api/show` model_info carries the same as `gptoss.block_count`,
`gptoss.attention.head_count_kv`, `gptoss.attention.key_length` / `value_length`,
`gptoss.attention.sliding_window`.
"""

from __future__ import annotations

from typing import Any

import pytest
from lc_support import GB, machine

from koma.engine.lifecycle.context import (
    SafeContextPolicy,
    kv_cache_shape,
    largest_safe_context,
    plan_context,
)
from koma.engine.lifecycle.hardware import GpuMemory, MemorySnapshot, parse_nvidia_csv, probe_memory
from koma.providers.base import ChatRequest
from koma.providers.ollama import OllamaProvider
from koma.types import GenerationSettings, Message
from koma_sim import SimModel, Simulator

WEIGHTS_120B = 65_369_818_941  # Ollama's /api/tags size of gpt-oss:120b
WEIGHTS_20B = 13_780_173_734


def gpt_oss_info(blocks: int, **extra: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "general.architecture": "gptoss",
        "gptoss.block_count": blocks,
        "gptoss.attention.head_count": 64,
        "gptoss.attention.head_count_kv": 8,
        "gptoss.attention.key_length": 64,
        "gptoss.attention.value_length": 64,
        "gptoss.embedding_length": 2880,
        "gptoss.context_length": 131_072,
        "gptoss.attention.sliding_window": 128,
    }
    info.update(extra)
    return info


def test_gpt_oss_120b_kv_cache_by_hand() -> None:
    shape = kv_cache_shape(gpt_oss_info(36))
    assert shape is not None
    # One layer, one token: K and V, 8 KV heads × 64 dims each, 2 bytes (f16):
    #   8 × (64 + 64) × 2 = 2,048 bytes.
    # 36 layers alternate sliding (0, 2, …, 34) and full (1, 3, …, 35): 18 of each.
    assert (shape.full_layers, shape.sliding_layers, shape.sliding_window) == (18, 18, 128)
    # Full layers grow with every token: 18 × 2,048 = 36,864 bytes per token.
    assert shape.bytes_per_token == 36_864
    # Sliding layers hold at most 128 tokens: 18 × 2,048 × 128 = 4,718,592 bytes.
    # At the full 131,072 tokens: 36,864 × 131,072 = 4,831,838,208, plus 4,718,592
    #   = 4,836,556,800 bytes (≈ 4.8 GB).
    assert shape.bytes_for(131_072) == 4_836_556_800
    # At 8,192 tokens: 36,864 × 8,192 = 301,989,888 + 4,718,592 = 306,708,480.
    assert shape.bytes_for(8_192) == 306_708_480
    # Below the window every layer holds every token: 36 × 2,048 × 100 = 7,372,800.
    assert shape.bytes_for(100) == 7_372_800


def test_gpt_oss_20b_kv_cache_by_hand() -> None:
    shape = kv_cache_shape(gpt_oss_info(24))
    assert shape is not None
    # 24 layers: 12 sliding, 12 full; 12 × 2,048 = 24,576 bytes per token in full layers.
    assert (shape.full_layers, shape.sliding_layers) == (12, 12)
    assert shape.bytes_per_token == 24_576
    # 24,576 × 131,072 = 3,221,225,472 plus the window 12 × 2,048 × 128 = 3,145,728
    #   = 3,224,371,200 bytes.
    assert shape.bytes_for(131_072) == 3_224_371_200
    # 24,576 × 32,768 = 805,306,368 + 3,145,728 = 808,452,096.
    assert shape.bytes_for(32_768) == 808_452_096


def test_no_sliding_window_metadata_counts_every_layer_in_full() -> None:
    info = gpt_oss_info(24)
    del info["gptoss.attention.sliding_window"]
    shape = kv_cache_shape(info)
    assert shape is not None
    # Without the window, all 24 layers grow: 24 × 2,048 = 49,152 bytes per token.
    assert shape.bytes_per_token == 49_152
    assert shape.sliding_layers == 0


def test_head_dim_from_embedding_length_and_quantized_cache() -> None:
    # llama3.2:1b: 16 layers, 32 query heads, 8 KV heads, embedding 2,048, no key_length:
    # head dim = 2,048 / 32 = 64, per layer 8 × 128 × 2 = 2,048; 16 layers → 32,768 per token.
    info = {
        "general.architecture": "llama",
        "llama.block_count": 16,
        "llama.attention.head_count": 32,
        "llama.attention.head_count_kv": 8,
        "llama.embedding_length": 2048,
    }
    f16 = kv_cache_shape(info)
    assert f16 is not None and f16.bytes_per_token == 32_768
    # q8_0 stores 32 values in 34 bytes: 16 × 8 × 128 × 34/32 = 17,408 bytes per token.
    q8 = kv_cache_shape(info, "q8_0")
    assert q8 is not None and q8.bytes_per_token == 17_408


def test_per_layer_kv_heads_and_incomplete_metadata() -> None:
    info = {
        "general.architecture": "mix",
        "mix.block_count": 4,
        "mix.attention.head_count": 8,
        "mix.attention.head_count_kv": [2, 0, 2, 0],  # two layers without attention
        "mix.attention.key_length": 16,
        "mix.attention.value_length": 16,
    }
    shape = kv_cache_shape(info)
    # Two layers × 2 heads × 32 dims × 2 bytes = 256 bytes per token.
    assert shape is not None and shape.bytes_per_token == 256
    assert kv_cache_shape({"general.architecture": "mix", "mix.block_count": 4}) is None
    assert kv_cache_shape({}) is None


def test_120b_on_a_128_gb_machine_gets_its_full_context() -> None:
    shape = kv_cache_shape(gpt_oss_info(36))
    assert shape is not None
    # Budget: 120 GB free − 65,369,818,941 weights − 20 % of 128 GB (25.6 GB)
    #   = 29,030,181,059 bytes; minus the window's 4,718,592 = 29,025,462,467;
    #   ÷ 36,864 per token = 787,366 tokens ≥ 131,072 → the model's own limit.
    plan = largest_safe_context(shape, 131_072, machine(128, 120), weights_bytes=WEIGHTS_120B)
    assert plan.budget_bytes == 29_030_181_059
    assert (plan.num_ctx, plan.limited_by, plan.fits) == (131_072, "model", True)
    assert plan.kv_bytes == 4_836_556_800


def test_120b_on_a_96_gb_machine_is_limited_by_memory() -> None:
    shape = kv_cache_shape(gpt_oss_info(36))
    assert shape is not None
    # Budget: 85 GB − 65,369,818,941 − 19.2 GB = 430,181,059; − 4,718,592 = 425,462,467;
    #   ÷ 36,864 = 11,541 tokens (36,864 × 11,541 = 425,447,424) → power of two: 8,192.
    plan = largest_safe_context(shape, 131_072, machine(96, 85), weights_bytes=WEIGHTS_120B)
    assert plan.budget_bytes == 430_181_059
    assert (plan.num_ctx, plan.limited_by, plan.fits) == (8_192, "memory", True)
    assert plan.kv_bytes == 306_708_480


def test_120b_on_a_64_gb_machine_gets_the_minimum_and_does_not_fit() -> None:
    shape = kv_cache_shape(gpt_oss_info(36))
    assert shape is not None
    # 60 GB free − 65.4 GB weights − 12.8 GB reserve < 0: nothing is left for the cache.
    plan = largest_safe_context(shape, 131_072, machine(64, 60), weights_bytes=WEIGHTS_120B)
    assert (plan.num_ctx, plan.limited_by, plan.fits) == (4_096, "minimum", False)


def test_a_loaded_model_counts_its_own_memory_as_available() -> None:
    shape = kv_cache_shape(gpt_oss_info(36))
    assert shape is not None
    # Loaded (ps size 66 GB incl. its cache), 20 GB free of 96: 20 + 66 − 65.37 − 19.2
    #   = 1,430,181,059; − 4,718,592 = 1,425,462,467; ÷ 36,864 = 38,668 → 32,768.
    plan = largest_safe_context(
        shape, 131_072, machine(96, 20), weights_bytes=WEIGHTS_120B, resident_bytes=66 * GB
    )
    assert plan.budget_bytes == 1_430_181_059
    assert plan.num_ctx == 32_768


def test_vram_counts_towards_the_budget() -> None:
    shape = kv_cache_shape(gpt_oss_info(24))
    assert shape is not None
    ram_only = machine(16, 12)
    with_gpu = MemorySnapshot(16 * GB, 12 * GB, (GpuMemory("RTX 4090", 24 * GB, 23 * GB),))
    assert largest_safe_context(shape, 131_072, ram_only, weights_bytes=WEIGHTS_20B).fits is False
    # 12 + 23 GB free − 13.78 GB − 20 % of 40 GB = 13.2 GB: the full context fits.
    plan = largest_safe_context(shape, 131_072, with_gpu, weights_bytes=WEIGHTS_20B)
    assert (plan.num_ctx, plan.fits) == (131_072, True)


def test_nvidia_smi_output_and_a_machine_without_it() -> None:
    gpus = parse_nvidia_csv(
        "NVIDIA GeForce RTX 4090, 24564, 23012\nNVIDIA RTX A6000, 49140, 100\nbroken line\n"
    )
    assert [g.name for g in gpus] == ["NVIDIA GeForce RTX 4090", "NVIDIA RTX A6000"]
    assert gpus[0].total_bytes == 24564 * 1024 * 1024
    assert gpus[1].free_bytes == 100 * 1024 * 1024

    def absent(name: str) -> str | None:
        return None

    snapshot = probe_memory(which=absent)
    assert snapshot.gpus == ()
    assert 0 < snapshot.available_ram <= snapshot.total_ram


# -- against the simulated Ollama ----------------------------------------------------------------


async def test_plan_reads_metadata_and_sizes_from_the_server(
    sim: Simulator, provider: OllamaProvider
) -> None:
    # gpt-oss:20b on 32 GB with 21.5 GB free: 21.5 − 13,780,173,734 − 6.4 = 1,319,826,266;
    #   − 3,145,728 = 1,316,680,538; ÷ 24,576 = 53,575 tokens → 32,768.
    plan = await plan_context(provider, "gpt-oss:20b", memory=machine(32, 21.5))
    assert plan is not None
    assert plan.weights_bytes == WEIGHTS_20B
    assert (plan.num_ctx, plan.limited_by) == (32_768, "memory")


async def test_policy_sets_num_ctx_for_chat_and_preload_alike(sim: Simulator) -> None:
    policy = SafeContextPolicy(lambda: machine(32, 21.5))
    provider = OllamaProvider(sim.url, context_policy=policy, backoff=0.01)
    try:
        await provider.load("gpt-oss:20b", keep_alive="5m")
        request = ChatRequest("gpt-oss:20b", [Message.user("hi")])
        [chunk async for chunk in provider.chat(request)]
        # An explicit num_ctx still wins over the policy.
        fixed = ChatRequest("gpt-oss:20b", [Message.user("hi")], GenerationSettings(num_ctx=2048))
        [chunk async for chunk in provider.chat(fixed)]
        # A model whose layers the server does not describe keeps the old fallback.
        sim.add_model(SimModel(name="plain:1b", context_length=4096))
        [c async for c in provider.chat(ChatRequest("plain:1b", [Message.user("hi")]))]
    finally:
        await provider.aclose()
    load, chat, explicit, plain = [
        r.body["options"]["num_ctx"] for r in sim.requests if r.endpoint in ("generate", "chat")
    ]
    assert (load, chat, explicit, plain) == (32_768, 32_768, 2_048, 4_096)
    assert policy.plans["gpt-oss:20b"] is not None


async def test_policy_is_computed_once_so_num_ctx_never_flaps(sim: Simulator) -> None:
    snapshots = iter([machine(32, 21.5), machine(32, 31)])
    policy = SafeContextPolicy(lambda: next(snapshots))
    provider = OllamaProvider(sim.url, context_policy=policy, backoff=0.01)
    try:
        for _ in range(2):
            request = ChatRequest("gpt-oss:20b", [Message.user("hi")])
            [chunk async for chunk in provider.chat(request)]
    finally:
        await provider.aclose()
    sent = {r.body["options"]["num_ctx"] for r in sim.requests if r.endpoint == "chat"}
    assert sent == {32_768}  # more free memory later does not reload the model


@pytest.mark.parametrize("free_gb", [21.5, 200])
async def test_plan_describes_itself(provider: OllamaProvider, free_gb: float) -> None:
    plan = await plan_context(provider, "gpt-oss:20b", memory=machine(256, free_gb))
    assert plan is not None
    text = plan.describe()
    assert f"{plan.num_ctx:,} tokens" in text
    assert plan.to_dict()["kv_cache"]["bytes_per_token"] == 24_576

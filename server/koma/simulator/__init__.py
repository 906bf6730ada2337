"""Loopback simulator of the Ollama and OpenAI-compatible (LM Studio, llama.cpp, vLLM) wire
formats, written from the servers' documented formats so tests and benchmarks run without a GPU.

    from koma.simulator import Simulator, Reply, SimModel

    with Simulator(flavor="ollama", token_delay_ms=5) as sim:
        sim.add_reply(Reply(thinking="Let me see.", content="Hi!", match="hello"))
        ...  # talk HTTP to sim.url (native) or sim.openai_url (/v1)
        record = sim.wait_for_requests(1)[0]

Replies are matched in insertion order against the last user message (or prompt); thinking is
streamed before content, token by token, and the server notices a client hang-up between tokens
at once (`RequestRecord.disconnected_at`, perf_counter seconds).
"""

from koma.simulator.script import (
    Reply,
    RequestRecord,
    SimModel,
    default_catalog,
    default_models,
    gpt_oss_20b,
    gpt_oss_120b,
    qwen_coder,
    tokenize,
)
from koma.simulator.simulator import Simulator

__all__ = [
    "Reply",
    "RequestRecord",
    "SimModel",
    "Simulator",
    "default_catalog",
    "default_models",
    "gpt_oss_20b",
    "gpt_oss_120b",
    "qwen_coder",
    "tokenize",
]

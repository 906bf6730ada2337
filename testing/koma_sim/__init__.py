"""Loopback simulator of the Ollama and OpenAI-compatible (LM Studio, llama.cpp, vLLM) wire
formats, written from the servers' documented formats so tests and benchmarks run without a GPU.

A test tool, not part of Koma: it lives in `testing/` (distribution `koma-testing`, installed by
`scripts/install.sh dev`), stays out of Koma's wheel, and imports nothing of Koma, so it answers
as the servers do and not as the client expects (tests/test_packaging.py holds both).

    from koma_sim import Simulator, Reply, SimModel

    with Simulator(flavor="ollama", token_delay_ms=5) as sim:
        sim.add_reply(Reply(thinking="Let me see.", content="Hi!", match="hello"))
        ...  # talk HTTP to sim.url (native) or sim.openai_url (/v1)
        record = sim.wait_for_requests(1)[0]

Replies are matched in insertion order against the last user message (or prompt); thinking is
streamed before content, token by token, and the server notices a client hang-up between tokens
at once (`RequestRecord.disconnected_at`, perf_counter seconds).
"""

from koma_sim.script import (
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
from koma_sim.simulator import Simulator

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

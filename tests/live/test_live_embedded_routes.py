"""The embedded provider's route comes from the GGUF's tokenizer keys (real llama.cpp, in-process).

The packaged Gemma 3 270M names no FIM tokens: raw continuation. The derived copy
(`fim_model.py`) names Gemma's unused tokens as FIM tokens, so the route is FIM and
llama-cpp-python builds the infill prompt from them; Gemma is not trained for that, so only the
plumbing is proven there, not the suggestion.
"""

from __future__ import annotations

import pytest
from fim_model import fim_gemma_path, gemma_path

from koma.engine.completion.routes import choose_route
from koma.engine.stream import collect, stream_completion_events
from koma.providers.base import CompletionRequest
from koma.providers.embedded import EmbeddedProvider
from koma.types import GenerationSettings

pytestmark = pytest.mark.live


async def test_the_packaged_gemma_is_continued_raw() -> None:
    provider = EmbeddedProvider(gemma_path())
    choice = await choose_route(provider, str(gemma_path()))
    assert choice.route == "raw" and "no FIM tokens" in choice.why
    request = CompletionRequest(
        str(gemma_path()),
        prompt='def add(a, b):\n    """Return the sum of a and b."""\n    return',
        raw=True,
        settings=GenerationSettings(max_tokens=8, temperature=0, stop=("\n",)),
    )
    result = await collect(stream_completion_events(provider, request))
    assert result.text.strip() and "\n" not in result.text


async def test_a_gguf_naming_fim_tokens_is_filled_in_the_middle() -> None:
    path = str(fim_gemma_path())
    provider = EmbeddedProvider(path)
    choice = await choose_route(provider, path)
    assert choice.route == "fim" and "fim_pre_token_id" in choice.why
    request = CompletionRequest(
        path,
        prompt="def add(a, b):\n    return ",
        suffix="\n\nprint(add(1, 2))\n",
        settings=GenerationSettings(max_tokens=4, temperature=0),
    )
    result = await collect(stream_completion_events(provider, request))
    assert result.finish_reason in ("stop", "length")

"""What the editor side hands the completion pipeline and what it gets back, as plain data.

The language server (`lsp/inline_completion.py`), the benchmarks and the tests speak to the
pipeline only through these two shapes, so they live apart from the machinery that serves them
(`pipeline.py`): nothing here knows about models, caches or tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from koma.engine.completion.postprocess import Route
from koma.engine.completion.prompt import Neighbour

# Where an answer came from: the typing-through cache, a model call, or nowhere (empty).
Source = Literal["cache", "model", "none"]


@dataclass(frozen=True)
class CompletionInput:
    """One request, as plain data: the text around the cursor and what else is open."""

    uri: str
    prefix: str
    suffix: str
    prefix_offset: int = 0  # absolute offset of prefix[0] in the document (prompt stability)
    language_id: str = "python"
    path: str = ""
    invoked: bool = False  # explicitly asked for (no debounce)
    neighbours: tuple[Neighbour, ...] = ()


@dataclass
class CompletionResult:
    """What the LSP layer turns into an answer; `text` None means an empty list."""

    text: str | None
    replace_chars: int = 0
    source: Source = "none"
    reason: str = "ok"
    debounce_ms: float = 0.0
    upstream_ms: float = 0.0
    route: Route | None = None
    adopted: bool = False  # the answer came from a call started for an earlier keystroke
    took_over: bool = False  # this request took a running call over (whatever came of it)
    started_call: bool = False  # this request started a model call (upstream request)
    waited_ms: float = 0.0  # spent on a running call whose answer then did not fit
    error: str | None = None

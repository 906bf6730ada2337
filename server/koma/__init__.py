"""Koma: local reasoning models (gpt-oss via Ollama, LM Studio, llama.cpp, vLLM) in the editor.

The Python API (docs/providers.md, "Migrating from the GPT-4 or Claude APIs"; tools from
Python: docs/tools.md):

```python
from koma import generate, generate_text, stream_text, GenerationSettings, Message
text = await generate("Explain the theory of relativity", model="gpt-oss:120b")
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from koma._lazy import lazy_attributes
from koma.errors import (
    CapabilityMissing,
    ConfigError,
    ContextOverflow,
    KomaError,
    ModelNotFound,
    ProviderError,
    ProviderTimeout,
    ProviderUnreachable,
    StreamError,
)

if TYPE_CHECKING:
    from koma.engine.cache import CacheStats, ResponseCache
    from koma.engine.generate import generate, generate_text, stream_text
    from koma.engine.stream import collect, stream_completion_events, stream_events
    from koma.types import (
        CHANNELS,
        Channel,
        ChannelEnd,
        ChannelStart,
        Done,
        GenerationResult,
        GenerationSettings,
        Message,
        Metrics,
        StreamEvent,
        TextDelta,
        ToolCall,
        ToolCallEvent,
        Usage,
    )

# The vocabulary (pydantic) and the engine (httpx, sqlite) are imported on first use: every
# `import koma.…` runs this file first, and `koma lsp` must answer `initialize` fast.
_TYPES = (
    "CHANNELS",
    "Channel",
    "ChannelEnd",
    "ChannelStart",
    "Done",
    "GenerationResult",
    "GenerationSettings",
    "Message",
    "Metrics",
    "StreamEvent",
    "TextDelta",
    "ToolCall",
    "ToolCallEvent",
    "Usage",
)
_LAZY: dict[str, str] = {
    **dict.fromkeys(_TYPES, "koma.types"),
    "CacheStats": "koma.engine.cache",
    "ResponseCache": "koma.engine.cache",
    "generate": "koma.engine.generate",
    "generate_text": "koma.engine.generate",
    "stream_text": "koma.engine.generate",
    "collect": "koma.engine.stream",
    "stream_completion_events": "koma.engine.stream",
    "stream_events": "koma.engine.stream",
}

__getattr__ = lazy_attributes(__name__, _LAZY)


__version__ = "0.1.0"

__all__ = [
    "CHANNELS",
    "CacheStats",
    "CapabilityMissing",
    "Channel",
    "ChannelEnd",
    "ChannelStart",
    "ConfigError",
    "ContextOverflow",
    "Done",
    "GenerationResult",
    "GenerationSettings",
    "KomaError",
    "Message",
    "Metrics",
    "ModelNotFound",
    "ProviderError",
    "ProviderTimeout",
    "ProviderUnreachable",
    "ResponseCache",
    "StreamError",
    "StreamEvent",
    "TextDelta",
    "ToolCall",
    "ToolCallEvent",
    "Usage",
    "__version__",
    "collect",
    "generate",
    "generate_text",
    "stream_completion_events",
    "stream_events",
    "stream_text",
]

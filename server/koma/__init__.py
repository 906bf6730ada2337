"""Koma: local reasoning models (gpt-oss via Ollama, LM Studio, llama.cpp, vLLM) in the editor.

The Python API mirrors the GPT-OSS guide:

```python
from koma import generate, generate_text, stream_text, GenerationSettings, Message
text = await generate("Explain the theory of relativity", model="gpt-oss:120b")
```
"""

from koma.engine.cache import CacheStats, ResponseCache
from koma.engine.generate import generate, generate_text, stream_text
from koma.engine.stream import collect, stream_completion_events, stream_events
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

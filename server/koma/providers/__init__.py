"""Wire formats of the model servers Koma talks to; see `base.Provider` for the contract."""

from koma.providers.base import ChatRequest, CompletionRequest, Provider, WireChunk
from koma.providers.lmstudio import LMStudioProvider
from koma.providers.ollama import OllamaProvider
from koma.providers.openai_compat import PRESETS, OpenAICompatProvider
from koma.providers.registry import (
    AUTO_CANDIDATES,
    DEFAULT_URLS,
    create_provider,
    resolve_provider,
)

__all__ = [
    "AUTO_CANDIDATES",
    "DEFAULT_URLS",
    "PRESETS",
    "ChatRequest",
    "CompletionRequest",
    "LMStudioProvider",
    "OllamaProvider",
    "OpenAICompatProvider",
    "Provider",
    "WireChunk",
    "create_provider",
    "resolve_provider",
]

"""Wire formats of the model servers Koma talks to; see `base.Provider` for the contract."""

from __future__ import annotations

from typing import TYPE_CHECKING

from koma._lazy import lazy_attributes

if TYPE_CHECKING:
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

# Imported on first use: the language server's start-up pays only for what it needs.
_LAZY: dict[str, str] = {
    "ChatRequest": "koma.providers.base",
    "CompletionRequest": "koma.providers.base",
    "Provider": "koma.providers.base",
    "WireChunk": "koma.providers.base",
    "LMStudioProvider": "koma.providers.lmstudio",
    "OllamaProvider": "koma.providers.ollama",
    "PRESETS": "koma.providers.openai_compat",
    "OpenAICompatProvider": "koma.providers.openai_compat",
    "AUTO_CANDIDATES": "koma.providers.registry",
    "DEFAULT_URLS": "koma.providers.registry",
    "create_provider": "koma.providers.registry",
    "resolve_provider": "koma.providers.registry",
}

__getattr__ = lazy_attributes(__name__, _LAZY)


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

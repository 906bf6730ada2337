"""Wire formats of the model servers Koma talks to; see `base.Provider` for the contract."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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

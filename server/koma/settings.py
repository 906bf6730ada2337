"""Koma's settings: one pydantic model with the camelCase keys editors send.

The same model is filled from CLI flags, `KOMA_*` environment variables, `.koma.toml` in the
project, the user config file, and (in the language server) `initializationOptions.koma` and
`workspace/configuration`. `docs/protocol.md` documents every key; clients rely on that.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

ProviderName = Literal["auto", "ollama", "lmstudio", "openai", "embedded"]
EffortName = Literal["low", "medium", "high"]
Policy = Literal["allow", "ask", "deny"]


class _Camel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", validate_assignment=True
    )


class ReasoningEffort(_Camel):
    completion: EffortName = "low"
    actions: EffortName = "medium"
    chat: EffortName = "high"


class CompletionSettings(_Camel):
    enabled: bool = True
    # None: adapt to typing speed; a number fixes the debounce in milliseconds.
    debounce_ms: int | None = Field(default=None, ge=0, le=5000)
    max_tokens: int = Field(default=128, gt=0, le=4096)
    prefix_tokens: int = Field(default=1024, gt=0)
    # The suffix follows the typed text in the prompt, so it is evaluated again on every
    # keystroke; a short window keeps most of the prompt in the server's cache.
    suffix_tokens: int = Field(default=128, ge=0)
    multiline: Literal["auto", "always", "never"] = "auto"
    temperature: float = Field(default=0.2, ge=0, le=2)
    open_documents_context: bool = True
    cache_size: int = Field(default=200, ge=0)


class ChatSettings(_Camel):
    max_tokens: int | None = Field(default=None, gt=0)
    system_prompt: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)


def _default_policies() -> dict[str, Policy]:
    return {
        "read_file": "allow",
        "list_files": "allow",
        "search": "allow",
        "run_tests": "ask",
        "propose_edit": "ask",
    }


class ToolSettings(_Camel):
    policies: dict[str, Policy] = Field(default_factory=_default_policies)
    run_tests_command: list[str] = Field(default_factory=lambda: ["python", "-m", "pytest", "-q"])
    run_tests_timeout_seconds: float = Field(default=120, gt=0)
    max_steps: int = Field(default=8, ge=1, le=64)
    max_read_bytes: int = Field(default=200_000, gt=0)
    secret_patterns: list[str] = Field(
        default_factory=lambda: [".env", ".env.*", "*.pem", "*.key", "id_*", "*.p12", ".netrc"]
    )


class CacheSettings(_Camel):
    mode: Literal["off", "deterministic", "always"] = "deterministic"
    persistent: bool = False
    max_entries: int = Field(default=512, ge=0)


class MemorySettings(_Camel):
    max_memory_gb: float | None = Field(default=None, gt=0)
    auto_unload_minutes: float | None = Field(default=None, gt=0)


class GpuSettings(_Camel):
    num_gpu: int | None = None
    num_thread: int | None = Field(default=None, gt=0)
    main_gpu: int | None = None
    use_mmap: bool | None = None


class KomaSettings(_Camel):
    provider: ProviderName = "auto"
    base_url: str | None = None
    model: str | None = None
    completion_model: str | None = None
    reasoning_effort: ReasoningEffort = Field(default_factory=ReasoningEffort)
    completion: CompletionSettings = Field(default_factory=CompletionSettings)
    chat: ChatSettings = Field(default_factory=ChatSettings)
    tools: ToolSettings = Field(default_factory=ToolSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    gpu: GpuSettings = Field(default_factory=GpuSettings)
    keep_alive: str | int | None = "10m"
    num_ctx: int | None = Field(default=None, gt=0)
    preload_on_open: bool = False

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("baseUrl must start with http:// or https://")
        return value.rstrip("/")

    def to_camel_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge nested dicts; `override` wins, `None` in `override` means "not set"."""
    out = dict(base)
    for key, value in override.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out

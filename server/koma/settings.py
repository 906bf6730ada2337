"""Koma's settings: one pydantic model with the camelCase keys editors send.

The same model is filled from CLI flags, `KOMA_*` environment variables, `.koma.toml` in the
project, the user config file, and (in the language server) `initializationOptions.koma` and
`workspace/configuration`. `docs/protocol.md` documents every key; clients rely on that.

Every leaf field carries exactly one trust marker (`safe(...)` or `sensitive(...)`): a
*sensitive* key chooses where data goes or what runs (provider, URL, keys, tool policies and
commands, secret patterns, system prompts, child-process environment), so a project's
`.koma.toml` may set it only once the user trusts that exact file (`koma.trust`). A field
without a marker fails the test suite, so a new key cannot forget to decide.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ProviderName = Literal["auto", "ollama", "lmstudio", "openai", "embedded"]
EffortName = Literal["low", "medium", "high"]
Policy = Literal["allow", "ask", "deny"]


Trust = Literal["safe", "sensitive"]
TRUST_MARKER = "trust"


def safe(default: Any = PydanticUndefined, **kwargs: Any) -> Any:
    """A field any layer may set, an untrusted project file too: it changes how well or how
    fast Koma answers, never where data goes or what runs."""
    return Field(default, json_schema_extra={TRUST_MARKER: "safe"}, **kwargs)


def sensitive(default: Any = PydanticUndefined, **kwargs: Any) -> Any:
    """A field that chooses where data goes or what runs: from a project file it applies only
    once the user trusts that exact file."""
    return Field(default, json_schema_extra={TRUST_MARKER: "sensitive"}, **kwargs)


class _Camel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", validate_assignment=True
    )


class ReasoningEffort(_Camel):
    completion: EffortName = safe("low")
    actions: EffortName = safe("medium")
    chat: EffortName = safe("high")


class CompletionSettings(_Camel):
    enabled: bool = safe(True)
    # None: adapt to typing speed; a number fixes the debounce in milliseconds.
    debounce_ms: int | None = safe(None, ge=0, le=5000)
    max_tokens: int = safe(128, gt=0, le=4096)
    prefix_tokens: int = safe(1024, gt=0)
    # The suffix follows the typed text in the prompt, so it is evaluated again on every
    # keystroke; a short window keeps most of the prompt in the server's cache.
    suffix_tokens: int = safe(128, ge=0)
    multiline: Literal["auto", "always", "never"] = safe("auto")
    temperature: float = safe(0.2, ge=0, le=2)
    open_documents_context: bool = safe(True)
    cache_size: int = safe(200, ge=0)
    # How inline completion asks the model: auto detects it per model (engine/completion/routes.py).
    route: Literal["auto", "fim", "raw", "chat"] = safe("auto")
    # Fetch the suggestion that follows a shown one's acceptance (one more call per suggestion).
    speculative: bool = safe(False)


class ChatSettings(_Camel):
    max_tokens: int | None = safe(None, gt=0)
    # Replaces Koma's instructions to the model (and with them its rules for tools).
    system_prompt: str | None = sensitive(None)
    temperature: float | None = safe(None, ge=0, le=2)


def _default_policies() -> dict[str, Policy]:
    return {
        "read_file": "allow",
        "list_files": "allow",
        "search": "allow",
        "run_tests": "ask",
        "propose_edit": "ask",
    }


# Files the tools never read, list, search or edit: keys, tokens and credential stores. A
# pattern without `/` matches any name on the path; one with `/` matches the path's end.
DEFAULT_SECRET_PATTERNS = (
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
    "id_*",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.kdbx",
    ".netrc",
    "_netrc",
    ".git-credentials",
    ".npmrc",
    ".pypirc",
    ".pgpass",
    ".htpasswd",
    ".ssh",
    ".gnupg",
    "credentials.json",
    "*.tfstate",
    ".aws/credentials",
    ".aws/config",
    ".docker/config.json",
    ".kube/config",
    "kubeconfig",
    ".config/gcloud",
    ".azure",
)


class ToolSettings(_Camel):
    # Every tools.* key is sensitive: together they decide what the model may read, run and
    # change, and how much of it; a project may not loosen any of them without the user's trust.
    policies: dict[str, Policy] = sensitive(default_factory=_default_policies)
    run_tests_command: list[str] = sensitive(
        default_factory=lambda: ["python", "-m", "pytest", "-q"]
    )
    run_tests_timeout_seconds: float = sensitive(120, gt=0)
    max_steps: int = sensitive(8, ge=1, le=64)
    max_read_bytes: int = sensitive(200_000, gt=0)
    secret_patterns: list[str] = sensitive(default_factory=lambda: list(DEFAULT_SECRET_PATTERNS))
    # Environment variables the test process may keep although their names look like
    # credentials (`*_TOKEN`, `*_API_KEY`, …): the user names each one.
    pass_env: list[str] = sensitive(default_factory=list)


class CacheSettings(_Camel):
    mode: Literal["off", "deterministic", "always"] = safe("deterministic")
    # Writes prompts (workspace code) and answers to disk in the user's cache folder, where
    # they outlive the session: where data goes, so a project may not turn it on by itself.
    persistent: bool = sensitive(False)
    max_entries: int = safe(512, ge=0)


class MemorySettings(_Camel):
    max_memory_gb: float | None = safe(None, gt=0)
    auto_unload_minutes: float | None = safe(None, gt=0)


class GpuSettings(_Camel):
    num_gpu: int | None = safe(None)
    num_thread: int | None = safe(None, gt=0)
    main_gpu: int | None = safe(None)
    use_mmap: bool | None = safe(None)


class KomaSettings(_Camel):
    provider: ProviderName = sensitive("auto")
    base_url: str | None = sensitive(None)
    # Bearer key for OpenAI-compatible servers (also KOMA_API_KEY). A SecretStr prints and
    # dumps as asterisks; it is sent only to a base URL at least as trusted (config.py).
    api_key: SecretStr | None = sensitive(None)
    model: str | None = safe(None)
    completion_model: str | None = safe(None)
    reasoning_effort: ReasoningEffort = Field(default_factory=ReasoningEffort)
    completion: CompletionSettings = Field(default_factory=CompletionSettings)
    chat: ChatSettings = Field(default_factory=ChatSettings)
    tools: ToolSettings = Field(default_factory=ToolSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    gpu: GpuSettings = Field(default_factory=GpuSettings)
    keep_alive: str | int | None = safe("10m")
    num_ctx: int | None = safe(None, gt=0)
    preload_on_open: bool = safe(False)
    # How long an answer may keep the user waiting: the first byte may take minutes (a large
    # model loading), but once the answer flows a silence this long means a stalled server.
    first_byte_timeout_seconds: float = safe(600.0, gt=0, le=86400)
    idle_timeout_seconds: float = safe(60.0, gt=0, le=3600)

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("baseUrl must start with http:// or https://")
        return value.rstrip("/")

    def to_camel_dict(self) -> dict[str, Any]:
        """The settings as an editor writes them; an API key shows as asterisks."""
        return self.model_dump(by_alias=True, mode="json")


def _nested_model(info: FieldInfo) -> type[BaseModel] | None:
    annotation = info.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def field_name(model: type[BaseModel], key: str) -> str | None:
    """The model's field for `key`, whether it is written in camelCase or snake_case."""
    for name, info in model.model_fields.items():
        if key in (name, info.alias, to_camel(name)):
            return name
    return None


def leaf_fields(
    model: type[BaseModel] = KomaSettings, prefix: str = ""
) -> Iterator[tuple[str, FieldInfo]]:
    """Every leaf setting as (dotted camelCase key, field); a nested table is not a leaf."""
    for name, info in model.model_fields.items():
        key = prefix + (info.alias or name)
        nested = _nested_model(info)
        if nested is not None:
            yield from leaf_fields(nested, key + ".")
        else:
            yield key, info


def field_trust(info: FieldInfo) -> Trust | None:
    """The field's trust marker, or None when it has none (a bug the test suite catches)."""
    extra = info.json_schema_extra
    value = extra.get(TRUST_MARKER) if isinstance(extra, dict) else None
    if value == "safe":
        return "safe"
    if value == "sensitive":
        return "sensitive"
    return None


def sensitive_keys() -> list[str]:
    """Dotted camelCase keys a project file may set only once the user trusts it."""
    return [key for key, info in leaf_fields() if field_trust(info) == "sensitive"]


def unmarked_keys(model: type[BaseModel] = KomaSettings) -> list[str]:
    """Leaf keys without a valid trust marker; must be empty (tests/test_trust.py)."""
    return [key for key, info in leaf_fields(model) if field_trust(info) is None]


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

"""Koma's settings: one pydantic model with the camelCase keys editors send.

The same model is filled from CLI flags, `KOMA_*` environment variables, `.koma.toml` in the
project, the user config file, and (in the language server) `initializationOptions.koma` and
`workspace/configuration`. It is the only description of the keys: VS Code's `package.json`
settings, the extension's key lists and the table in docs/protocol.md are generated from it
(`scripts/gen_settings.py`; tests/test_settings_generated.py fails when they drift), and the
Neovim plugin passes what the user wrote through to the server, which validates it here.

Every leaf field carries exactly one trust marker (`safe(...)` or `sensitive(...)`): a
*sensitive* key chooses where data goes or what runs (provider, URL, keys, tool policies and
commands, secret patterns, system prompts, child-process environment), so a project's
`.koma.toml` may set it only once the user trusts that exact file (`koma.trust`). A field
without a marker fails the test suite, so a new key cannot forget to decide.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic.alias_generators import to_camel

from koma.choices import Effort, ProviderName
from koma.settings.markers import safe, sensitive

Policy = Literal["allow", "ask", "deny"]
_UNSET_SERVER = " Unset: the server decides."


class _Camel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", validate_assignment=True
    )


_EFFORT = ["Fastest.", "Balanced.", "Most thorough."]


class ReasoningEffort(_Camel):
    completion: Effort = safe(
        "low",
        description="Reasoning effort for inline completions.",
        enum_descriptions=[
            "Fastest: shortest reasoning before the suggestion.",
            "Balanced.",
            "Longest reasoning; slow for ghost text.",
        ],
    )
    actions: Effort = safe(
        "medium",
        description=(
            "Reasoning effort for code actions (explain, refactor, docstring, tests, fixes)."
        ),
        enum_descriptions=_EFFORT,
    )
    chat: Effort = safe("high", description="Reasoning effort for chat.", enum_descriptions=_EFFORT)


class CompletionSettings(_Camel):
    enabled: bool = safe(True, description="Show inline (ghost text) completions while typing.")
    debounce_ms: int | None = safe(
        None,
        ge=0,
        le=5000,
        description="Fixed delay in milliseconds before asking for a completion. "
        "Unset: predicted from your typing rhythm (no wait where you usually pause).",
    )
    max_tokens: int = safe(128, gt=0, le=4096, description="Longest completion in tokens.")
    prefix_tokens: int = safe(
        1024, gt=0, description="Tokens of text before the cursor sent as context."
    )
    # The suffix follows the typed text in the prompt, so it is evaluated again on every
    # keystroke; a short window keeps most of the prompt in the server's cache.
    suffix_tokens: int = safe(
        128, ge=0, description="Tokens of text after the cursor sent as context."
    )
    multiline: Literal["auto", "always", "never"] = safe(
        "auto",
        description="Whether suggestions may span several lines.",
        enum_descriptions=[
            "Multi-line where the cursor is on an empty block; one line elsewhere.",
            "Always allow multi-line suggestions.",
            "Only ever complete the current line.",
        ],
    )
    temperature: float = safe(0.2, ge=0, le=2, description="Sampling temperature for completions.")
    open_documents_context: bool = safe(
        True,
        description="Add short snippets of other open files and of code the editor saw "
        "recently (the cross-file context) to the completion prompt.",
    )
    cache_size: int = safe(
        200, ge=0, description="Suggestions kept for typing through them and for revisits."
    )
    # How inline completion asks the model: auto detects it per model (engine/completion/routes.py).
    route: Literal["auto", "fim", "raw", "chat"] = safe(
        "auto",
        description="How inline completion asks the model; `koma doctor` and `koma.status` "
        "show the route chosen and why.",
        enum_descriptions=[
            "Detect from the model: fill-in-the-middle if it has FIM tokens, else a raw "
            "continuation of the code, chat only where the server has no completion endpoint.",
            "Fill in the middle (prefix and suffix; llama-server's /infill).",
            "Continue the code before the cursor as a raw prompt.",
            "Ask a chat model to fill the hole (slow; capped in tokens and time).",
        ],
    )
    # Fetch the suggestion that follows a shown one's acceptance (one more call per suggestion).
    speculative: bool = safe(
        False,
        description="After a suggestion from the model is shown, fetch the one that would "
        "follow its acceptance (at most one such call, never on the chat route, closed by any "
        "other typing; one more model call per suggestion).",
    )


class ChatSettings(_Camel):
    max_tokens: int | None = safe(
        None,
        gt=0,
        description="Longest chat answer in tokens, sent to the server as its limit. Unset: "
        "Koma's own limits — the answer stops after 2,048 tokens, the reasoning after 2,048 / "
        "8,192 / 16,384 at low / medium / high effort (counted by Koma, not sent).",
    )
    # Replaces Koma's instructions to the model (and with them its rules for tools).
    system_prompt: str | None = sensitive(
        None, description="Replaces Koma's system prompt for chat (and with it its tool rules)."
    )
    temperature: float | None = safe(
        None, ge=0, le=2, description="Sampling temperature for chat. Unset: the model's default."
    )


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
    policies: dict[str, Policy] = sensitive(
        default_factory=_default_policies,
        description="Per-tool policy for chat, by tool name: `allow`, `ask` or `deny`.",
        enum_descriptions=[
            "Run without asking.",
            "Ask before each use (Allow / Allow for this chat / Deny).",
            "Never run.",
        ],
    )
    run_tests_command: list[str] = sensitive(
        default_factory=lambda: ["python", "-m", "pytest", "-q"],
        description="Program and arguments the `run_tests` tool runs (an argv list, never "
        "through a shell).",
    )
    run_tests_timeout_seconds: float = sensitive(
        120, gt=0, description="Seconds before the `run_tests` tool is stopped."
    )
    max_steps: int = sensitive(
        8, ge=1, le=64, description="Tool calls the model may make in one chat turn."
    )
    max_read_bytes: int = sensitive(
        200_000, gt=0, description="Largest file the `read_file` tool returns, in bytes."
    )
    secret_patterns: list[str] = sensitive(
        default_factory=lambda: list(DEFAULT_SECRET_PATTERNS),
        description="File name patterns the tools never read, list, search or edit (a pattern "
        "with `/` matches the end of the path; docs/tools.md). Your list replaces these "
        "defaults: keep them when you add one.",
    )
    # Environment variables the test process may keep although their names look like
    # credentials (`*_TOKEN`, `*_API_KEY`, …): the user names each one.
    pass_env: list[str] = sensitive(
        default_factory=list,
        description="Credential environment variables (exact names, e.g. `GITHUB_TOKEN`) the "
        "`run_tests` process may keep; every other `*_TOKEN`, `*_SECRET`, `*_API_KEY`, "
        "`*PASSWORD*` or cloud credential variable is removed from its environment.",
    )


class CacheSettings(_Camel):
    mode: Literal["off", "deterministic", "always"] = safe(
        "deterministic",
        description="Response cache for chat and code actions.",
        enum_descriptions=[
            "Never reuse a response.",
            "Reuse responses of requests with temperature 0 only.",
            "Reuse every identical request's response.",
        ],
    )
    # Writes prompts (workspace code) and answers to disk in the user's cache folder, where
    # they outlive the session: where data goes, so a project may not turn it on by itself.
    persistent: bool = sensitive(
        False,
        description="Keep the response cache on disk (the user's cache folder) between sessions.",
    )
    max_entries: int = safe(512, ge=0, description="Responses kept in the cache.")


class MemorySettings(_Camel):
    max_memory_gb: float | None = safe(
        None,
        gt=0,
        per_machine=True,
        description="Unload models when loaded models would use more than this many GB. "
        "Unset: no limit.",
    )
    auto_unload_minutes: float | None = safe(
        None,
        gt=0,
        per_machine=True,
        description="Unload a model idle for this many minutes. Unset: never.",
    )


class GpuSettings(_Camel):
    num_gpu: int | None = safe(
        None,
        per_machine=True,
        description="Ollama `num_gpu`: layers to offload to the GPU." + _UNSET_SERVER,
    )
    num_thread: int | None = safe(
        None,
        gt=0,
        per_machine=True,
        description="Ollama `num_thread`: CPU threads." + _UNSET_SERVER,
    )
    main_gpu: int | None = safe(
        None, per_machine=True, description="Ollama `main_gpu`." + _UNSET_SERVER
    )
    use_mmap: bool | None = safe(
        None, per_machine=True, description="Ollama `use_mmap`." + _UNSET_SERVER
    )


class KomaSettings(_Camel):
    provider: ProviderName = sensitive(
        "auto",
        description="Which backend serves the models.",
        enum_descriptions=[
            "Probe Ollama (:11434), then LM Studio (:1234), then fall back to the embedded model.",
            "Ollama's native API (/api/chat, /api/generate).",
            "LM Studio's OpenAI-compatible server.",
            "Any OpenAI-compatible server: llama.cpp's llama-server, vLLM, OpenAI.",
            "A small GGUF model run inside the server process (needs the `embedded` extra).",
        ],
    )
    base_url: str | None = sensitive(
        None,
        description="Backend URL, e.g. `http://localhost:11434` (Ollama) or "
        "`http://localhost:1234/v1` (LM Studio). Unset: the provider's default.",
    )
    # Bearer key for OpenAI-compatible servers (also KOMA_API_KEY). A SecretStr prints and
    # dumps as asterisks; it is sent only to a base URL at least as trusted (layers.py).
    api_key: SecretStr | None = sensitive(
        None,
        in_editor=False,
        description="`Authorization: Bearer` key for OpenAI-compatible servers (also "
        "`KOMA_API_KEY`); sent only to a base URL at least as trusted as the key "
        "([API key](#where-the-api-key-goes)). No editor setting: put it in the environment "
        "or Koma's own config file.",
    )
    model: str | None = safe(
        None,
        description="Model for chat and code actions, e.g. `gpt-oss:120b`. Unset: a model "
        "the server has loaded, else its first.",
    )
    completion_model: str | None = safe(
        None,
        description="Model for inline completions; a small fill-in-the-middle model such as "
        "`qwen2.5-coder:1.5b` is fastest. Unset: `model`.",
    )
    reasoning_effort: ReasoningEffort = Field(default_factory=ReasoningEffort)
    completion: CompletionSettings = Field(default_factory=CompletionSettings)
    chat: ChatSettings = Field(default_factory=ChatSettings)
    tools: ToolSettings = Field(default_factory=ToolSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    gpu: GpuSettings = Field(default_factory=GpuSettings)
    keep_alive: str | int | None = safe(
        "10m",
        description='Ollama `keep_alive`: how long a model stays loaded after use (`"10m"`, '
        '`"1h"`, seconds, `-1` for ever).',
    )
    num_ctx: int | None = safe(
        None,
        gt=0,
        description="Context window sent to Ollama. Unset: computed from the model and memory.",
    )
    preload_on_open: bool = safe(
        False,
        description="Load the model when the first document opens, so the first completion "
        "is fast.",
    )
    # How long an answer may keep the user waiting: the first byte may take minutes (a large
    # model loading), but once the answer flows a silence this long means a stalled server.
    first_byte_timeout_seconds: float = safe(
        600.0,
        gt=0,
        le=86400,
        description="Seconds to wait for the first byte of an answer (covers loading the "
        "model); then the request fails with a timeout error.",
    )
    idle_timeout_seconds: float = safe(
        60.0,
        gt=0,
        le=3600,
        description="Seconds an answer may fall silent once it has started; then the request "
        'fails with a "stalled" timeout error.',
    )

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

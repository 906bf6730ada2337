"""Koma's settings: the schema, where its values come from, and how a bad value is reported.

- `schema`: the pydantic model (`KomaSettings`), the one description of every key, its default,
  its trust marker and the text editors and docs show for it (`markers`: `safe`/`sensitive`);
- `keys`: dotted camelCase keys, snake_case accepted, nested tables merged;
- `files`: where the user and project config files are and how they are read;
- `layers`: flags/editor > `KOMA_*` > `.koma.toml` > user config > defaults, with the project
  file's sensitive keys only once trusted, and the API key only to a URL at least as trusted;
- `errors`: a validation error as the one-line message a user reads.

The models are re-exported here because every layer holds one; the rest is imported from its
module. `scripts/gen_settings.py` writes VS Code's settings and the docs table from the schema.
"""

from koma.settings.keys import sensitive_keys
from koma.settings.schema import (
    DEFAULT_SECRET_PATTERNS,
    CacheSettings,
    ChatSettings,
    CompletionSettings,
    GpuSettings,
    KomaSettings,
    MemorySettings,
    Policy,
    ReasoningEffort,
    ToolSettings,
)

__all__ = [
    "DEFAULT_SECRET_PATTERNS",
    "CacheSettings",
    "ChatSettings",
    "CompletionSettings",
    "GpuSettings",
    "KomaSettings",
    "MemorySettings",
    "Policy",
    "ReasoningEffort",
    "ToolSettings",
    "sensitive_keys",
]

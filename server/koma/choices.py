"""The closed sets of names a user picks from: reasoning efforts and provider kinds.

Their one home. The settings schema, the request settings (`koma.types`), the CLI's argument
parser and the language server's commands all take them from here; the editors get them from
the schema (`scripts/gen_settings.py`). The module imports nothing, so the CLI can offer them as
`--effort`/`--provider` choices without loading pydantic before `koma lsp` answers `initialize`.
"""

from __future__ import annotations

from typing import Literal, get_args

# How hard the model reasons before answering; settings choose one per feature.
Effort = Literal["low", "medium", "high"]
EFFORTS: tuple[Effort, ...] = get_args(Effort)

# The `provider` setting: a backend kind, or `auto` to probe for one.
ProviderName = Literal["auto", "ollama", "lmstudio", "openai", "embedded"]
PROVIDERS: tuple[ProviderName, ...] = get_args(ProviderName)

"""What each settings field says about itself, beyond its type and default.

Every leaf field is declared with `safe(...)` or `sensitive(...)`, never a bare `Field`: the
trust marker decides whether an untrusted project file may set it (`koma.trust`), and the same
call carries what the editors and the docs show for the key (its description, one line per enum
value, its editor scope). `scripts/gen_settings.py` turns these into VS Code's `package.json`
settings and the table in docs/protocol.md, so the schema is the only place a key is described.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

Trust = Literal["safe", "sensitive"]
TRUST_MARKER = "trust"
# The other keys `safe`/`sensitive` put in `json_schema_extra` (read by `field_doc`).
_ENUM_DESCRIPTIONS = "enumDescriptions"
_PER_MACHINE = "perMachine"
_IN_EDITOR = "inEditor"


def safe(
    default: Any = PydanticUndefined,
    *,
    description: str = "",
    enum_descriptions: Sequence[str] | None = None,
    per_machine: bool = False,
    in_editor: bool = True,
    **kwargs: Any,
) -> Any:
    """A field any layer may set, an untrusted project file too: it changes how well or how
    fast Koma answers, never where data goes or what runs.

    `per_machine`: the value describes this computer (memory, GPU), so an editor keeps it per
    machine. `in_editor=False`: no editor setting (see `sensitive`)."""
    return _field("safe", default, description, enum_descriptions, per_machine, in_editor, kwargs)


def sensitive(
    default: Any = PydanticUndefined,
    *,
    description: str = "",
    enum_descriptions: Sequence[str] | None = None,
    in_editor: bool = True,
    **kwargs: Any,
) -> Any:
    """A field that chooses where data goes or what runs: from a project file it applies only
    once the user trusts that exact file; an editor takes it from the user's own settings only.

    `in_editor=False` leaves it out of editor settings (the API key: VS Code's settings.json is
    a plain file that is synced and shared)."""
    return _field("sensitive", default, description, enum_descriptions, False, in_editor, kwargs)


def _field(
    trust: Trust,
    default: Any,
    description: str,
    enum_descriptions: Sequence[str] | None,
    per_machine: bool,
    in_editor: bool,
    kwargs: dict[str, Any],
) -> Any:
    extra: dict[str, Any] = {TRUST_MARKER: trust}
    if enum_descriptions is not None:
        extra[_ENUM_DESCRIPTIONS] = list(enum_descriptions)
    if per_machine:
        extra[_PER_MACHINE] = True
    if not in_editor:
        extra[_IN_EDITOR] = False
    return Field(default, description=description or None, json_schema_extra=extra, **kwargs)


def field_trust(info: FieldInfo) -> Trust | None:
    """The field's trust marker, or None when it has none (a bug the test suite catches)."""
    value = _extra(info).get(TRUST_MARKER)
    if value == "safe":
        return "safe"
    if value == "sensitive":
        return "sensitive"
    return None


def enum_descriptions(info: FieldInfo) -> list[str] | None:
    """One line per allowed value, in the order of the field's `Literal` (or None)."""
    value = _extra(info).get(_ENUM_DESCRIPTIONS)
    return [str(line) for line in value] if isinstance(value, list) else None


def per_machine(info: FieldInfo) -> bool:
    """True when the value describes this computer (an editor keeps it per machine)."""
    return _extra(info).get(_PER_MACHINE) is True


def in_editor(info: FieldInfo) -> bool:
    """False for a key editors deliberately offer no setting for."""
    return _extra(info).get(_IN_EDITOR) is not False


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}

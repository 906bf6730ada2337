"""Write every description of Koma's settings that is not the schema itself, from the schema.

The pydantic model in `server/koma/settings/schema.py` is the one source: each key's type,
default, bounds, trust marker (safe or sensitive), description and per-value descriptions live
there. This script writes

- `clients/vscode/package.json`: `contributes.configuration` (the server keys, after the
  extension's own client-only settings below) and the Restricted Mode list
  `capabilities.untrustedWorkspaces.restrictedConfigurations`;
- `clients/vscode/src/settingKeys.generated.ts`: the key lists the extension uses;
- docs/protocol.md: the settings table and the list of sensitive keys.

Usage: `python scripts/gen_settings.py` rewrites them; `--check` only says which are stale
(tests/test_settings_generated.py runs the same comparison).
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "server") not in sys.path:
    sys.path.insert(0, str(ROOT / "server"))

import annotated_types  # noqa: E402  (pydantic's constraint objects)
from pydantic import SecretStr  # noqa: E402
from pydantic.fields import FieldInfo  # noqa: E402

from koma.settings.keys import MODEL_FILE_KEYS, leaf_fields, sensitive_keys  # noqa: E402
from koma.settings.markers import enum_descriptions, field_trust, in_editor, per_machine  # noqa: E402

MANIFEST = ROOT / "clients" / "vscode" / "package.json"
KEYS_TS = ROOT / "clients" / "vscode" / "src" / "settingKeys.generated.ts"
PROTOCOL = ROOT / "docs" / "protocol.md"
COMMAND = "python scripts/gen_settings.py"

# CLIENT-ONLY settings: the VS Code extension's own, never sent to the server (they choose and
# trace the server program). This is their one source; edit them here, then run the script.
# `launch`: the setting chooses what program runs, or its environment, so a workspace may not
# set it and Restricted Mode lists it.
CLIENT_SETTINGS: dict[str, dict[str, Any]] = {
    "server.command": {
        "launch": True,
        "type": "string",
        "default": "",
        "scope": "machine",
        "markdownDescription": "Program that starts the language server (`<command> lsp`). "
        "Empty: the first `koma` found in the workspace's `.venv`/`venv`/`env` (not in "
        "Restricted Mode), `VIRTUAL_ENV`, the Python extension's interpreter, the Koma that "
        "**Koma: Install Server…** installed, `PATH` (VS Code's, then the login shell's), "
        "`~/.local/bin`, `PIPX_BIN_DIR`.",
    },
    "server.args": {
        "launch": True,
        "type": "array",
        "items": {"type": "string"},
        "default": [],
        "scope": "machine",
        "markdownDescription": 'Extra arguments after `lsp`, e.g. `["--log-level", "debug"]`.',
    },
    "server.env": {
        "launch": True,
        "type": "object",
        "additionalProperties": {"type": "string"},
        "default": {},
        "scope": "machine",
        "markdownDescription": "Extra environment variables for the server process, e.g. "
        '`{"KOMA_API_KEY": "…"}`.',
    },
    "install.systemSitePackages": {
        "type": "boolean",
        "default": False,
        "scope": "machine",
        "markdownDescription": "**Koma: Install Server…** makes its virtual environment see "
        "the packages of the Python it is made from (`python -m venv --system-site-packages`), "
        "e.g. to reuse an already compiled `llama-cpp-python`.",
    },
    "trace.server": {
        "type": "string",
        "enum": ["off", "messages", "verbose"],
        "default": "off",
        "scope": "window",
        "description": "Log the LSP messages between VS Code and the Koma server in the output "
        "channel.",
        "enumDescriptions": [
            "No LSP traffic in the log.",
            "Each request and notification's name.",
            "Each message with its parameters.",
        ],
    },
}

_SCALARS: dict[Any, tuple[str, str]] = {  # python type -> (JSON schema type, docs word)
    bool: ("boolean", "bool"),
    int: ("integer", "int"),
    float: ("number", "number"),
    str: ("string", "string"),
    SecretStr: ("string", "string"),
}


# ---- reading a field ---------------------------------------------------------------------------


def _members(annotation: Any) -> tuple[list[Any], bool]:
    """The union's members without None, and whether None is one of them."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = get_args(annotation)
        return [a for a in args if a is not type(None)], type(None) in args
    return [annotation], False


def _shape(tp: Any) -> dict[str, Any]:
    """The JSON schema of one (non-None) type, as VS Code reads it."""
    origin = get_origin(tp)
    if origin is Literal:
        return {"type": "string", "enum": list(get_args(tp))}
    if origin is list:
        return {"type": "array", "items": _shape(get_args(tp)[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": _shape(get_args(tp)[1])}
    if tp in _SCALARS:
        return {"type": _SCALARS[tp][0]}
    raise TypeError(f"{tp!r}: no JSON type known; extend _shape")


def _default(info: FieldInfo) -> Any:
    value = info.get_default(call_default_factory=True)
    return _plain(value)


def _plain(value: Any) -> Any:
    """JSON-ready: tuples as lists, whole floats as ints (600, not 600.0)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _bounds(info: FieldInfo, json_type: str) -> dict[str, Any]:
    """Pydantic's ge/gt/le/lt as JSON schema bounds (an int's `gt=0` reads better as min 1)."""
    out: dict[str, Any] = {}
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            out["minimum"] = item.ge
        elif isinstance(item, annotated_types.Gt):
            if json_type == "integer":
                out["minimum"] = item.gt + 1  # type: ignore[operator]
            else:
                out["exclusiveMinimum"] = item.gt
        elif isinstance(item, annotated_types.Le):
            out["maximum"] = item.le
        elif isinstance(item, annotated_types.Lt):
            out["exclusiveMaximum"] = item.lt
    return out


def _description(key: str, info: FieldInfo) -> str:
    if not info.description:
        raise ValueError(f"{key} has no description in the settings schema")
    return info.description


def _enum_lines(key: str, info: FieldInfo, values: list[Any]) -> list[str]:
    lines = enum_descriptions(info)
    if lines is None or len(lines) != len(values):
        raise ValueError(f"{key}: give one enum description per value {values}")
    return lines


# ---- VS Code -----------------------------------------------------------------------------------


def vscode_property(key: str, info: FieldInfo) -> dict[str, Any]:
    """One `contributes.configuration` property, in the order VS Code's docs use."""
    members, nullable = _members(info.annotation)
    shapes = [_shape(m) for m in members]
    default = _default(info)
    prop: dict[str, Any] = {}
    if len(shapes) == 1:
        prop.update(shapes[0])
    else:
        prop["type"] = [s["type"] for s in shapes]
    if nullable and default is None:
        if prop["type"] == "string":
            default = ""  # a text box in the Settings UI; the extension sends "" as unset
        else:
            kinds = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
            prop["type"] = [*kinds, "null"]
    if "enum" in prop:
        prop["enumDescriptions"] = _enum_lines(key, info, prop["enum"])
    extra = prop.get("additionalProperties")
    if isinstance(extra, dict) and "enum" in extra:
        extra["enumDescriptions"] = _enum_lines(key, info, extra["enum"])
    prop["default"] = default
    json_type = prop["type"] if isinstance(prop["type"], str) else prop["type"][0]
    prop.update(_bounds(info, json_type))
    if field_trust(info) == "sensitive":
        prop["scope"] = "machine"  # the user's own settings only, never a workspace's
    elif per_machine(info):
        prop["scope"] = "machine-overridable"
    else:
        prop["scope"] = "window"
    prop["markdownDescription"] = _description(key, info)
    return prop


def editor_keys() -> list[str]:
    return [key for key, info in leaf_fields() if in_editor(info)]


def launch_keys() -> list[str]:
    return [key for key, spec in CLIENT_SETTINGS.items() if spec.get("launch")]


def render_manifest(current: str) -> str:
    """package.json with its settings and Restricted Mode list regenerated, the rest kept."""
    data = json.loads(current)
    properties: dict[str, Any] = {}
    for key, spec in CLIENT_SETTINGS.items():
        properties[f"koma.{key}"] = {k: v for k, v in spec.items() if k != "launch"}
    for key, info in leaf_fields():
        if in_editor(info):
            properties[f"koma.{key}"] = vscode_property(key, info)
    data["contributes"]["configuration"] = {"title": "Koma", "properties": properties}
    sensitive = [key for key in sensitive_keys() if key in editor_keys()]
    restricted = [f"koma.{key}" for key in [*launch_keys(), *sensitive]]
    data["capabilities"]["untrustedWorkspaces"]["restrictedConfigurations"] = restricted
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def render_keys_ts() -> str:
    """The extension's key lists as a TypeScript module (imported by src/settings.ts)."""

    def array(name: str, doc: str, keys: list[str]) -> str:
        body = "".join(f"  '{key}',\n" for key in keys)
        return f"/** {doc} */\nexport const {name}: readonly string[] = [\n{body}];\n"

    sensitive = [key for key in sensitive_keys() if key in editor_keys()]
    return "\n".join(
        [
            f"// Generated by `{COMMAND}` from the server's settings schema\n"
            "// (server/koma/settings/schema.py). Do not edit: change the schema or the\n"
            "// script's CLIENT_SETTINGS, then run it; tests/test_settings_generated.py checks.\n",
            array(
                "SERVER_SETTING_KEYS",
                "Keys under `koma.` the server understands, as dotted paths.",
                editor_keys(),
            ),
            array(
                "SENSITIVE_SETTING_KEYS",
                "Server keys marked sensitive: they choose where code goes or what runs.",
                sensitive,
            ),
            array(
                "MODEL_FILE_SETTING_KEYS",
                "Safe server keys whose `.gguf` value is a model file: sensitive like the above.",
                list(MODEL_FILE_KEYS),
            ),
            array(
                "CLIENT_SETTING_KEYS",
                "Settings only the extension reads; never sent to the server.",
                list(CLIENT_SETTINGS),
            ),
            array(
                "LAUNCH_SETTING_KEYS",
                "Extension settings that choose the server program and its environment.",
                launch_keys(),
            ),
        ]
    )


# ---- docs/protocol.md --------------------------------------------------------------------------


def _code(value: Any) -> str:
    return "`" + json.dumps(value, ensure_ascii=False) + "`"


def _docs_type(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "｜".join(f"`{v}`" for v in get_args(tp))
    if origin is list:
        return _docs_type(get_args(tp)[0]) + "[]"
    if origin is dict:
        return "object: name → " + _docs_type(get_args(tp)[1])
    return _SCALARS[tp][1]


def _docs_default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, list) and len(value) > 6:
        shown = ", ".join(_code(v) for v in value[:6])
        return f"{shown}, … ({len(value)} in all)"
    return _code(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def docs_row(key: str, info: FieldInfo) -> str:
    members, nullable = _members(info.annotation)
    kind = " or ".join(_docs_type(m) for m in members) + (" or null" if nullable else "")
    meaning = _description(key, info)
    values = get_args(members[0]) if get_origin(members[0]) is Literal else ()
    if values:
        lines = _enum_lines(key, info, list(values))
        meaning += " " + " ".join(f"`{v}`: {line}" for v, line in zip(values, lines, strict=True))
    cells = [f"`{key}`", kind, _docs_default(_default(info)), field_trust(info) or "", meaning]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def render_table() -> str:
    rows = [docs_row(key, info) for key, info in leaf_fields()]
    head = "| key | type | default | trust | meaning |\n|---|---|---|---|---|\n"
    return head + "\n".join(rows) + "\n"


def render_sensitive_list() -> str:
    return ", ".join(f"`{key}`" for key in sensitive_keys()) + ".\n"


def _replace_block(text: str, name: str, body: str) -> str:
    begin = f"<!-- begin {name}: generated by {COMMAND} from the settings schema -->\n"
    end = f"<!-- end {name} -->"
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"docs/protocol.md lacks the {name} markers:\n{begin}{end}")
    return text[: start + len(begin)] + body + text[stop:]


def render_protocol(current: str) -> str:
    text = _replace_block(current, "settings-table", render_table())
    return _replace_block(text, "sensitive-keys", render_sensitive_list())


# ---- entry point -------------------------------------------------------------------------------

OUTPUTS: dict[Path, Callable[[str], str]] = {
    MANIFEST: render_manifest,
    KEYS_TS: lambda _current: render_keys_ts(),
    PROTOCOL: render_protocol,
}


def stale() -> dict[Path, str]:
    """Files whose content differs from what the schema gives, with the content it gives."""
    out = {}
    for path, render in OUTPUTS.items():
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        wanted = render(current)
        if wanted != current:
            out[path] = wanted
    return out


def main(argv: list[str]) -> int:
    outdated = stale()
    if "--check" in argv:
        for path in outdated:
            print(f"{path.relative_to(ROOT)} is out of date: run `{COMMAND}`")
        return 1 if outdated else 0
    for path, content in outdated.items():
        path.write_text(content, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

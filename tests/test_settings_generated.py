"""The settings schema is the one source: what is generated from it must match it.

`scripts/gen_settings.py` writes VS Code's settings (`package.json`), the extension's key lists
(`src/settingKeys.generated.ts`) and the settings table and sensitive-key list in
docs/protocol.md. A key added, renamed, re-described or re-marked in the schema without running
the script fails here, naming the stale files and the command that fixes them.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from koma.settings import KomaSettings, sensitive_keys
from koma.settings.keys import leaf_fields

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_settings", ROOT / "scripts" / "gen_settings.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_settings", module)
    spec.loader.exec_module(module)
    return module


def test_generated_files_match_the_schema(gen: ModuleType) -> None:
    stale = [str(path.relative_to(ROOT)) for path in gen.stale()]
    assert not stale, f"{', '.join(stale)} drifted from the settings schema: run `{gen.COMMAND}`"


def test_a_changed_description_or_marker_makes_them_stale(
    gen: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = KomaSettings.model_fields["model"]
    monkeypatch.setattr(info, "description", "Another text.")
    assert set(gen.stale()) == {gen.MANIFEST, gen.PROTOCOL}
    # A key turned sensitive changes its VS Code scope, Restricted Mode and the key lists too.
    monkeypatch.setattr(info, "json_schema_extra", {"trust": "sensitive"})
    assert "model" in sensitive_keys()
    assert set(gen.stale()) == {gen.MANIFEST, gen.PROTOCOL, gen.KEYS_TS}


def test_every_key_is_described_for_the_people_who_set_it() -> None:
    for key, info in leaf_fields():
        assert info.description and info.description.endswith("."), key


def test_vscode_offers_every_editor_key_with_the_schemas_type_default_and_bounds(
    gen: ModuleType,
) -> None:
    properties = json.loads(gen.MANIFEST.read_text(encoding="utf-8"))["contributes"][
        "configuration"
    ]["properties"]
    # A few the Settings UI depends on: an enum with its descriptions, a nullable number with
    # an int's `gt=0` as minimum 1, a text box whose empty value means unset.
    effort = properties["koma.reasoningEffort.chat"]
    assert effort["enum"] == ["low", "medium", "high"] and effort["default"] == "high"
    assert len(effort["enumDescriptions"]) == 3
    assert properties["koma.chat.maxTokens"]["type"] == ["integer", "null"]
    assert properties["koma.chat.maxTokens"]["minimum"] == 1
    assert properties["koma.model"] == {
        "type": "string",
        "default": "",
        "scope": "window",
        "markdownDescription": KomaSettings.model_fields["model"].description,
    }
    assert properties["koma.gpu.numGpu"]["scope"] == "machine-overridable"
    assert "koma.apiKey" not in properties  # settings.json is synced and shared
    # The extension's own settings are kept, marked client-only in the generator.
    assert properties["koma.server.command"]["scope"] == "machine"
    assert set(gen.CLIENT_SETTINGS) == {
        key.removeprefix("koma.")
        for key in properties
        if key.removeprefix("koma.") not in {k for k, _ in leaf_fields()}
    }


def test_the_check_command_names_the_stale_files_and_the_fix(
    gen: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert gen.main(["--check"]) == 0
    monkeypatch.setattr(KomaSettings.model_fields["num_ctx"], "description", "x.")
    assert gen.main(["--check"]) == 1  # and writes nothing
    out = capsys.readouterr().out
    assert "clients/vscode/package.json is out of date: run `python scripts/gen_settings.py`" in out
    assert "docs/protocol.md is out of date" in out

"""The VS Code extension's manifest against the server's settings schema.

`koma.settings.sensitive_keys()` is the one list of keys that choose where code goes or what
runs. VS Code must take every one of them from the user's own settings only (machine scope) and
list them as restricted in untrusted workspaces; a key added to the schema later fails here
until the extension covers it. The extension's unit tests check the rest of package.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from koma.settings import DEFAULT_SECRET_PATTERNS, sensitive_keys
from koma.settings.keys import leaf_fields
from koma.settings.markers import in_editor

MANIFEST = Path(__file__).resolve().parents[1] / "clients" / "vscode" / "package.json"
# Settings of the extension itself that choose the server program and its environment.
LAUNCH_KEYS = {"koma.server.command", "koma.server.args", "koma.server.env"}
# Keys the schema gives no editor setting (`in_editor=False`).
NOT_IN_VSCODE = {key for key, info in leaf_fields() if not in_editor(info)}


def manifest() -> dict[str, Any]:
    data = json.loads(MANIFEST.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_every_sensitive_key_is_a_user_only_restricted_setting() -> None:
    data = manifest()
    properties = data["contributes"]["configuration"]["properties"]
    restricted = set(data["capabilities"]["untrustedWorkspaces"]["restrictedConfigurations"])
    covered = {f"koma.{key}" for key in sensitive_keys() if key not in NOT_IN_VSCODE}
    for name in sorted(covered):
        assert name in properties, f"{name} is sensitive but VS Code has no setting for it"
        assert properties[name]["scope"] == "machine", f"{name}: a workspace could set it"
    assert restricted - LAUNCH_KEYS == covered
    assert LAUNCH_KEYS <= restricted
    for key in NOT_IN_VSCODE:
        assert f"koma.{key}" not in properties


def test_the_secret_patterns_default_shown_is_the_servers() -> None:
    # Editing the setting starts from the default VS Code shows; a shorter list would quietly
    # drop the credential files the server hides by default.
    properties = manifest()["contributes"]["configuration"]["properties"]
    assert properties["koma.tools.secretPatterns"]["default"] == list(DEFAULT_SECRET_PATTERNS)


def test_only_the_api_key_stays_out_of_vscode() -> None:
    # settings.json is a plain file that is synced and shared; a key goes in the environment
    # (`koma.server.env`: KOMA_API_KEY) or the user's Koma config file. Any other key needs a
    # setting, or editor users could not set it at all.
    assert NOT_IN_VSCODE == {"apiKey"}

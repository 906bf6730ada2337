"""The trust split: every settings key is marked safe or sensitive in the schema itself."""

from __future__ import annotations

from pydantic import Field

from koma.settings import ToolSettings, _Camel, safe, sensitive, sensitive_keys, unmarked_keys


def test_every_settings_key_has_a_trust_marker() -> None:
    assert unmarked_keys() == []


def test_a_new_field_without_a_marker_is_caught() -> None:
    class Extended(_Camel):
        marked: int = safe(1)
        also: str = sensitive("x")
        forgotten: int = Field(default=3)
        bare: bool = True

    assert unmarked_keys(Extended) == ["forgotten", "bare"]


def test_keys_that_choose_where_data_goes_or_what_runs_are_sensitive() -> None:
    keys = set(sensitive_keys())
    must = {
        "provider",
        "baseUrl",
        "chat.systemPrompt",
        "tools.policies",
        "tools.runTestsCommand",
        "tools.secretPatterns",
    }
    assert must <= keys
    fields = ToolSettings.model_fields.items()
    tool_keys = {"tools." + (info.alias or name) for name, info in fields}
    assert tool_keys <= keys, "every tools.* key is sensitive"
    # Tuning keys stay usable from an untrusted project file.
    assert not {"model", "completionModel", "completion.maxTokens", "reasoningEffort.chat"} & keys

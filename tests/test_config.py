"""Settings resolution: precedence, file discovery, key spelling and error messages."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydantic import ValidationError

from koma.errors import ConfigError
from koma.settings import KomaSettings
from koma.settings.errors import format_validation_error
from koma.settings.files import find_project_config, trust_store, user_config_path
from koma.settings.keys import normalize_keys
from koma.settings.layers import load_settings


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """A repository with a nested working folder and a user config outside it."""
    repo = tmp_path / "repo"
    work = repo / "src" / "pkg"
    work.mkdir(parents=True)
    (repo / ".git").mkdir()
    user = tmp_path / "home" / "config.toml"
    user.parent.mkdir()
    return {"repo": repo, "work": work, "user": user}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def trust(path: Path, env: dict[str, str]) -> None:
    """Record trust in `path` as it is now, as `koma trust --yes` would."""
    real = path.resolve()
    trust_store(env).trust(real, hashlib.sha256(real.read_bytes()).hexdigest())


def test_defaults_when_nothing_is_configured(layout: dict[str, Path]) -> None:
    settings = load_settings(cwd=layout["work"], env={"KOMA_CONFIG": str(layout["user"])})
    assert settings == KomaSettings()
    assert settings.provider == "auto"
    assert settings.reasoning_effort.chat == "high"


def test_each_layer_wins_over_the_ones_below(layout: dict[str, Path]) -> None:
    write(
        layout["user"],
        'provider = "lmstudio"\nmodel = "user-model"\nbase_url = "http://127.0.0.1:1"\n'
        'keep_alive = "1h"\nnum_ctx = 1000\n',
    )
    project = write(
        layout["repo"] / ".koma.toml",
        'model = "project-model"\nbaseUrl = "http://127.0.0.1:2"\nnumCtx = 2000\n',
    )
    trust(project, {"KOMA_CONFIG": str(layout["user"])})  # baseUrl is a sensitive key
    env = {
        "KOMA_CONFIG": str(layout["user"]),
        "KOMA_BASE_URL": "http://127.0.0.1:3",
        "KOMA_MODEL": "env-model",
    }
    settings = load_settings({"model": "flag-model"}, cwd=layout["work"], env=env)
    assert settings.model == "flag-model"  # flag beats env
    assert settings.base_url == "http://127.0.0.1:3"  # env beats project
    assert settings.num_ctx == 2000  # project beats user
    assert settings.provider == "lmstudio"  # user beats default
    assert settings.keep_alive == "1h"

    without_flag = load_settings(cwd=layout["work"], env=env)
    assert without_flag.model == "env-model"
    without_env = load_settings(cwd=layout["work"], env={"KOMA_CONFIG": str(layout["user"])})
    assert without_env.model == "project-model"
    assert without_env.base_url == "http://127.0.0.1:2"


def test_nested_tables_merge_instead_of_replacing(layout: dict[str, Path]) -> None:
    write(layout["user"], '[reasoning_effort]\nchat = "medium"\n[completion]\nmax_tokens = 64\n')
    project = write(
        layout["repo"] / ".koma.toml",
        '[reasoningEffort]\ncompletion = "medium"\n[tools.policies]\nrun_tests = "deny"\n',
    )
    trust(project, {"KOMA_CONFIG": str(layout["user"])})
    settings = load_settings(
        {"reasoningEffort": {"actions": "high"}},
        cwd=layout["work"],
        env={"KOMA_CONFIG": str(layout["user"])},
    )
    assert settings.reasoning_effort.model_dump() == {
        "completion": "medium",
        "actions": "high",
        "chat": "medium",
    }
    assert settings.completion.max_tokens == 64
    # One policy changed; the defaults of the other tools stay.
    assert settings.tools.policies["run_tests"] == "deny"
    assert settings.tools.policies["read_file"] == "allow"


def test_snake_and_camel_keys_are_equivalent_but_tool_names_are_kept() -> None:
    snake = normalize_keys(
        {
            "base_url": "http://x",
            "completion": {"debounce_ms": 5},
            "tools": {"policies": {"run_tests": "deny"}},
        }
    )
    assert snake == {
        "baseUrl": "http://x",
        "completion": {"debounceMs": 5},
        "tools": {"policies": {"run_tests": "deny"}},
    }
    assert load_settings({"keep_alive": 30}, env={"KOMA_CONFIG": "/nonexistent"}).keep_alive == 30


def test_none_in_overrides_means_not_given(layout: dict[str, Path]) -> None:
    env = {"KOMA_CONFIG": str(layout["user"]), "KOMA_MODEL": "env-model"}
    settings = load_settings({"model": None, "baseUrl": None}, cwd=layout["work"], env=env)
    assert settings.model == "env-model"


def test_empty_env_values_are_ignored_and_provider_is_case_insensitive(
    layout: dict[str, Path],
) -> None:
    env = {"KOMA_CONFIG": str(layout["user"]), "KOMA_MODEL": "  ", "KOMA_PROVIDER": "Ollama"}
    settings = load_settings(cwd=layout["work"], env=env)
    assert settings.model is None
    assert settings.provider == "ollama"


def test_project_file_search_stops_at_the_repository_root(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    repo = outer / "repo"
    (repo / "a" / "b").mkdir(parents=True)
    (repo / ".git").mkdir()
    write(outer / ".koma.toml", 'model = "outside"\n')
    assert find_project_config(repo / "a" / "b") is None
    inner = write(repo / "a" / ".koma.toml", 'model = "inside"\n')
    assert find_project_config(repo / "a" / "b") == inner
    # Without a repository only the folder itself counts: a .koma.toml in /tmp or
    # ~/Downloads must not configure every project below it.
    plain = tmp_path / "plain" / "deep"
    plain.mkdir(parents=True)
    write(tmp_path / ".koma.toml", 'model = "top"\n')
    assert find_project_config(plain) is None
    here = write(plain / ".koma.toml", 'model = "here"\n')
    assert find_project_config(plain) == here


def test_koma_table_in_a_file_is_accepted(layout: dict[str, Path]) -> None:
    write(
        layout["repo"] / ".koma.toml",
        '[koma]\nmodel = "gpt-oss:20b"\n[koma.reasoningEffort]\nchat = "low"\n',
    )
    settings = load_settings(cwd=layout["work"], env={"KOMA_CONFIG": str(layout["user"])})
    assert settings.model == "gpt-oss:20b"
    assert settings.reasoning_effort.chat == "low"


def test_user_config_path_defaults_to_the_platform_dir() -> None:
    assert user_config_path({"KOMA_CONFIG": "/tmp/x.toml"}) == Path("/tmp/x.toml")
    default = user_config_path({})
    assert default.name == "config.toml"
    assert default.parent.name == "koma"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[reasoningEffort]\nchat = "extreme"\n', ["reasoningEffort.chat", "'extreme'", "'low'"]),
        ("[completion]\nmax_tokens = 0\n", ["completion.maxTokens", "greater than 0"]),
        ('modle = "x"\n', ["unknown key 'modle'", "did you mean 'model'"]),
        ("[completion]\nmaxTokns = 3\n", ["completion.maxTokns", "'completion.maxTokens'"]),
        # A key in the wrong table points at the one it belongs in, not at a neighbour.
        ('[completion]\nmodel = "x"\n', ["'completion.model'", "did you mean 'completionModel'"]),
        ("[completion]\nzzzzz = 3\n", ["'completion.zzzzz'", "known keys: completion.enabled"]),
        ('completion = "fast"\n', ["completion must be a table"]),
        ("keep_alive = [1]\n", ["keepAlive", "string", "integer"]),
    ],
)
def test_invalid_file_values_name_file_key_and_allowed_values(
    layout: dict[str, Path], text: str, expected: list[str]
) -> None:
    project = write(layout["repo"] / ".koma.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_settings(cwd=layout["work"], env={"KOMA_CONFIG": str(layout["user"])})
    message = str(caught.value)
    assert str(project) in message
    for fragment in expected:
        assert fragment in message
    assert caught.value.exit_code == 2


def test_invalid_base_url_in_the_user_config_names_file_and_rule(layout: dict[str, Path]) -> None:
    write(layout["user"], 'base_url = "localhost:11434"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(cwd=layout["work"], env={"KOMA_CONFIG": str(layout["user"])})
    assert str(layout["user"]) in str(caught.value)
    assert "baseUrl" in str(caught.value) and "http://" in str(caught.value)


def test_invalid_values_from_env_and_flags_name_their_source(layout: dict[str, Path]) -> None:
    env = {"KOMA_CONFIG": str(layout["user"]), "KOMA_PROVIDER": "ollamma"}
    with pytest.raises(ConfigError, match=r"KOMA_PROVIDER.*provider = 'ollamma'.*'ollama'"):
        load_settings(cwd=layout["work"], env=env)
    with pytest.raises(ConfigError, match=r"command-line flags.*temperature"):
        load_settings(
            {"chat": {"temperature": 9}},
            cwd=layout["work"],
            env={"KOMA_CONFIG": str(layout["user"])},
        )


def test_bad_user_config_is_blamed_even_when_overridden(layout: dict[str, Path]) -> None:
    write(layout["user"], 'provider = "nope"\n')
    with pytest.raises(ConfigError, match=str(layout["user"])):
        load_settings(
            {"provider": "ollama"}, cwd=layout["work"], env={"KOMA_CONFIG": str(layout["user"])}
        )


def test_broken_toml_names_file_and_line(layout: dict[str, Path]) -> None:
    project = write(layout["repo"] / ".koma.toml", 'model = "a"\nprovider = \n')
    with pytest.raises(ConfigError) as caught:
        load_settings(cwd=layout["work"], env={"KOMA_CONFIG": str(layout["user"])})
    assert str(project) in str(caught.value)
    assert "line 2" in str(caught.value)


def test_config_file_that_is_not_utf8_is_a_config_error(layout: dict[str, Path]) -> None:
    project = layout["repo"] / ".koma.toml"
    project.write_bytes(b'model = "\xff\xfe"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(cwd=layout["work"], env={"KOMA_CONFIG": str(layout["user"])})
    assert str(project) in str(caught.value)
    assert "UTF-8" in str(caught.value)


def test_several_problems_are_all_listed(layout: dict[str, Path]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {"completion": {"debounceMs": "soon", "temperature": 5}},
            cwd=layout["work"],
            env={"KOMA_CONFIG": str(layout["user"])},
        )
    message = str(caught.value)
    assert message.startswith("2 invalid settings in command-line flags")
    assert "completion.debounceMs" in message
    assert "less than or equal to 2" in message


def test_format_validation_error_for_editor_settings() -> None:
    with pytest.raises(ValidationError) as caught:
        KomaSettings.model_validate(
            {"reasoningEffort": {"chat": "max"}, "completion": {"cacheSize": -1}}
        )
    text = format_validation_error(caught.value, "workspace/configuration")
    lines = text.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("workspace/configuration: ") for line in lines)
    assert any("reasoningEffort.chat = 'max'" in line and "'low'" in line for line in lines)
    assert any("completion.cacheSize" in line for line in lines)

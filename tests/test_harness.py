"""The test harness itself: a developer's own Koma settings do not change what the tests see.

Tests that call Koma in-process (`koma.generate_text` without settings, a `Session`) read the
settings the way a user's program does. Run with a hostile shell — `KOMA_*` variables and a
user `config.toml` pointing at a dead server, another model, a 3-token limit — they must still
pass, for the reason they pass in CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

HOSTILE_CONFIG = """\
provider = "openai"
baseUrl = "http://127.0.0.1:9"
model = "hostile-model"
[chat]
maxTokens = 3
systemPrompt = "HOSTILE"
[cache]
mode = "always"
"""

# In-process tests that read settings without writing all of them (they failed here once).
SETTINGS_READERS = [
    "tests/test_session.py::test_a_retired_provider_finishes_its_stream_then_is_closed",
    "tests/test_generate.py::test_openai_wire_with_reasoning_content_and_raw_harmony",
]


def test_a_developers_settings_do_not_leak_into_in_process_tests(tmp_path: Path) -> None:
    config_home = tmp_path / "config"
    (config_home / "koma").mkdir(parents=True)
    (config_home / "koma" / "config.toml").write_text(HOSTILE_CONFIG, encoding="utf-8")
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(config_home),  # the user's ~/.config/koma/config.toml
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "KOMA_PROVIDER": "openai",
        "KOMA_BASE_URL": "http://127.0.0.1:9",
        "KOMA_MODEL": "hostile-env-model",
        "KOMA_API_KEY": "sk-hostile",
    }
    env.pop("KOMA_CONFIG", None)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SETTINGS_READERS],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "2 passed" in run.stdout

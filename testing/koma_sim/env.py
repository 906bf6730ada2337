"""The environment for a `koma` process run against the simulator by tests and benchmarks.

Such a process must not pick up the user's config file, their `KOMA_*` variables or their
caches, and must reach loopback without a proxy.
"""

from __future__ import annotations

import os
from pathlib import Path


def isolated_env(home: Path) -> dict[str, str]:
    """This process's environment minus `KOMA_*`, with home, config and caches under `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOMA_")}
    env.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "KOMA_CONFIG": str(home / "no-config.toml"),
            "NO_PROXY": "127.0.0.1,localhost",
        }
    )
    return env

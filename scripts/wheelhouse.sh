#!/usr/bin/env bash
# Prints a directory of wheels of Koma's runtime dependencies (Koma itself not included), for
# the tests that install Koma the way the editors do but offline: `pip install --no-index
# --find-links DIR koma_lsp-….whl`. Built once per list of dependencies (pyproject.toml's
# [project] dependencies) and Python version, cached in $KOMA_WHEELHOUSE_CACHE (default
# ~/.cache/koma-wheelhouse); the first build needs the index.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python}"
mapfile -t requirements < <("$python" -c \
    'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')
key="$({ "$python" -c 'import sys; print(sys.version_info[:2])'; printf '%s\n' "${requirements[@]}"; } |
    sha256sum | cut -c1-16)"
dir="${KOMA_WHEELHOUSE_CACHE:-$HOME/.cache/koma-wheelhouse}/$key"
if [[ ! -f "$dir/.complete" ]]; then
    rm -rf "$dir"
    mkdir -p "$dir"
    "$python" -m pip wheel -q --disable-pip-version-check --wheel-dir "$dir" "${requirements[@]}" \
        >"$dir.log" 2>&1 || { cat "$dir.log" >&2; exit 1; }
    touch "$dir/.complete"
fi
echo "$dir"

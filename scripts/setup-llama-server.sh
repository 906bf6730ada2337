#!/usr/bin/env bash
# Builds llama.cpp's own C++ `llama-server` for the live tests, from the llama.cpp source that the
# pinned llama-cpp-python sdist vendors (tools/server included), with portable CPU flags and no
# web UI, into a cache directory outside the repository.
#
# Why this server: users run it far more than llama-cpp-python's, and only it has `/infill`,
# `timings` and `cache_n`, which the fill-in-the-middle route and the benchmarks use.
#
# Idempotent: the binary is kept under a directory named after the sdist version and skipped when
# present, so a second run takes well under a second. Nothing is downloaded except the sdist from
# the Python package index (pip download). Prints the binary's path on stdout.
#
# usage: scripts/setup-llama-server.sh   (KOMA_LLAMA_SERVER_DIR overrides the cache directory;
#        KOMA_BUILD_JOBS the number of compile jobs, default 2)
set -euo pipefail

VERSION=0.3.36
DIR="${KOMA_LLAMA_SERVER_DIR:-/root/.cache/koma-llama-server}/$VERSION"
BIN="$DIR/bin/llama-server"
log() { printf '[setup-llama-server] %s\n' "$*" >&2; }

if [[ -x "$BIN" ]] && "$BIN" --version >/dev/null 2>&1; then
  log "llama-server from llama-cpp-python $VERSION present"
  echo "$BIN"
  exit 0
fi

mkdir -p "$DIR"
cd "$DIR"
if [[ ! -d src ]]; then
  log "downloading the llama-cpp-python $VERSION sdist"
  python -m pip download --quiet --no-deps --no-binary :all: --dest sdist "llama-cpp-python==$VERSION"
  rm -rf src.tmp && mkdir src.tmp
  tar -xzf sdist/llama_cpp_python-"$VERSION".tar.gz -C src.tmp
  mv src.tmp/llama_cpp_python-"$VERSION"/vendor/llama.cpp src
  rm -rf src.tmp
fi

log "building llama-server (a few minutes on two cores)"
cmake -S src -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON >&2
cmake --build build --target llama-server -j "${KOMA_BUILD_JOBS:-2}" >&2
mkdir -p bin
cp build/bin/llama-server bin/llama-server.tmp && mv bin/llama-server.tmp "$BIN"
"$BIN" --version >&2
echo "$BIN"

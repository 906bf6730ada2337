#!/usr/bin/env bash
# Installs Koma with the embedded model runtime. llama.cpp is compiled from source by pip the
# first time (a few minutes; pip's wheel cache serves it afterwards). The build is portable
# (AVX2): a native build may use CPU features that a virtual machine advertises but faults on.
# Usage: scripts/install.sh [EXTRA ...]   e.g. scripts/install.sh dev
# `dev` also installs testing/ (koma-testing: the loopback simulator the tests and benchmarks run
# against), editable: a PEP 508 extra cannot name a path in this checkout, so it is a second
# requirement of the same pip run.
set -euo pipefail
cd "$(dirname "$0")/.."
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# The Python to install into: an activated virtual environment's (its `python3` is its own),
# else the system's `python3` (Debian, Ubuntu and macOS have no `python` outside a virtual
# environment). PYTHON=/path/to/python chooses another.
python="${PYTHON:-$(command -v python3 || command -v python || true)}"
if [[ -z "$python" ]]; then
    echo "install.sh: no python3 on PATH; Koma needs Python 3.11 or newer" >&2
    exit 1
fi
extras="embedded"
testing=()
for extra in "$@"; do
    extras="$extras,$extra"
    if [[ "$extra" == dev ]]; then testing=(-e ./testing); fi
done
# Until 0.1.0 the distribution was called "koma" (a name that belongs to an unrelated project on
# PyPI): drop such an editable install of this checkout, so `koma` has one owner.
if "$python" -m pip show koma 2>/dev/null | grep -qx "Editable project location: $PWD"; then
    "$python" -m pip uninstall -q -y koma
fi
"$python" -m pip install -q -e ".[$extras]" "${testing[@]}"

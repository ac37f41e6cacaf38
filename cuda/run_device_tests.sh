#!/usr/bin/env bash
# Builds the cuda/ device tests with nvcc directly and runs them on the GPU: the same test sources
# the CPU suite runs under Thrust's OMP system (tests/core, tests/rl, tests/sample), compiled for
# sm_90. Catch2 v2's single header is taken from the system or, on a machine that ships Catch2 v3
# (Ubuntu 24.04 GPU images), from .cache/catch2v2 (stage it from a Debian 12 machine with
#   mkdir -p .cache/catch2v2/catch2 && cp /usr/include/catch2/catch.hpp .cache/catch2v2/catch2/).
# Usage: cuda/run_device_tests.sh [catch2-args...]
set -euo pipefail
cd "$(dirname "$0")/.."
B=build/gpu
mkdir -p "$B"
CATCH_INC=.cache/catch2v2
[ -f "$CATCH_INC/catch2/catch.hpp" ] || CATCH_INC=/usr/include
grep -q "Catch v2" "$CATCH_INC/catch2/catch.hpp" 2>/dev/null || { echo "Catch2 v2 header not found (see the comment above)" >&2; exit 2; }
# nvcc 13 with g++ 13 rejects libstdc++ 13's std::span in xplor's signatures; use g++ 12 when present.
HOSTCXX=$(command -v g++-12 || command -v g++)
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
printf '#define CATCH_CONFIG_MAIN\n#include <catch2/catch.hpp>\n' > "$B/main.cpp"
pids=()
"$HOSTCXX" -std=c++20 -O2 -I"$CATCH_INC" -c "$B/main.cpp" -o "$B/main.o" & pids+=($!)
for f in core rl sample; do
  "$NVCC" -ccbin "$HOSTCXX" -std=c++20 -O2 -arch=sm_90 --expt-relaxed-constexpr -Iinclude -I"$CATCH_INC" \
    -x cu -c "cuda/tests/${f}_device_test.cu" -o "$B/$f.o" & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
"$NVCC" -ccbin "$HOSTCXX" -arch=sm_90 "$B/main.o" "$B/core.o" "$B/rl.o" "$B/sample.o" -o "$B/xplor_cuda_device_tests"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
"$B/xplor_cuda_device_tests" --durations yes "$@"

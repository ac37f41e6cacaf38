#!/usr/bin/env bash
# Builds and runs xplor's whole test suite; installs missing Debian packages first.
#   1. Release build: unit tests (CPU and Thrust-OMP device backend), examples, benchmark smoke
#      runs, the header self-containment check and the find_package/add_subdirectory consumers.
#   2. AddressSanitizer + UBSan build of the unit tests.
#   3. nvcc compile-only build of cuda/ (when nvcc is installed; running it needs a GPU).
# Usage: scripts/run_tests.sh   (XPLOR_JOBS=N to change the parallelism, default 2)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
jobs=${XPLOR_JOBS:-2}
cd "$root"
bash scripts/setup.sh
# ctest runs $jobs tests at once: one OpenMP thread per test avoids oversubscribing the cores
# (spinning OpenMP threads slow an oversubscribed machine down tenfold). Tests of threading ask
# for their thread counts explicitly.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

step() { printf '\n== %s ==\n' "$*"; }

step "release build and tests"
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release --log-level=WARNING
cmake --build build/release -j "$jobs"
ctest --test-dir build/release -j "$jobs" --output-on-failure

step "AddressSanitizer + UBSan build and unit tests"
cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" -DXPLOR_SANITIZE=ON \
      -DXPLOR_BUILD_EXAMPLES=OFF -DXPLOR_BUILD_BENCHMARKS=OFF --log-level=WARNING
cmake --build build/asan -j "$jobs"
ctest --test-dir build/asan -j "$jobs" --output-on-failure -L unit

if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  step "nvcc compile-only build of cuda/ (sm_${XPLOR_CUDA_ARCH:-90})"
  nvcc_path=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
  cmake -S . -B build/cuda -DCMAKE_BUILD_TYPE=Release -DXPLOR_ENABLE_CUDA=ON \
        -DCMAKE_CUDA_COMPILER="$nvcc_path" -DXPLOR_CUDA_ARCHITECTURES="${XPLOR_CUDA_ARCH:-90}" \
        -DXPLOR_BUILD_TESTS=OFF -DXPLOR_BUILD_EXAMPLES=OFF -DXPLOR_BUILD_BENCHMARKS=OFF --log-level=WARNING
  cmake --build build/cuda -j "$jobs"
else
  step "nvcc not found: skipping the compile-only build of cuda/"
fi

fuzz_cxx=$(command -v clang++-14 || command -v clang++ || true)
if [ -n "$fuzz_cxx" ]; then
  step "libFuzzer: answer checker (tests/fuzz, 60 s on a copy of the corpus, $(basename "$fuzz_cxx"))"
  cmake -S tests/fuzz -B build/fuzz -DCMAKE_CXX_COMPILER="$fuzz_cxx" -DCMAKE_BUILD_TYPE= --log-level=WARNING
  cmake --build build/fuzz -j "$jobs"
  rm -rf build/fuzz/corpus build/fuzz/large && cp -r tests/fuzz/corpus/verify build/fuzz/corpus
  # Megabyte inputs (generated, not committed) run whole first, since the fuzzing run truncates
  # inputs to -max_len: the parser must stay linear in nested braces and unbalanced \frac.
  mkdir -p build/fuzz/large
  head -c 1048576 /dev/zero | tr '\0' '{' > build/fuzz/large/open_braces
  { printf '\\boxed'; head -c 1048576 /dev/zero | tr '\0' '{'; } > build/fuzz/large/boxed_open
  head -c 174762 /dev/zero | tr '\0' 'x' | sed 's/x/\\frac{/g' > build/fuzz/large/frac
  build/fuzz/verify_fuzz -timeout=5 -rss_limit_mb=2048 build/fuzz/large/*
  build/fuzz/verify_fuzz build/fuzz/corpus -max_total_time=60 -max_len=65536 -timeout=5 -rss_limit_mb=2048 \
    -artifact_prefix=build/fuzz/
else
  step "libFuzzer: clang++ not found: skipping the fuzzing of the answer checker"
fi
step "ThreadSanitizer: vector_env worker pool (xplor_env_core_tests [threads])"
cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS="-fsanitize=thread" \
      -DXPLOR_BUILD_EXAMPLES=OFF -DXPLOR_BUILD_BENCHMARKS=OFF --log-level=WARNING
cmake --build build/tsan -j "$jobs" --target xplor_env_core_tests
TSAN_OPTIONS=halt_on_error=1 build/tsan/tests/xplor_env_core_tests "[threads]"
step "all test stages passed"

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
step "all test stages passed"

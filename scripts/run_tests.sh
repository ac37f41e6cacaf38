#!/usr/bin/env bash
# Builds and runs xplor's whole test suite; installs missing Debian packages first.
#   1. Release build: unit tests (CPU and Thrust-OMP device backend), examples, benchmark smoke
#      runs, the header self-containment check and the find_package/add_subdirectory consumers.
#   2. The Python package: a wheel built with nanobind + scikit-build-core, installed into a fresh
#      venv (scripts/setup_python.sh), its pytest suite run against the installed wheel.
#   3. libtorch (scripts/setup.sh torch installs Debian's libtorch-dev): the release build again
#      with -DXPLOR_WITH_TORCH=ON, the torch adapter tests and examples/libtorch_grpo --quick.
#   4. MPI (scripts/setup.sh mpi installs OpenMPI): the dist/ scenarios under mpiexec on 1, 2 and
#      4 ranks, a rank failing mid-run, the distributed knapsack benchmark's smoke run and
#      multirank_grpo --quick on 1, 2 and 4 ranks compared with the 1-rank checkpoint.
#   5. AddressSanitizer + UBSan build of the unit tests.
#   6. nvcc compile-only build of cuda/ (when nvcc is installed; running it needs a GPU).
#   7. clang UBSan (with float-cast-overflow) on the core, sample, rl and budget unit tests.
#   8. libFuzzer: the answer checker, answers_equivalent, safetensors/checkpoints, the solution
#      cache, the calculator and the tool-call parser, a short run each (clang).
#   9. ThreadSanitizer on the threaded environment tests and the thread-rank communicator.
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

step "Python package: wheel into a fresh venv, pytest against the installed wheel"
venv_python=$(bash scripts/setup_python.sh | tail -1)
# From build/, so that `import xplor` finds the installed wheel and not python/xplor.
(cd build && "$venv_python" -m pytest -q -p no:cacheprovider "$root/python/tests")

step "libtorch: torch views, the torch GPT as a decode policy, examples/libtorch_grpo --quick"
bash scripts/setup.sh torch
cmake -S . -B build/release -DXPLOR_WITH_TORCH=ON --log-level=WARNING
cmake --build build/release -j "$jobs" --target xplor_header_check_torch xplor_torch_tests libtorch_grpo
ctest --test-dir build/release -j "$jobs" --output-on-failure -R '^torch\.|^example\.libtorch'

step "MPI: dist/ and multirank_grpo on 1, 2 and 4 ranks under mpiexec, and a rank failing mid-run"
bash scripts/setup.sh mpi
cmake -S . -B build/release --log-level=WARNING
cmake --build build/release -j "$jobs" --target xplor_header_check_mpi xplor_dist_mpi_check bench_dist_knapsack multirank_grpo
ctest --test-dir build/release -j "$jobs" --output-on-failure -L '^mpi$'

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
  # clang's UBSan checks float-to-int conversions (-fsanitize=float-cast-overflow), which g++'s
  # -fsanitize=undefined above does not: the unit tests of the code that converts floats to
  # integers (numerics' exp_fast, the samplers, the losses, the knapsack's costs).
  step "clang UBSan with float-cast-overflow: core, sample, rl and budget unit tests ($(basename "$fuzz_cxx"))"
  cmake -S . -B build/ubsan-clang -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER="$fuzz_cxx" \
        -DCMAKE_CXX_FLAGS_DEBUG="-g -O1 -fsanitize=undefined,float-cast-overflow -fno-sanitize-recover=all" \
        -DXPLOR_BUILD_EXAMPLES=OFF -DXPLOR_BUILD_BENCHMARKS=OFF --log-level=WARNING
  cmake --build build/ubsan-clang -j "$jobs" \
        --target xplor_core_tests xplor_sample_tests xplor_rl_tests xplor_budget_tests
  for t in core sample rl budget; do
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 build/ubsan-clang/tests/xplor_${t}_tests
  done

  step "libFuzzer: answer checker, loaders, calculator, tool calls (tests/fuzz, $(basename "$fuzz_cxx"))"
  cmake -S tests/fuzz -B build/fuzz -DCMAKE_CXX_COMPILER="$fuzz_cxx" -DCMAKE_BUILD_TYPE= --log-level=WARNING
  cmake --build build/fuzz -j "$jobs"
  # Megabyte inputs (generated, not committed) run whole first, since the fuzzing run truncates
  # inputs to -max_len: the parsers must stay linear in nested braces and unbalanced \frac, and
  # the loaders must not recurse over nested JSON.
  rm -rf build/fuzz/large && mkdir -p build/fuzz/large
  head -c 1048576 /dev/zero | tr '\0' '{' > build/fuzz/large/open_braces
  { printf '\\boxed'; head -c 1048576 /dev/zero | tr '\0' '{'; } > build/fuzz/large/boxed_open
  head -c 174762 /dev/zero | tr '\0' 'x' | sed 's/x/\\frac{/g' > build/fuzz/large/frac
  { printf '{"id":"a","solutions":'; head -c 1000000 /dev/zero | tr '\0' '['; } > build/fuzz/large/nested_arrays
  fuzz_options=(-timeout=10 -rss_limit_mb=2048)
  build/fuzz/verify_fuzz "${fuzz_options[@]}" build/fuzz/large/*
  for target in equivalent cache calculator tool_call safetensors; do
    build/fuzz/${target}_fuzz "${fuzz_options[@]}" build/fuzz/large/*
  done
  # Each target fuzzes a copy of its regression corpus (tests/fuzz/corpus/<name>) with inputs up
  # to 1 MB: the answer checker for 60 s, the others for ${XPLOR_FUZZ_SECONDS:-15} s each.
  fuzz() {
    local target=$1 corpus=$2 seconds=$3
    rm -rf "build/fuzz/corpus_$corpus" && cp -r "tests/fuzz/corpus/$corpus" "build/fuzz/corpus_$corpus"
    build/fuzz/${target}_fuzz "build/fuzz/corpus_$corpus" -max_total_time="$seconds" -max_len=1048576 \
      "${fuzz_options[@]}" -artifact_prefix="build/fuzz/${target}-"
  }
  fuzz verify verify 60
  for target in equivalent cache calculator tool_call safetensors; do
    fuzz "$target" "$target" "${XPLOR_FUZZ_SECONDS:-15}"
  done
else
  step "clang++ not found: skipping the clang UBSan stage and the fuzzing"
fi
step "ThreadSanitizer: vector_env worker pool and the thread-rank communicator"
cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS="-fsanitize=thread" \
      -DXPLOR_BUILD_EXAMPLES=OFF -DXPLOR_BUILD_BENCHMARKS=OFF --log-level=WARNING
cmake --build build/tsan -j "$jobs" --target xplor_env_core_tests xplor_dist_tests
TSAN_OPTIONS=halt_on_error=1 build/tsan/tests/xplor_env_core_tests "[threads]"
# One OpenMP thread: libgomp is not instrumented, so TSan cannot see its barriers and reports the
# team's writes as races with the rank thread that reads them after the parallel region.
OMP_NUM_THREADS=1 TSAN_OPTIONS=halt_on_error=1 build/tsan/tests/xplor_dist_tests
step "all test stages passed"

#!/usr/bin/env bash
# Builds (nvcc directly, in parallel) and runs every device test and benchmark on the GPU, then
# prints a short markdown table: device-vs-CPU agreement, sampling throughput against a device
# copy of the same bytes, training-step tokens/s and TFLOP/s against cuBLAS on the same shapes.
#   tests:  cuda/tests/{core,rl,sample,reward,budget}_device_test.cu (the Thrust device backend),
#           cuda/tests/rl_peer_golden_test.cu (TRL's and verl's goldens on the GPU),
#           cuda/tests/sample_kernel_test.cu (one-block-per-row sampler == CPU sampler),
#           cuda/tests/model_gpu_test.cu + model_reference.cpp (GPU transformer == CPU model)
#   bench:  cuda/benchmarks/gpu_bench.cu
# Catch2 v2's single header comes from the system or .cache/catch2v2, Eigen from the system or
# .cache/eigen3 (stage them from a Debian 12 machine:
#   mkdir -p .cache/catch2v2/catch2 && cp /usr/include/catch2/catch.hpp .cache/catch2v2/catch2/
#   mkdir -p .cache/eigen3 && cp -r /usr/include/eigen3/Eigen .cache/eigen3/), so carry .cache.
# Usage: cuda/run_device_checks.sh [--build-only] [--quick]   (about 1 minute on an H200, 16 cores)
set -uo pipefail
cd "$(dirname "$0")/.."
build_only=0
quick=""
for a in "$@"; do
  case "$a" in
    --build-only) build_only=1 ;;
    --quick) quick="--quick" ;;
    *) echo "unknown argument $a" >&2; exit 2 ;;
  esac
done
B=build/gpu
mkdir -p "$B"
t0=$(date +%s)
CATCH_INC=.cache/catch2v2
[ -f "$CATCH_INC/catch2/catch.hpp" ] || CATCH_INC=/usr/include
grep -q "Catch v2" "$CATCH_INC/catch2/catch.hpp" 2>/dev/null || { echo "Catch2 v2 header not found (see the comment above)" >&2; exit 2; }
EIGEN_INC=/usr/include/eigen3
[ -f "$EIGEN_INC/Eigen/Core" ] || EIGEN_INC=.cache/eigen3
[ -f "$EIGEN_INC/Eigen/Core" ] || { echo "Eigen 3 headers not found (see the comment above)" >&2; exit 2; }
# nvcc 13 with g++ 13 rejects libstdc++ 13's std::span in xplor's signatures; use g++ 12 when present.
HOSTCXX=$(command -v g++-12 || command -v g++)
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
NVFLAGS=(-ccbin "$HOSTCXX" -std=c++20 -O2 -arch=sm_90 --expt-relaxed-constexpr -Werror=all-warnings -Iinclude)
echo "== build ($("$NVCC" --version | tail -1), host $("$HOSTCXX" --version | head -1))"
printf '#define CATCH_CONFIG_MAIN\n#include <catch2/catch.hpp>\n' > "$B/main.cpp"
pids=()
names=()
job() {  # job NAME COMMAND...: runs in the background, log in $B/NAME.log
  local name=$1
  shift
  ("$@" > "$B/$name.log" 2>&1) &
  pids+=($!)
  names+=("$name")
}
job main "$HOSTCXX" -std=c++20 -O2 -I"$CATCH_INC" -c "$B/main.cpp" -o "$B/main.o"
for f in core_device rl_device sample_device reward_device budget_device search_device sample_kernel model_gpu; do
  job "${f%_device}" "$NVCC" "${NVFLAGS[@]}" -I"$CATCH_INC" -x cu -c "cuda/tests/${f}_test.cu" -o "$B/${f%_device}.o"
done
job rl_peer "$NVCC" "${NVFLAGS[@]}" -I"$CATCH_INC" -DXPLOR_TEST_SOURCE_DIR="\"$PWD/tests\"" -x cu \
  -c cuda/tests/rl_peer_golden_test.cu -o "$B/rl_peer.o"
job model_reference "$HOSTCXX" -std=c++20 -O2 -Iinclude -isystem "$EIGEN_INC" -c cuda/tests/model_reference.cpp \
  -o "$B/model_reference.o"
job gpu_bench "$NVCC" "${NVFLAGS[@]}" -x cu -c cuda/benchmarks/gpu_bench.cu -o "$B/gpu_bench.o"
failed=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "build of ${names[$i]} failed:" >&2
    cat "$B/${names[$i]}.log" >&2
    failed=1
  fi
done
[ "$failed" = 0 ] || exit 1
"$NVCC" -ccbin "$HOSTCXX" -arch=sm_90 "$B/main.o" "$B/core.o" "$B/rl.o" "$B/rl_peer.o" "$B/sample.o" "$B/reward.o" "$B/budget.o" "$B/search.o" -o "$B/xplor_cuda_device_tests" &&
  "$NVCC" -ccbin "$HOSTCXX" -arch=sm_90 "$B/main.o" "$B/sample_kernel.o" "$B/model_gpu.o" "$B/model_reference.o" \
    -lcublas -o "$B/xplor_cuda_gpu_tests" &&
  "$NVCC" -ccbin "$HOSTCXX" -arch=sm_90 "$B/gpu_bench.o" -lcublas -o "$B/xplor_cuda_bench" || exit 1
echo "built in $(( $(date +%s) - t0 )) s"
[ "$build_only" = 1 ] && exit 0

status=0
run() {  # run NAME COMMAND...: output to the terminal and $B/NAME.out
  local name=$1
  shift
  echo "== $name"
  "$@" 2>&1 | tee "$B/$name.out"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || { echo "!! $name exited with $rc" >&2; status=1; }
}
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo "unknown GPU")
echo "== GPU: $gpu"
run device_tests "$B/xplor_cuda_device_tests" --durations yes
run gpu_tests "$B/xplor_cuda_gpu_tests" --durations yes
run bench "$B/xplor_cuda_bench" $quick

summary() {  # the Catch2 summary line of a run
  grep -E "All tests passed|test cases:|assertions:" "$B/$1.out" 2>/dev/null | tail -2 | tr '\n' ' ' | sed 's/|/\//g'
}
tbl() { grep -F "[table] $1" "$B/$2.out" 2>/dev/null | sed "s/^\[table\] //; s/|/\//g"; }
echo
echo "## Device checks: $gpu ($(date -u +%Y-%m-%d), $(( $(date +%s) - t0 )) s with the build)"
echo
echo "| check | result |"
echo "|---|---|"
echo "| Thrust device backend == CPU (core, rl, sample, reward, budget), rl == TRL / verl goldens | $(summary device_tests) |"
echo "| GPU sampler + GPU transformer == CPU | $(summary gpu_tests) |"
echo "| GPU sampler tokens | $(grep -F "[gpu sample]" "$B/gpu_tests.out" | sed 's/\[gpu sample\] //') bit for bit (see failures above otherwise) |"
tbl "model " gpu_tests | while read -r l; do echo "| transformer ${l%%:*} | max rel. err: ${l#*: } |"; done
tbl "decode " gpu_tests | while read -r l; do echo "| KV decode ${l%%:*} | max rel. err: ${l#*: } |"; done
tbl "device " bench | while read -r l; do echo "| bench device | $l |"; done
tbl "sampling" bench | while read -r l; do echo "| ${l%%:*} | ${l#*: } |"; done
tbl "training" bench | while read -r l; do echo "| ${l%%:*} | ${l#*: } |"; done
tbl "knapsack" bench | while read -r l; do echo "| ${l%%:*} | ${l#*: } |"; done
tbl "trees" bench | while read -r l; do echo "| ${l%%:*} | ${l#*: } |"; done
exit $status

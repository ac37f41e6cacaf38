#!/usr/bin/env bash
# Builds and runs every benchmark (5 repetitions, medians) with OMP_NUM_THREADS=1 and =2, writes
# each program's JSON to bench-results/<program>.t<threads>.json and a table of medians, same-run
# ratios and counters to bench-results/summary.md.
# Usage: scripts/run_benchmarks.sh [build-dir] [benchmark-filter]  (default: build/release, all)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-"$root/build/release"}
filter=${2:-.}
out="$root/bench-results"
bash "$root/scripts/setup.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DXPLOR_BUILD_BENCHMARKS=ON >/dev/null
cmake --build "$build" -j2
mkdir -p "$out"
jsons=()
for threads in 1 2; do
  for b in "$build"/benchmarks/bench_*; do
    name=$(basename "$b")
    [ -x "$b" ] && [ "$name" != bench_summary ] || continue
    echo "running $name with OMP_NUM_THREADS=$threads" >&2
    OMP_NUM_THREADS=$threads "$b" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
      --benchmark_filter="$filter" --benchmark_out="$out/$name.t$threads.json" --benchmark_out_format=json >/dev/null
    jsons+=("$out/$name.t$threads.json")
  done
done
"$build/benchmarks/bench_summary" "${jsons[@]}" | tee "$out/summary.md"

#!/usr/bin/env bash
# Builds and runs every benchmark (5 repetitions, medians), writes each program's JSON to
# bench-results/ and a table of medians and same-run ratios to bench-results/summary.md.
# Usage: scripts/run_benchmarks.sh [build-dir] (default: build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-"$root/build"}
out="$root/bench-results"
bash "$root/scripts/setup.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DXPLOR_BUILD_BENCHMARKS=ON >/dev/null
cmake --build "$build" -j2
mkdir -p "$out"
jsons=()
for b in "$build"/benchmarks/bench_*; do
  name=$(basename "$b")
  [ -x "$b" ] && [ "$name" != bench_summary ] || continue
  echo "running $name" >&2
  "$b" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
       --benchmark_out="$out/$name.json" --benchmark_out_format=json >/dev/null
  jsons+=("$out/$name.json")
done
"$build/benchmarks/bench_summary" "${jsons[@]}" | tee "$out/summary.md"

#!/usr/bin/env bash
# Builds and runs xplor's main example, rlvr_arithmetic (SFT then GRPO with the TruthRL ternary and
# the binary reward on the reference transformer), with its defaults; installs missing Debian
# packages first. Extra arguments go to the example (try --help). Output: rlvr_out/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release --log-level=WARNING
cmake --build build/release -j "${XPLOR_JOBS:-2}" --target rlvr_arithmetic core_tour
exec build/release/examples/rlvr_arithmetic "$@"

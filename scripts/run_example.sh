#!/usr/bin/env bash
# Builds and runs xplor's main example with its defaults; installs missing Debian packages first.
# Extra arguments go to the example (try --help).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release --log-level=WARNING
cmake --build build/release -j "${XPLOR_JOBS:-2}" --target core_tour
exec build/release/examples/core_tour "$@"

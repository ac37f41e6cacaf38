#!/usr/bin/env bash
# Installs libtorch for xplor's libtorch stage (tests/torch and examples/libtorch_grpo, built with
# -DXPLOR_WITH_TORCH=ON), only when missing; runs scripts/setup.sh first. About 200 packages.
#   libtorch-dev          Debian's PyTorch 1.13 C++ API (CPU)
#   libopenblas0-openmp   the BLAS libtorch's matrix products call: without it Debian resolves
#                         libblas.so.3 to the reference BLAS, about 4x slower here; the OpenMP
#                         build follows torch::set_num_threads
# Usage: scripts/setup_torch.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
missing=()
for p in libtorch-dev libopenblas0-openmp; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "xplor setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "xplor setup: apt-get failed (log above)" >&2
  exit 1
fi
rm -f "$log"

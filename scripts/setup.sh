#!/usr/bin/env bash
# Installs the Debian packages xplor's tests, examples and benchmarks need, only when missing.
# Idempotent and silent when everything is present; safe to call before every build.
# Optional groups, for the stages that need more:
#   torch  libtorch-dev (PyTorch 1.13's C++ API, CPU; about 200 packages) and libopenblas0-openmp:
#          without it Debian resolves libtorch's libblas.so.3 to the reference BLAS, about 4x
#          slower here; the OpenMP build follows torch::set_num_threads
#   mpi    libopenmpi-dev and openmpi-bin (mpicxx, mpiexec) for xplor::mpi
# Usage: scripts/setup.sh [torch] [mpi]
set -euo pipefail

packages=(
  cmake g++ make            # build
  libeigen3-dev             # dense algebra on the CPU backend (Eigen 3.4)
  xtensor-dev xtl-dev       # N-d host arrays (xtensor 0.24)
  catch2                    # unit tests (Catch2 2.13)
  libbenchmark-dev          # Google Benchmark
  nlohmann-json3-dev        # safetensors headers, benchmark summaries
  libcli11-dev              # the examples' command lines (CLI11)
  libthrust-dev libcub-dev  # device backend on the CPU when no CUDA toolkit is installed
  gnuplot-nox               # learning-curve plots written by the examples
  ccache                    # faster rebuilds on 2 cores
)
for group in "$@"; do
  case "$group" in
    torch) packages+=(libtorch-dev libopenblas0-openmp) ;;
    mpi) packages+=(libopenmpi-dev openmpi-bin) ;;
    *) echo "xplor setup: unknown group '$group' (known: torch, mpi)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
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

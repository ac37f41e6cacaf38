#!/usr/bin/env bash
# Builds xplor's Python package as a wheel and installs it into a fresh virtual environment:
#   build/pyvenv                 the venv (numpy, pytest, and the wheel; torch is not installed)
#   build/wheelhouse/xplor-*.whl the wheel (nanobind + scikit-build-core, fetched from PyPI by pip)
# Needs python3 with venv and the Debian packages of scripts/setup.sh (Eigen, nlohmann-json).
# Usage: scripts/setup_python.sh   (prints the venv's python on its last line)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
python=${XPLOR_PYTHON:-python3}
if ! "$python" -c "import venv, ensurepip" >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get install -y -qq --no-install-recommends python3-venv python3-dev >/dev/null
fi
venv=build/pyvenv
rm -rf "$venv" build/wheelhouse
"$python" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q "numpy>=1.22" "pytest>=7"
# The compiler cache speeds up rebuilds of the extension when ccache is installed.
launcher=()
command -v ccache >/dev/null 2>&1 && launcher=(--config-settings=cmake.define.CMAKE_CXX_COMPILER_LAUNCHER=ccache)
"$venv/bin/pip" wheel -q ./python -w build/wheelhouse --no-deps "${launcher[@]}"
"$venv/bin/pip" install -q build/wheelhouse/xplor-*.whl
echo "$root/$venv/bin/python"

#!/usr/bin/env bash
# One-step set-up on a fresh Debian 12 machine with the CUDA toolkit:
#   bash cmake/bootstrap.sh main [search flags...]  build, then search lambda on the embedded default
#   bash cmake/bootstrap.sh test                    build, then run the whole test suite
# Missing Debian packages are installed first (as root, or through sudo). The build goes to
# ./build (override with SPARSEPROX_BUILD_DIR); extra CMake flags come from SPARSEPROX_CMAKE_ARGS.
# The test mode also builds the Python module in the same tree: a virtual environment in
# <build>/venv gets nanobind, scikit-build-core, pytest and NumPy, and the pytest suite
# (python/tests) runs as the ctest test `python`.
set -euo pipefail

mode=${1:-}
case "$mode" in
  main|test) shift ;;
  *) echo "usage: bash cmake/bootstrap.sh main|test [sparseprox search flags]" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SPARSEPROX_BUILD_DIR:-$root/build}

packages=(cmake ninja-build g++ pkg-config libopenblas-dev libdnnl-dev zlib1g-dev nlohmann-json3-dev libeigen3-dev libcli11-dev libgtest-dev)
# The test mode adds Python (the module's tests) and OpenMPI (the data-parallel tests run
# `mpirun -np 2`; README, "Distributed training").
if [ "$mode" = test ]; then packages+=(python3 python3-venv python3-dev openmpi-bin libopenmpi-dev); fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "-- installing Debian packages: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# nvcc is usually not on the PATH right after a toolkit install.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi

jobs=$(nproc 2>/dev/null || echo 2)
python_args=()
if [ "$mode" = test ]; then
  # The Python package's build and test tools, from PyPI into a virtual environment of the build.
  venv="$build/venv"
  if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$build"
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check nanobind scikit-build-core pytest numpy \
    safetensors onnx onnxruntime
  python_args=(-DSPARSEPROX_PYTHON=ON "-DPython_EXECUTABLE=$venv/bin/python")
fi
# shellcheck disable=SC2086
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${python_args[@]}" ${SPARSEPROX_CMAKE_ARGS:-}
cmake --build "$build" -j "$jobs"

if [ "$mode" = main ]; then
  # The main job: choose lambda for 2000 nonzero weights (7.9%) of the regression network on the
  # embedded Mackey-Glass series, by the adaptive strategy (one run). Flags given after `main`
  # replace these defaults.
  if [ $# -eq 0 ]; then
    set -- --target-nnz 2000 --tolerance 0.001 --strategy adaptive --steps 10000
  fi
  exec "$build/sparseprox" search "$@"
else
  exec ctest --test-dir "$build" --output-on-failure -j "$jobs"
fi

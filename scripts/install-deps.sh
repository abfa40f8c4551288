#!/usr/bin/env bash
# Installs every build/test dependency of Kiln from Debian 12 packages. Idempotent: packages already
# present are skipped, and apt is not touched at all when nothing is missing.
set -euo pipefail
pkgs=(
  build-essential cmake ninja-build pkg-config git xz-utils
  libprotobuf-dev protobuf-compiler libonnx-dev
  libdnnl-dev ocl-icd-opencl-dev opencl-c-headers  # oneDNN's CMake config requires OpenCL
  libflatbuffers-dev flatbuffers-compiler
  libcli11-dev nlohmann-json3-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  dataset-fashion-mnist
  clang-14 libclang-rt-14-dev
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# numpy for the Python package tests (tests/python).
python3 -c 'import numpy' 2>/dev/null || python3 -m pip install -q numpy 2>/dev/null ||
  python3 -m pip install -q --break-system-packages numpy
echo "install-deps: all dependencies present"

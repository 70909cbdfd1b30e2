#!/usr/bin/env bash
# Installs what the build needs (Debian 12 packages; the CUDA toolkit must be
# in /usr/local/cuda or CUDAToolkit_ROOT) and builds into ${BUILD:-build}.
# Sourced by scripts/run.sh and scripts/test.sh; safe to run again.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}

need=()
for pkg in cmake ninja-build g++ libfmt-dev libyaml-cpp-dev libsqlite3-dev libgtest-dev pkg-config libcli11-dev nlohmann-json3-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "samoyeds setup: installing ${need[*]}"
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

CUDA_ROOT=${CUDAToolkit_ROOT:-/usr/local/cuda}
if [ ! -f "$CUDA_ROOT/include/nvrtc.h" ]; then
  echo "samoyeds setup: no CUDA toolkit at $CUDA_ROOT (set CUDAToolkit_ROOT)" >&2
  exit 1
fi

cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCUDAToolkit_ROOT="$CUDA_ROOT" >/dev/null
cmake --build "$BUILD" -j "$(nproc)"

#!/usr/bin/env bash
# Builds here for a run on the GPU machine (which has no package registry):
# the normal build plus cuSPARSELt's header for the benchmark baseline, the
# Python wheel (build/wheelhouse) and pytest (build/py) for the Python part.
# Then carry build/ and run scripts/gpu_check.sh there.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
DEPS=$BUILD/.deps
if [ ! -f "$DEPS/cusparselt/include/cusparseLt.h" ]; then
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps -d "$tmp" 'nvidia-cusparselt-cu13>=0.8'
  mkdir -p "$DEPS/cusparselt/include"
  (cd "$tmp" && python3 -m zipfile -e ./*.whl x >/dev/null)
  find "$tmp/x" -name 'cusparseLt*.h' -exec cp {} "$DEPS/cusparselt/include/" \;
  rm -rf "$tmp"
fi
source "$ROOT/scripts/setup.sh"
# The wheel is py3-none (ctypes, no extension): it installs on the GPU
# machine's Python whatever the version here.
rm -rf "$BUILD/wheelhouse"
python3 -m pip wheel --quiet --no-deps -w "$BUILD/wheelhouse" "$ROOT"
[ -d "$BUILD/py/_pytest" ] || python3 -m pip install --quiet --disable-pip-version-check --target "$BUILD/py" pytest

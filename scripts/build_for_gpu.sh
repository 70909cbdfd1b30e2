#!/usr/bin/env bash
# Builds here for a run on the GPU machine (which has no package registry):
# the normal build plus cuSPARSELt's header for the benchmark baseline.
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

#!/usr/bin/env bash
# One device call: GPU tests, sanitizer, SASS check, benchmarks, summary last.
# Run from the repository root on the GPU machine with the build folder built
# here (scripts/build.sh) and carried along:  bash scripts/gpu_check.sh [build]
set -uo pipefail
BUILD=${1:-build}
OUT=${OUT:-/tmp/samoyeds-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$(cd "$BUILD" && pwd):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export SAMOYEDS_CACHE_DIR=${SAMOYEDS_CACHE_DIR:-/tmp/samoyeds-cache}
summary=()

nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"

# 1. GPU correctness suite.
"$BUILD/tests/samoyeds_gpu_tests" ${GTEST_FILTER:+--gtest_filter=$GTEST_FILTER} 2>&1 | tee "$OUT/gpu_tests.log"
rc=${PIPESTATUS[0]}
summary+=("gpu tests: rc=$rc, $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$OUT/gpu_tests.log" | tr '\n' ' ')")

echo "===== summary ====="
printf '%s\n' "${summary[@]}"

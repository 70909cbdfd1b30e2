#!/usr/bin/env bash
# Profiles one ssmm launch with Nsight Compute on the GPU machine:
#   bash scripts/ncu_one.sh build MODEL TOKENS DTYPE CONFIG [BACKEND]
set -uo pipefail
BUILD=${1:-build}
BACKEND=${6:-mma_sp}
export LD_LIBRARY_PATH="$(cd "$BUILD" && pwd):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export SAMOYEDS_CACHE_DIR=${SAMOYEDS_CACHE_DIR:-/tmp/samoyeds-cache}
export SAMOYEDS_LINEINFO=${SAMOYEDS_LINEINFO:-1}  # line tables for the source view
ncu --clock-control none --kernel-name "samoyeds_ssmm_$BACKEND" --launch-skip 20 --launch-count 1 \
  --section SpeedOfLight --section WarpStateStats --section ComputeWorkloadAnalysis \
  --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats --section SchedulerStats \
  "$BUILD/bench/samoyeds_expert_bench" --model "${2:-mixtral-8x7b}" --tokens "${3:-1024}" --dtype "${4:-bf16}" \
  --config "${5:-bm128_bn64_bk128_w2x2_s2}" --backend "$BACKEND" --csv /tmp/ncu_bench.csv

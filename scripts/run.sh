#!/usr/bin/env bash
# The main job: set up, build, then generate and NVRTC-compile a model's expert
# kernels into the cache (no GPU needed). Extra arguments go to
# `samoyeds compile`, e.g.  scripts/run.sh --model deepseek-moe-16b --arch sm_80
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec "$BUILD/samoyeds" compile "$@"

#!/usr/bin/env bash
# The whole test suite: set up, build, fetch a SASS disassembler from PyPI for
# the CPU-side SASS checks, run every test (GPU tests skip without a GPU).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

TOOLS=$BUILD/.tools
if [ -z "${SAMOYEDS_CUOBJDUMP:-}" ]; then
  if [ ! -x "$TOOLS/nvidia/cu13/bin/cuobjdump" ]; then
    python3 -m pip install --quiet --disable-pip-version-check --target "$TOOLS" 'nvidia-cuda-cuobjdump>=13,<14' \
      || echo "samoyeds test: could not install cuobjdump from PyPI; SASS tests will say so" >&2
  fi
  [ -x "$TOOLS/nvidia/cu13/bin/cuobjdump" ] && export SAMOYEDS_CUOBJDUMP=$TOOLS/nvidia/cu13/bin/cuobjdump
fi

cd "$BUILD"
ctest --output-on-failure -j 2 "$@"

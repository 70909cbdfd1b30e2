#!/usr/bin/env bash
# The whole test suite: set up, build, fetch a SASS disassembler from PyPI for
# the CPU-side SASS checks, run every test (GPU tests skip without a GPU).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

TOOLS=$BUILD/.tools
if [ -z "${SAMOYEDS_CUOBJDUMP:-}" ]; then
  bin=$TOOLS/nvidia/cu13/bin
  if [ ! -x "$bin/cuobjdump" ] || [ ! -x "$bin/nvdisasm" ]; then
    rm -rf "$TOOLS"
    # cuobjdump hands the disassembly to nvdisasm: both are needed.
    python3 -m pip install --quiet --disable-pip-version-check --target "$TOOLS" \
      'nvidia-cuda-cuobjdump>=13,<14' 'nvidia-cuda-nvdisasm>=13,<14' \
      || echo "samoyeds test: could not install cuobjdump/nvdisasm from PyPI; SASS tests will say so" >&2
  fi
  if [ -x "$bin/cuobjdump" ]; then
    export SAMOYEDS_CUOBJDUMP=$bin/cuobjdump PATH=$bin:$PATH
  fi
fi

# pytest for the Python package's tests, from PyPI where it is missing.
export PYTHONPATH=$TOOLS/py${PYTHONPATH:+:$PYTHONPATH}
if ! python3 -c 'import pytest' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check --target "$TOOLS/py" pytest \
    || echo "samoyeds test: could not install pytest from PyPI; the Python tests will fail" >&2
fi

cd "$BUILD"
ctest --output-on-failure -j 2 "$@"

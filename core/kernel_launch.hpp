// Every kernel launch of the library goes through launch_kernel. On sm_90
// and later it asks for programmatic dependent launch: the kernel's blocks
// may be scheduled as the previous kernel's blocks exit, before that kernel
// has completed, and each block first runs grid_dependency_begin()
// (templates/common.cuh), which waits until it has completed and its writes
// are visible. So the launch latency hides under the previous kernel's
// end; results are the same. On the H200 this took 7-12% off the MoE
// layers at T = 8 and ~2% at T = 4096 (docs/perf-log.md).
#pragma once
#include <cuda.h>

namespace samoyeds {

class Device;

struct LaunchShape {
  unsigned grid_x = 1, grid_y = 1, grid_z = 1;
  unsigned threads = 1;
  unsigned smem_bytes = 0;
};

// cuLaunchKernel's result: the caller turns a failure into its own message.
CUresult launch_kernel(const Device& device, CUfunction f, const LaunchShape& shape, CUstream stream,
                       void** params);

}  // namespace samoyeds

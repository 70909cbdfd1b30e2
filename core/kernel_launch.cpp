#include "core/kernel_launch.hpp"

#include "core/cuda_driver.hpp"
#include "samoyeds/device.hpp"
#include "samoyeds/environment.hpp"

namespace samoyeds {

CUresult launch_kernel(const Device& device, CUfunction f, const LaunchShape& shape, CUstream stream,
                       void** params) {
  const DriverApi& d = driver();
  if (device.info().cc_major >= 9 && d.cuLaunchKernelEx && programmatic_launch_enabled()) {
    CUlaunchAttribute attr{};
    attr.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attr.value.programmaticStreamSerializationAllowed = 1;
    CUlaunchConfig cfg{};
    cfg.gridDimX = shape.grid_x;
    cfg.gridDimY = shape.grid_y;
    cfg.gridDimZ = shape.grid_z;
    cfg.blockDimX = shape.threads;
    cfg.blockDimY = cfg.blockDimZ = 1;
    cfg.sharedMemBytes = shape.smem_bytes;
    cfg.hStream = stream;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    return d.cuLaunchKernelEx(&cfg, f, params, nullptr);
  }
  return d.cuLaunchKernel(f, shape.grid_x, shape.grid_y, shape.grid_z, shape.threads, 1, 1, shape.smem_bytes, stream,
                          params, nullptr);
}

}  // namespace samoyeds

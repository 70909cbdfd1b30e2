#include "runtime/utility_launch.hpp"

#include "runtime/cuda_driver.hpp"
#include "runtime/kernel_launch.hpp"

namespace samoyeds {

void launch_utility(KernelRuntime& rt, UtilityKernel which, DType dtype, unsigned gx, unsigned gy, void* args,
                    void* stream) {
  const LoadedKernel& k = rt.get_utility(int(which), dtype);
  void* params[] = {args};
  LaunchShape shape;
  shape.grid_x = gx;
  shape.grid_y = gy;
  shape.threads = unsigned(k.threads);
  const CUresult rc = launch_kernel(rt.device(), static_cast<CUfunction>(k.function), shape,
                                    static_cast<CUstream>(stream), params);
  if (rc != CUDA_SUCCESS) check(rc, ("launch " + utility_kernel_name(which)).c_str());
}

}  // namespace samoyeds

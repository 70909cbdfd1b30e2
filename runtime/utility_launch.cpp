#include "runtime/utility_launch.hpp"

#include "runtime/cuda_driver.hpp"

namespace samoyeds {

void launch_utility(KernelRuntime& rt, UtilityKernel which, DType dtype, unsigned gx, unsigned gy, void* args,
                    void* stream) {
  const LoadedKernel& k = rt.get_utility(int(which), dtype);
  void* params[] = {args};
  const CUresult rc = driver().cuLaunchKernel(static_cast<CUfunction>(k.function), gx, gy, 1, unsigned(k.threads), 1,
                                              1, 0, static_cast<CUstream>(stream), params, nullptr);
  if (rc != CUDA_SUCCESS) check(rc, ("launch " + utility_kernel_name(which)).c_str());
}

}  // namespace samoyeds

#include "runtime/utility_launch.hpp"

#include <algorithm>

#include "core/cuda_driver.hpp"
#include "core/kernel_launch.hpp"
#include "samoyeds/error.hpp"
#include "templates/kernel_args.cuh"

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

void launch_route(KernelRuntime& rt, DType dtype, bool fp32_logits, RouteArgs& args, void* stream) {
  const UtilityKernel which = fp32_logits ? UtilityKernel::RouteTopkF32 : UtilityKernel::RouteTopk;
  const unsigned warps_per_block = unsigned(utility_kernel_threads(which) / 32);
  if (warps_per_block > unsigned(kRouteWarps))
    throw Error(ErrorCode::Unsupported, "the routing kernel stages choices for at most kRouteWarps warps a block");
  launch_utility(rt, which, dtype, (unsigned(args.tokens) + warps_per_block - 1) / warps_per_block, 1, &args, stream);
}

void launch_token_lists(KernelRuntime& rt, DType dtype, TokenListArgs& args, void* stream) {
  // Every block counts all n entries, so a split should write at least a few
  // entries a thread (kMinEntriesPerSplit) to be worth its count pass; past
  // one block per SM more splits only add count passes.
  constexpr int64_t kMinEntriesPerSplit = 4096;
  const int64_t n = int64_t(args.tokens) * args.top_k;
  const int64_t sms = std::max(1, rt.device().info().sm_count);
  const int64_t want = (sms + args.experts - 1) / args.experts;
  const int64_t splits = std::clamp<int64_t>(std::min(want, n / kMinEntriesPerSplit), 1, 65535);
  launch_utility(rt, UtilityKernel::BuildExpertLists, dtype, unsigned(args.experts), unsigned(splits), &args, stream);
}

void launch_quantize_rows(KernelRuntime& rt, DType dtype, QuantizeRowsArgs& args, void* stream) {
  const int64_t warps = utility_kernel_threads(UtilityKernel::QuantizeRowsE4m3) / 32;
  const int64_t items = int64_t(args.n) * ((args.k + 127) / 128);
  if (items == 0) return;
  launch_utility(rt, UtilityKernel::QuantizeRowsE4m3, dtype, unsigned((items + warps - 1) / warps), 1, &args, stream);
}

}  // namespace samoyeds

// Small fixed kernels that have no tile config (the deterministic combine).
// They go through the same NVRTC + binary cache path as the families.
#pragma once
#include "generator/generated_kernel.hpp"
#include "samoyeds/dtype.hpp"

namespace samoyeds {

enum class UtilityKernel {
  ScatterAddRows,   // single-expert deterministic combine
  RouteTopk,        // MoE: each token's top-k by the layer's routing method, a warp per token (logits in the dtype)
  BuildExpertLists, // MoE token lists (experts x splits blocks)
  MoeCombine,       // MoE: gather each token's expert outputs in slot order
  GatherRows,       // routed tokens into list order, one warp per row
  RouteTopkF32,     // RouteTopk over float logits (the dtype is the layer's, unused)
  QuantizeRowsE4m3, // tokens (gathered or in order) into E4M3 codes with 1 x 128 scales, a warp per group
};
constexpr int kUtilityKernelCount = 7;
// Threads per block of the utility kernels that are launched with blocks of threads.
constexpr int kUtilityThreads = 256;

GeneratedKernel generate_utility_kernel(UtilityKernel which, DType dtype);
std::string utility_kernel_name(UtilityKernel which);
// Threads per block `which` is generated for (launches size their grids by it).
int utility_kernel_threads(UtilityKernel which);

}  // namespace samoyeds

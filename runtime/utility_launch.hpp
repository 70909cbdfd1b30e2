// Launching a utility kernel (generator/utility_kernels.hpp): the one place
// the expert ops and the MoE layer start them.
#pragma once
#include "generator/utility_kernels.hpp"
#include "samoyeds/kernel_runtime.hpp"

namespace samoyeds {

// `which` for `dtype` on a gx x gy grid of utility_kernel_threads(which)
// threads, with `args` as its one parameter, on `stream`. Throws on a
// launch error.
void launch_utility(KernelRuntime& rt, UtilityKernel which, DType dtype, unsigned gx, unsigned gy, void* args,
                    void* stream);

struct RouteArgs;
// Each token's top-k experts and weights (RouteTopk, or RouteTopkF32 for
// float logits) on `stream`: a warp per token.
void launch_route(KernelRuntime& rt, DType dtype, bool fp32_logits, RouteArgs& args, void* stream);

struct TokenListArgs;
// The MoE token lists of `args` (BuildExpertLists) on `stream`: one block per
// expert and split of the entries, with splits enough that few experts still
// fill the GPU.
void launch_token_lists(KernelRuntime& rt, DType dtype, TokenListArgs& args, void* stream);

struct QuantizeRowsArgs;
// Tokens into E4M3 with 1 x 128 scales (QuantizeRowsE4m3, x of `dtype`) on
// `stream`: a warp per (row, group).
void launch_quantize_rows(KernelRuntime& rt, DType dtype, QuantizeRowsArgs& args, void* stream);

}  // namespace samoyeds

// The kernels a model's layers need: each expert projection in the forms it
// is launched in, at the configs untuned dispatch uses (or every config of
// both backends). What `samoyeds compile` builds and the compile benchmark times.
#pragma once
#include <string>
#include <vector>

#include "generator/generated_kernel.hpp"
#include "samoyeds/model_preset.hpp"

namespace samoyeds {

struct KernelJob {
  KernelSpec spec;
  TileConfig config;
};

// default: for every token bucket, the default config of the spec's default
// backend (duplicates dropped); whole search space: every valid config of
// mma_sp and wgmma_sp (what tuning would try). routed false: the shared
// experts' projections only (a layer whose routed experts are FP8).
std::vector<KernelJob> model_kernel_jobs(const ModelPreset& model, const std::string& arch,
                                         const std::vector<DType>& dtypes, const SparsityParams& sparsity,
                                         bool whole_search_space, bool routed = true);

// A kernel without a tile config, under the name the runtime loads it by:
// the layer's utility kernels (routing, token lists, gather, combine) for
// each dtype and, with fp8_experts, the FP8 projections and the quantizing
// pass. Their binaries share the cache's content keys with the runtime's;
// a kernel whose source does not depend on the dtype comes once.
struct FixedKernelJob {
  std::string name;
  GeneratedKernel kernel;
};
std::vector<FixedKernelJob> model_fixed_kernel_jobs(const std::vector<DType>& dtypes, bool fp8_experts);

}  // namespace samoyeds

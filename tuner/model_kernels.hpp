// The kernels a model's layers need: each expert projection in the forms it
// is launched in, at the configs untuned dispatch uses (or every config of
// both backends). What `samoyeds compile` builds and the compile benchmark times.
#pragma once
#include <string>
#include <vector>

#include "samoyeds/model_preset.hpp"

namespace samoyeds {

struct KernelJob {
  KernelSpec spec;
  TileConfig config;
};

// default: for every token bucket, the default config of the spec's default
// backend (duplicates dropped); whole search space: every valid config of
// mma_sp and wgmma_sp (what tuning would try).
std::vector<KernelJob> model_kernel_jobs(const ModelPreset& model, const std::string& arch,
                                         const std::vector<DType>& dtypes, const SparsityParams& sparsity,
                                         bool whole_search_space);

}  // namespace samoyeds

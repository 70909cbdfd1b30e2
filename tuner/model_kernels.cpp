#include "tuner/model_kernels.hpp"

#include "backends/backend.hpp"
#include "samoyeds/tuning_record.hpp"

namespace samoyeds {

std::vector<KernelJob> model_kernel_jobs(const ModelPreset& model, const std::string& arch,
                                         const std::vector<DType>& dtypes, const SparsityParams& sparsity,
                                         bool whole_search_space) {
  // Each projection as MoeLayer launches it (the routed experts grouped:
  // their own binaries) and, for the routed experts, one expert at a time
  // (the ops API).
  std::vector<KernelSpec> forms;
  for (DType dt : dtypes)
    for (const KernelSpec& spec : model_expert_specs(model, arch, dt, sparsity)) {
      forms.push_back(spec);
      if (spec.grouped) {
        KernelSpec single = spec;
        single.grouped = false;
        single.experts = 1;
        forms.push_back(single);
      }
    }
  std::vector<KernelJob> jobs;
  for (KernelSpec spec : forms) {
    std::vector<Backend> backends = {default_backend(spec)};
    if (whole_search_space) backends = all_backends();
    for (Backend b : backends) {
      spec.backend = b;
      const auto& family = kernel_family(b);
      std::vector<TileConfig> configs;
      if (whole_search_space) {
        configs = family.search_space(spec);
      } else {
        // Every bucket dispatch rounds a token count to (the defaults differ
        // up to the largest: persistent and `_so` tiles from 4096 tokens).
        for (int64_t tokens : default_token_buckets()) {
          const TileConfig c = family.default_config(spec, tokens, kReferenceSmCount);
          bool seen = false;
          for (const auto& d : configs) seen |= d == c;
          if (!seen) configs.push_back(c);
        }
      }
      for (const auto& c : configs) jobs.push_back({spec, c});
    }
  }
  return jobs;
}

}  // namespace samoyeds

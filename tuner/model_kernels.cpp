#include "tuner/model_kernels.hpp"

#include "backends/backend.hpp"
#include "generator/utility_kernels.hpp"
#include "runtime/fp8_routed_experts.hpp"
#include "samoyeds/tuning_record.hpp"

namespace samoyeds {

std::vector<KernelJob> model_kernel_jobs(const ModelPreset& model, const std::string& arch,
                                         const std::vector<DType>& dtypes, const SparsityParams& sparsity,
                                         bool whole_search_space, bool routed) {
  // Each projection as MoeLayer launches it (the routed experts grouped:
  // their own binaries) and, for the routed experts, one expert at a time
  // (the ops API).
  std::vector<KernelSpec> forms;
  for (DType dt : dtypes)
    for (const KernelSpec& spec : model_expert_specs(model, arch, dt, sparsity)) {
      if (spec.grouped && !routed) continue;  // the routed experts' (shared ones are never grouped)
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

std::vector<FixedKernelJob> model_fixed_kernel_jobs(const std::vector<DType>& dtypes, bool fp8_experts) {
  std::vector<FixedKernelJob> jobs;
  auto add = [&](std::string name, GeneratedKernel kernel) {
    for (const FixedKernelJob& j : jobs)
      if (j.kernel.source == kernel.source) return;  // the same binary (route_topk_f32 ignores the dtype)
    jobs.push_back({std::move(name), std::move(kernel)});
  };
  for (DType dt : dtypes)
    for (int i = 0; i < kUtilityKernelCount; ++i) {
      const auto which = UtilityKernel(i);
      // The quantizing pass feeds the FP8 experts only, whose input is bf16.
      if (which == UtilityKernel::QuantizeRowsE4m3 && !(fp8_experts && dt == DType::bf16)) continue;
      add(utility_kernel_name(which) + " " + dtype_name(dt), generate_utility_kernel(which, dt));
    }
  if (fp8_experts)
    for (const Fp8RoutedExperts::Kernel& k : Fp8RoutedExperts::kernels()) add(k.key, Fp8RoutedExperts::generate(k.tile));
  return jobs;
}

}  // namespace samoyeds

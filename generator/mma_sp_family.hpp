// The mma_sp backend: warp-level mma.sp m16n8k32 kernels (sm_80 and newer),
// device code in templates/ssmm_mma_sp.cuh.
#pragma once
#include "generator/kernel_family.hpp"

namespace samoyeds {

struct MmaSpResources {  // what a config costs, computed the way the device struct does
  int threads = 0;
  int smem_bytes = 0;
  int accumulator_regs = 0;  // f32 accumulators per thread
};

class MmaSpFamily final : public KernelFamily {
 public:
  Backend backend() const override { return Backend::MmaSp; }
  std::vector<TileConfig> search_space(const KernelSpec& spec) const override;
  std::optional<std::string> invalid_reason(const KernelSpec& spec, const TileConfig& cfg) const override;
  GeneratedKernel generate(const KernelSpec& spec, const TileConfig& cfg) const override;
  TileConfig default_config(const KernelSpec& spec, int64_t tokens) const override;

  static MmaSpResources resources(const KernelSpec& spec, const TileConfig& cfg);
  // f32 accumulators a thread may hold before ptxas spills under the
  // 255-register cap. Row selection every k32 step (V = 32) or over more than
  // two slots keeps extra copies live: ptxas reports showed 32-232 spill bytes
  // at 128 accumulators there, none at 96; with V >= 64 and two slots 128 fit.
  static int max_accumulator_regs(const KernelSpec& spec);
};

// Heuristic default tile config (generator/mma_sp_heuristics.cpp).
TileConfig mma_sp_default_config(const KernelSpec& spec, int64_t tokens);

}  // namespace samoyeds

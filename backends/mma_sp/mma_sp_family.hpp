// The mma_sp backend: warp-level mma.sp m16n8k32 kernels (sm_80 and newer),
// device code: templates/ssmm_pipeline.cuh with the WarpMmaSpCore of
// templates/mma_sp_sm80.cuh.
#pragma once
#include "backends/backend.hpp"

namespace samoyeds {

struct MmaSpResources {  // what a config costs, computed the way the device struct does
  int threads = 0;
  int smem_bytes = 0;
  int accumulator_regs = 0;  // f32 accumulators per thread
  int operand_regs = 0;      // accumulators + A, B and metadata fragments of one k32 step
};

class MmaSpFamily final : public KernelFamily {
 public:
  Backend backend() const override { return Backend::MmaSp; }
  std::vector<TileConfig> search_space(const KernelSpec& spec) const override;
  std::optional<std::string> invalid_reason(const KernelSpec& spec, const TileConfig& cfg) const override;
  GeneratedKernel generate(const KernelSpec& spec, const TileConfig& cfg) const override;
  TileConfig default_config(const KernelSpec& spec, int64_t tokens, int sm_count) const override;
  void launch(const ExpertLaunch& launch, LaunchContext& context) const override;  // mma_sp_launch.cpp

  static MmaSpResources resources(const KernelSpec& spec, const TileConfig& cfg);
  // Registers a thread may give to accumulators plus MMA fragments
  // (MmaSpResources::operand_regs) before ptxas spills under the 255 cap.
  // From ptxas reports over the search spaces (sm_80, sm_90, sm_90a): with
  // V >= 64 and two slots, 164 fit except with two weight operands (gated)
  // and block_k = 128, which spilled 8 bytes; V = 32 (selection every step) or four slots spilled at
  // 152-160, never at 112 or below.
  static int max_operand_regs(const KernelSpec& spec, const TileConfig& cfg);
};

// Heuristic default tile config (backends/mma_sp/mma_sp_heuristics.cpp).
TileConfig mma_sp_default_config(const KernelSpec& spec, int64_t tokens);

}  // namespace samoyeds

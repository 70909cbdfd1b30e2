// What the two sparse-MMA backends share: the cost of a tile config in the
// SsmmPipeline device struct (templates/ssmm_pipeline.cuh) and the small
// translation unit that instantiates it with one core.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "generator/generated_kernel.hpp"
#include "samoyeds/kernel_spec.hpp"

namespace samoyeds {

// Weight operands a launch reads: 2 for the gated up-projection (W1, W3), else 1.
int weight_operands(const KernelSpec& spec);

struct PipelineResources {  // computed the way the device struct does
  int threads = 0;
  int smem_bytes = 0;
  int accumulator_regs = 0;  // f32 accumulators per thread
};
// `stage_align`: the core's kStageAlign (each operand's part of a stage starts
// on a multiple of it).
PipelineResources pipeline_resources(const KernelSpec& spec, const TileConfig& cfg, int stage_align = 16);

// The checks every core needs (the k-tile the packed layout pads for, whole
// row groups per tile, shared memory); nullopt when the config passes them.
// The row tile is each family's: mma_sp's copies read within the layout's
// row padding, wgmma_sp's tensor maps bound their reads.
std::optional<std::string> pipeline_invalid_reason(const KernelSpec& spec, const TileConfig& cfg);

// The device struct a backend instantiates: `kernel_type` is its full type
// with every template argument, `headers` what defines it, in order.
struct PipelineKernel {
  const char* backend;               // "mma_sp": names the entry point
  std::vector<std::string> headers;  // {"samoyeds/ssmm_pipeline.cuh", "samoyeds/mma_sp_sm80.cuh"}
  std::string kernel_type;  // "samoyeds::SsmmPipeline<samoyeds::WarpMmaSpCore, samoyeds::BF16, ...>"
  int threads = 0;
  int smem_bytes = 0;
  // The entry takes the tile scheduler's problem (templates/tile_scheduler.cuh)
  // and `const __grid_constant__ TmaWeightMaps`, and the grid is 1-D over tiles.
  bool weight_maps = false;
  // Launched persistent (about one block per SM walking the tiles); else one
  // tile per block. Only for weight_maps kernels.
  bool persistent = false;
  // Blocks per thread-block cluster (__cluster_dims__), 1 for none.
  int cluster_blocks = 1;
  // Extra `static_assert`s on the kernel type, one per line (host-side facts
  // the device struct must agree with).
  std::vector<std::string> checks;
};
// Template arguments every SsmmPipeline-based struct takes, in its order:
// "samoyeds::BF16, 128, 64, 128" (dtype, BM, BN, BK) and "128, 1, 2, samoyeds::kEpiNone" (V, N, M, epilogue).
std::string pipeline_tile_args(const KernelSpec& spec, const TileConfig& cfg);
std::string pipeline_sparsity_args(const KernelSpec& spec);
GeneratedKernel generate_ssmm_pipeline(const KernelSpec& spec, const TileConfig& cfg, const PipelineKernel& kernel);

}  // namespace samoyeds

// The wgmma_sp backend (sm_90a only): warpgroup wgmma.sp m64nNk32 kernels
// (templates/wgmma_sp_sm90a.cuh). The packed layout (sp_tc.v2,
// format/device_layout.hpp) is made for its 128-column k-tiles: a
// lane's metadata of a k-tile is one 8-byte word pair. mma_sp reads the same
// layout, so one packed layer serves both backends.
//
// Warp-specialized (templates/ssmm_wgmma_ws.cuh): a producer warpgroup fills
// the stages (TMA for the weights, cp.async for the gathered tokens),
// consumer warpgroups multiply. A consumer warpgroup owns 64 condensed rows
// and the block's BN tokens; TileConfig spells the consumers as
// warps_m = block_m / 16, warps_n = 1.
#pragma once
#include "backends/backend.hpp"
#include "backends/wgmma_sp/wgmma_sp_config.hpp"
#include "templates/kernel_args.cuh"

namespace samoyeds {

struct WgmmaSpResources {
  int threads = 0;
  int smem_bytes = 0;
  int accumulator_regs = 0;  // f32 accumulators per consumer thread
};

class WgmmaSpFamily final : public KernelFamily {
 public:
  Backend backend() const override { return Backend::WgmmaSp; }
  std::vector<TileConfig> search_space(const KernelSpec& spec) const override;
  std::optional<std::string> invalid_reason(const KernelSpec& spec, const TileConfig& cfg) const override;
  GeneratedKernel generate(const KernelSpec& spec, const TileConfig& cfg) const override;
  TileConfig default_config(const KernelSpec& spec, int64_t tokens, int sm_count) const override;
  bool worth_timing(const KernelSpec& spec, const TileConfig& cfg, int64_t tokens, int sm_count) const override;
  const ScheduleFields* schedule_fields() const override { return &wgmma_sp_schedule_fields(); }
  bool reads_rows_in_order(const TileConfig& cfg) const override { return WgmmaSpConfig::of(cfg).tokens_tma; }
  TileConfig gathered_config(const KernelSpec& spec, const TileConfig& chosen, bool tuned, int64_t tokens,
                             int sm_count) const override;
  void launch(const ExpertLaunch& launch, LaunchContext& context) const override;  // wgmma_sp_launch.cpp

  // The default for a call that gathers its token rows by id: default_config
  // may pick tiles that read the rows in order (tokens_tma), which a gather
  // cannot feed; this picks among the others.
  TileConfig gathered_default_config(const KernelSpec& spec, int64_t tokens, int sm_count) const;

  // Row tiles of one expert: its condensed rows (N of every M) over block_m.
  static int64_t row_tiles(const KernelSpec& spec, int block_m) {
    const int64_t rows = (spec.m + spec.sparsity.M - 1) / spec.sparsity.M * spec.sparsity.N;
    return (rows + block_m - 1) / block_m;
  }

  // Blocks of a launch at `tokens` tokens (per expert; every expert counted
  // for a grouped launch), before any split-k: one per tile, both blocks of
  // each multicast pair (a pair's second block may be past the tokens).
  static int64_t tile_count(const KernelSpec& spec, const WgmmaSpConfig& cfg, int64_t tokens);
  static int64_t tile_count(const KernelSpec& spec, const TileConfig& cfg, int64_t tokens) {
    return tile_count(spec, WgmmaSpConfig::of(cfg), tokens);
  }

  // A stream-K launch (cfg.stream_k) on `grid` blocks at `tokens` tokens:
  // how it splits its last round (stream_k_split, templates/kernel_args.cuh)
  // and the workspace that takes: floats of the shares' partial tiles and
  // ints of their flags (both 0 when nothing is split).
  struct StreamKWorkspace {
    StreamKSplit split;
    int64_t partial_floats = 0, flags = 0;
  };
  static StreamKWorkspace stream_k_workspace(const KernelSpec& spec, const WgmmaSpConfig& cfg, int64_t tokens, int grid);
  static StreamKWorkspace stream_k_workspace(const KernelSpec& spec, const TileConfig& cfg, int64_t tokens, int grid) {
    return stream_k_workspace(spec, WgmmaSpConfig::of(cfg), tokens, grid);
  }

  // Whether the kernel can store its tiles by TMA (SsmmWgmmaWs's OUT_CHUNK):
  // single launches whose epilogue runs from registers (N = 1, no split-k,
  // every operand in each warpgroup), where two buffers of staging boxes fit
  // beside the stages. The source may not depend on m (kernels are shared
  // across shapes): the launch uses the stores where rows of y are a
  // multiple of 8 values (16-byte TMA strides, SsmmArgs::out_by_tma), else
  // the same kernel stores from registers. And the tokens of its chunks (the
  // TMA map's box; 0 without TMA stores).
  static bool tma_store(const KernelSpec& spec, const WgmmaSpConfig& cfg);
  static int tma_store_chunk_tokens(const KernelSpec& spec, const WgmmaSpConfig& cfg);
  static bool tma_store(const KernelSpec& spec, const TileConfig& cfg) { return tma_store(spec, WgmmaSpConfig::of(cfg)); }
  static int tma_store_chunk_tokens(const KernelSpec& spec, const TileConfig& cfg) {
    return tma_store_chunk_tokens(spec, WgmmaSpConfig::of(cfg));
  }

 private:
  // default_config (rows_in_order: the call's token rows may be read in
  // order, by TMA) or gathered_default_config.
  TileConfig default_for(const KernelSpec& spec, int64_t tokens, int sm_count, bool rows_in_order) const;
  // Blocks that count as enough for the largest tile (0.7 of a wave: 92 on the H200 the rules were fitted on).
  static int64_t enough_blocks(int sm_count) { return int64_t(sm_count) * 7 / 10; }
  // The tile and stages of default_config, before its schedule.
  WgmmaSpConfig default_tile(const KernelSpec& spec, int64_t tokens, int sm_count) const;
  // `tile` (its tile and stages) with the schedule default_config gives it at `tokens` tokens.
  WgmmaSpConfig schedule(const KernelSpec& spec, const WgmmaSpConfig& tile, int64_t tokens, int sm_count) const;
  static WgmmaSpResources resources(const KernelSpec& spec, const WgmmaSpConfig& cfg);
  // f32 accumulators a consumer thread may hold (all slots of all operands).
  // From ptxas reports: one consumer warpgroup (256 threads) has 255
  // registers, two (384 threads) have 216 and three (512 threads) 160 after
  // the producer hands its registers over (setmaxnreg); 128 accumulators
  // fit in all three.
  static int max_accumulator_regs(const KernelSpec& spec, const WgmmaSpConfig& cfg) {
    (void)spec;
    (void)cfg;
    return 128;
  }
};

}  // namespace samoyeds

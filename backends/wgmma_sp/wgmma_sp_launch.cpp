// wgmma_sp's launch: a 1-D grid over tiles (persistent grids capped at what
// the device runs at once), the weights' TMA maps plus this call's token
// and output maps, and the stream-K tail's workspace.
#include <algorithm>

#include <fmt/format.h>

#include "backends/launch_common.hpp"
#include "backends/wgmma_sp/tma_weight_maps.hpp"
#include "backends/wgmma_sp/wgmma_sp_family.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds {

void WgmmaSpFamily::launch(const ExpertLaunch& l, LaunchContext& context) const {
  const WgmmaSpConfig cfg = WgmmaSpConfig::of(l.config);
  const LoadedKernel& kernel = *l.kernel;
  SsmmArgs a = ssmm_args(l);
  WeightMapShape shape;
  shape.rows_pad = l.rows_pad;
  shape.k_phys = l.k_phys;
  shape.V = l.spec.sparsity.V;
  shape.block_m = cfg.block_m;
  shape.block_k = cfg.block_k;
  shape.multicast = cfg.multicast;
  if (l.spec.grouped) {
    shape.experts = l.spec.experts;
    // The maps see the experts as one tensor: each expert's part must
    // follow the previous one's with no gap.
    require(l.values_stride == l.rows_pad * (l.k_phys / 2) && l.meta_stride == l.rows_pad / 16 * (l.k_phys / 2) &&
                l.sel_stride == (l.k_phys / l.spec.sparsity.V) * l.rows_pad,
            "grouped weights are not laid out back to back (the TMA maps need that)");
  }
  PackedWeightView views[2];
  for (int i = 0; i < l.n_operands; ++i) views[i] = {l.operands[i].values, l.operands[i].meta, l.operands[i].sel};
  // The launch copies the parameter: the remembered maps are passed as they are.
  const TmaWeightMaps* maps = &weight_maps_for(views, l.n_operands, shape);
  TmaWeightMaps with_call;  // the remembered weight maps plus this call's token and output maps
  // The kernel's chunk (0: it stores from registers); the launch stores by
  // TMA only where rows of y are 16-byte strides.
  const int out_chunk = tma_store_chunk_tokens(l.spec, cfg);
  const bool store_by_tma = out_chunk > 0 && a.ldy % 8 == 0;
  a.out_by_tma = store_by_tma ? 1 : 0;
  if (cfg.tokens_tma || store_by_tma) {
    with_call = *maps;
    if (cfg.tokens_tma) {  // rows in order (the runtime copied gathered rows into list order), k values apart
      if (l.ids != nullptr)  // the message is built only on failure: this is the hot path
        require(false, fmt::format("config {} reads token rows in order; the call gathers them", cfg.to_string()));
      require(l.ldx == l.k, "token tiles by TMA read rows of exactly k values");
      with_call.tokens = encode_token_map(l.x, l.x_rows, l.k, cfg.block_n);
    }
    if (store_by_tma) with_call.out = encode_out_map(l.y, l.n, a.ldy, out_chunk);  // n rows of ldy = m values
    maps = &with_call;
  }
  // One block per tile, numbered as templates/tile_scheduler.cuh does (the
  // family counts tiles, multicast pairs included, so that the tuner, the
  // launch and the device scheduler share one formula); split-k adds a
  // cluster of split_k blocks per tile (never with persistence).
  const int64_t blocks = tile_count(l.spec, cfg, l.n) * cfg.split_k;
  require(blocks <= kMaxDim, fmt::format("{} blocks exceed the grid limit", blocks));
  LaunchShape grid;
  grid.grid_x = unsigned(kernel.persistent ? std::min<int64_t>(blocks, kernel.resident_blocks) : blocks);
  if (cfg.stream_k) {  // every resident block: those past the whole tiles take the tail's shares
    grid.grid_x = unsigned(kernel.resident_blocks);
    const StreamKWorkspace w = stream_k_workspace(l.spec, cfg, l.n, int(grid.grid_x));
    if (w.split.parts > 1) {
      const LaunchScratch::Buffers scratch = context.scratch.scratch(l.stream, w.partial_floats, w.flags);
      a.stream_k_partials = scratch.floats;
      a.stream_k_flags = scratch.zeroed_ints;
    }
  }
  GroupedSsmmArgs g{};
  void* params[] = {&a, const_cast<TmaWeightMaps*>(maps)};
  if (l.spec.grouped) {
    g = grouped_ssmm_args(l, a);
    params[0] = &g;
  }
  launch_expert_kernel(l, context.device, grid, params);
}

TileConfig WgmmaSpFamily::gathered_config(const KernelSpec& spec, const TileConfig& chosen, bool tuned, int64_t tokens,
                                          int sm_count) const {
  WgmmaSpConfig g = WgmmaSpConfig::of(chosen);
  if (!g.tokens_tma) return chosen;
  g.tokens_tma = false;
  if (!tuned || invalid_reason(spec, g)) return gathered_default_config(spec, tokens, sm_count);
  return g;
}

const KernelFamily& wgmma_sp_family() {
  static const WgmmaSpFamily family;
  return family;
}

}  // namespace samoyeds

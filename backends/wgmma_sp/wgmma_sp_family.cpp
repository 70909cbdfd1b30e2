#include "backends/wgmma_sp/wgmma_sp_family.hpp"

#include <algorithm>
#include <optional>

#include <fmt/format.h>

#include "generator/ssmm_pipeline_source.hpp"
#include "backends/wgmma_sp/weight_tma_boxes.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds {
namespace {

// With TMA stores of chunks of `chunk_tokens` (WgmmaSpFamily::tma_store):
// the stages and barriers, then two buffers of output boxes on a swizzle
// period, then the alignment slack (SsmmWgmmaWs::kOutOffset, kSmemBytes).
int tma_store_smem_bytes(const KernelSpec& spec, const WgmmaSpConfig& c, int pipeline_smem, int chunk_tokens) {
  const int boxes = c.block_m * spec.sparsity.M / 64;
  return (pipeline_smem + 2 * c.stages * 8 + 1023) / 1024 * 1024 + 2 * boxes * chunk_tokens * 128 + 1024;
}

}  // namespace

// Mirrors SsmmWgmmaWs: the pipeline's tiles (operands on 1024-byte swizzle
// periods) plus a producer warpgroup, two mbarriers per stage and the slack
// that aligns the dynamic shared memory to a swizzle period. With
// split_operands: a consumer warpgroup per operand, each accumulating one,
// and for the epilogue from registers the exchange: two regions, each half
// of a warpgroup's accumulators and two selection states per 16-row
// fragment, of 128 threads (OperandExchange), and four mbarriers.
WgmmaSpResources WgmmaSpFamily::resources(const KernelSpec& spec, const WgmmaSpConfig& c) {
  const PipelineResources p = pipeline_resources(spec, c, 1024);
  const int operands = weight_operands(spec);
  WgmmaSpResources r{p.threads + 128, p.smem_bytes + 2 * c.stages * 8 + 1024, p.accumulator_regs};
  if (const int chunk = tma_store_chunk_tokens(spec, c)) r.smem_bytes = tma_store_smem_bytes(spec, c, p.smem_bytes, chunk);
  if (c.split_operands) {
    r.threads += p.threads * (operands - 1);
    r.accumulator_regs /= operands;
    if (spec.sparsity.N == 1 && c.split_k == 1) {
      const int region_floats = r.accumulator_regs / 2 + (c.block_m / c.warps_m / 16) * 2;
      r.smem_bytes += 2 * region_floats * 128 * 4 + 32;
    }
  }
  return r;
}

std::optional<std::string> WgmmaSpFamily::invalid_reason(const KernelSpec& spec, const TileConfig& tc) const {
  if (tc.schedule_fields && tc.schedule_fields != &wgmma_sp_schedule_fields())
    return "the config's schedule is another backend's";
  const WgmmaSpConfig c = WgmmaSpConfig::of(tc);
  if (spec.arch != "sm_90a") return fmt::format("wgmma.sp needs sm_90a, not {}", spec.arch);
  if (c.block_m != 64 && c.block_m != 128 && c.block_m != 192) return "block_m must be 64, 128 or 192";
  if (auto why = pipeline_invalid_reason(spec, c.config())) return why;
  if (c.block_m == 192) {
    // Three consumer warpgroups leave the producer 32 registers (ssmm_wgmma_ws.cuh): only one thread issuing
    // TMA boxes fits, and the epilogue must run from registers (its staging would need 384 output rows).
    if (!c.tokens_tma) return "block_m = 192 needs token tiles by TMA (the gather's producer needs more registers)";
    if (c.split_k != 1 || c.multicast != 1 || spec.sparsity.N != 1)
      return "block_m = 192 stores from registers: N = 1, no split-k, no multicast";
    if (c.split_operands) return "a warpgroup per operand takes block_m = 64";
    if (row_tiles(spec, 128) < 2) return "block_m = 192 is for experts of more than 128 condensed rows";
    // The bias reads of gpt-oss's epilogues put its 128-register store loop past the budget (52 spill bytes).
    if (biased_epilogue(spec.epilogue)) return "block_m = 192 with a biased epilogue spills";
  }
  if (c.block_k != 128) return "block_k must be 128 (a k-tile's weight row is one 128-byte swizzle atom)";
  if (c.block_n != 32 && c.block_n != 64 && c.block_n != 128) return "block_n must be 32, 64 or 128 (one wgmma N)";
  if (c.warps_m != c.block_m / 16 || c.warps_n != 1)
    return "a warpgroup owns 64 rows and all tokens: warps_m = block_m / 16, warps_n = 1";
  if (c.split_k != 1 && c.split_k != 2 && c.split_k != 4 && c.split_k != 8)
    return "split_k must be 1, 2, 4 or 8 (blocks of one cluster)";
  // ptxas spills 16 bytes in some of these (the block then holds 128
  // accumulators, 128-token rows to gather and the cluster reduction); split-k
  // is for grids with few tiles, i.e. few tokens, where 128-token tiles lose.
  if (c.split_k > 1 && c.block_n > 64) return "split-k takes token tiles of at most 64";
  if (c.multicast != 1 && c.multicast != 2) return "multicast must be 1 or 2 (blocks of one cluster)";
  if (c.multicast > 1 && c.split_k > 1) return "multicast and split-k both take the cluster: one or the other";
  if (c.row_group != 0 && c.row_group != 4 && c.row_group != 8 && c.row_group != 16)
    return "row_group must be 0, 4, 8 or 16";
  if (c.row_group && c.tokens_first) return "row groups order row-first tiles, not token-first ones";
  if (c.split_operands && weight_operands(spec) != 2) return "a warpgroup per operand needs two operands (gated up)";
  if (c.split_operands && c.block_m != 64)
    return "a warpgroup per operand takes block_m = 64 (two consumer warpgroups; four would not have the registers)";
  if (c.stream_k && !c.persistent) return "stream-K tails split the last round of persistent blocks";
  if (c.stream_k && (spec.grouped || c.split_k != 1 || c.multicast != 1 || c.split_operands))
    return "stream-K tails are for single launches without split-k, multicast or a warpgroup per operand";
  if (c.persistent && (spec.sparsity.N != 1 || c.split_k != 1))
    return "persistent needs N = 1 and no split-k: other epilogues stage through the pipeline's shared memory, "
           "which the next tile's loads would overwrite";
  const WgmmaSpResources r = resources(spec, c);
  const int smem = r.smem_bytes + (spec.grouped ? tile_prefix_bytes(spec.experts) : 0);
  if (smem > max_smem_per_block(spec.arch))
    return fmt::format("{} bytes of shared memory{} (limit {} on {})", smem,
                       spec.grouped ? fmt::format(" with the tile prefix of {} experts", spec.experts) : "",
                       max_smem_per_block(spec.arch), spec.arch);
  if (r.accumulator_regs > max_accumulator_regs(spec, c))
    return fmt::format("{} accumulator registers per thread (limit {})", r.accumulator_regs, max_accumulator_regs(spec, c));
  return std::nullopt;
}

std::vector<TileConfig> WgmmaSpFamily::search_space(const KernelSpec& spec) const {
  spec.validate();
  // Schedules beyond one tile per block in row-tile order: the other tile
  // order, persistent blocks (also walking row tiles in groups of 16),
  // split-k clusters, pairs of blocks sharing the weight tiles
  // (worth_timing() drops those that cannot pay off at a bucket's token
  // count).
  struct Schedule {
    int split_k;
    bool persistent, tokens_first;
    int multicast, row_group;
  };
  const Schedule schedules[] = {{1, false, false, 1, 0}, {1, false, true, 1, 0}, {1, true, false, 1, 0},
                                {1, true, false, 1, 16}, {1, true, true, 1, 0},  {2, false, false, 1, 0},
                                {4, false, false, 1, 0}, {1, false, false, 2, 0}, {1, false, true, 2, 0},
                                {1, true, true, 2, 0}};
  std::vector<TileConfig> out;
  for (const Schedule& s : schedules)
    for (int bm : {64, 128, 192})
      for (int bn : {32, 64, 128})
        for (int bk : {128})
          // Deep pipelines (6, 8 stages: shared memory allows them at narrow
          // token tiles) keep more weight bytes in flight where the launch
          // streams weights with little compute (n = 64).
          for (int stages : {2, 3, 4, 6, 8}) {
            if (stages == 2 && (s.split_k != 1 || s.persistent || s.tokens_first)) continue;  // never won plain
            // Multicast saves L2 reads of the weights where many token tiles read them: wide tiles, many tokens;
            // row groups keep the weights of many token tiles in L2 (they gained 1-3.5% at 128-token tiles).
            if ((s.multicast > 1 || s.row_group > 0) && bn < 64) continue;
            // A warpgroup per operand (gated, 64-row tiles: invalid_reason)
            // for 64- and 128-token tiles: a 32-token tile fits both operands in one.
            for (bool split_ops : {false, true}) {
              if (split_ops && bn < 64) continue;
              WgmmaSpConfig c{bm, bn, bk, bm / 16, 1, stages};
              c.split_k = s.split_k;
              c.multicast = s.multicast;
              c.persistent = s.persistent;
              c.tokens_first = s.tokens_first;
              c.row_group = s.row_group;
              c.split_operands = split_ops;
              // Each also with a stream-K tail where it is persistent in row-first order.
              for (bool stream_k : {false, true}) {
                if (stream_k && (!s.persistent || s.tokens_first)) continue;
                c.stream_k = stream_k;
                c.tokens_tma = false;
                if (!invalid_reason(spec, c.config())) out.push_back(c);
                // Token tiles by TMA, for calls whose rows are in order (the
                // down projection, the shared experts, routed tokens copied into
                // list order); with 32-token tiles (4 KB boxes) they lost everywhere.
                c.tokens_tma = bn >= 64;
                if (c.tokens_tma && !invalid_reason(spec, c.config())) out.push_back(c);
              }
            }
          }
  return out;
}

bool WgmmaSpFamily::worth_timing(const KernelSpec& spec, const TileConfig& tc, int64_t tokens, int sm_count) const {
  const WgmmaSpConfig c = WgmmaSpConfig::of(tc);
  const int64_t tiles = tile_count(spec, c, tokens);
  // Splitting k pays only where the tiles leave SMs idle; persistent blocks
  // only where there are more tiles than SMs.
  if (c.split_k > 1 && tiles * c.split_k > 2 * int64_t(sm_count)) return false;
  if (c.persistent && tiles <= sm_count) return false;
  // A multicast pair needs two token tiles per row tile to share.
  if (c.multicast > 1 && std::max<int64_t>(tokens, 1) <= c.block_n) return false;
  // Row groups order tiles differently only past one group of row tiles.
  if (c.row_group > 0 && row_tiles(spec, c.block_m) <= c.row_group) return false;
  // A stream-K tail where there is one to split (sm_count stands for the persistent grid).
  if (c.stream_k && stream_k_workspace(spec, c, tokens, sm_count).split.parts < 2) return false;
  return true;
}

WgmmaSpFamily::StreamKWorkspace WgmmaSpFamily::stream_k_workspace(const KernelSpec& spec, const WgmmaSpConfig& c,
                                                                  int64_t tokens, int grid) {
  StreamKWorkspace w;
  // The shares are whole spans of max(V, block_k) columns (SsmmWgmmaWs's
  // units: k_phys / block_k / kUnit, k_phys being k rounded up to the span).
  const int64_t span = std::max(spec.sparsity.V, c.block_k), units = (spec.k + span - 1) / span;
  w.split = stream_k_split(int(tile_count(spec, c, tokens)), grid, int(units));
  if (w.split.parts < 2) return w;
  const WgmmaSpResources r = resources(spec, c);
  const int64_t consumers = r.threads - 128;
  w.partial_floats = int64_t(w.split.rest) * (w.split.parts - 1) * r.accumulator_regs * consumers;
  w.flags = int64_t(w.split.rest) * (consumers / 32);
  return w;
}

bool WgmmaSpFamily::tma_store(const KernelSpec& spec, const WgmmaSpConfig& c) {
  return tma_store_chunk_tokens(spec, c) > 0;
}

// The largest chunk (64, 32 or 16 tokens, at most half the tile's: the
// chunks come in pairs, one per buffer) two buffers of which fit beside the
// stages; 0 where the kernel keeps the epilogue from registers (chunks of 8
// lost: perf-log, "TMA stores of the epilogue").
int WgmmaSpFamily::tma_store_chunk_tokens(const KernelSpec& spec, const WgmmaSpConfig& c) {
  if (spec.grouped || spec.sparsity.N != 1 || c.split_k != 1 || c.split_operands) return 0;
  const int pipeline = pipeline_resources(spec, c, 1024).smem_bytes;
  for (int tokens : {64, 32, 16})
    if (2 * tokens <= c.block_n && tma_store_smem_bytes(spec, c, pipeline, tokens) <= max_smem_per_block(spec.arch))
      return tokens;
  return 0;
}

int64_t WgmmaSpFamily::tile_count(const KernelSpec& spec, const WgmmaSpConfig& c, int64_t tokens) {
  const int64_t experts = spec.grouped ? spec.experts : 1;
  // A multicast cluster takes token tiles in groups of `multicast` (a block past the tokens computes nothing).
  const int64_t span = int64_t(c.block_n) * c.multicast;
  return row_tiles(spec, c.block_m) * ((std::max<int64_t>(tokens, 1) + span - 1) / span) * c.multicast * experts;
}

GeneratedKernel WgmmaSpFamily::generate(const KernelSpec& spec, const TileConfig& tc) const {
  const WgmmaSpConfig c = WgmmaSpConfig::of(tc);
  spec.validate();
  if (auto why = invalid_reason(spec, c.config()))
    throw Error(ErrorCode::Unsupported, fmt::format("config {} invalid for {}: {}", c.to_string(), spec.to_string(), *why));
  const WgmmaSpResources r = resources(spec, c);
  const int64_t tx =
      weight_operands(spec) * weight_tma_boxes(c.block_m, c.block_k, spec.sparsity.V, c.multicast).stage_bytes() +
      (c.tokens_tma ? c.block_k / 64 * token_tma_box(c.block_n).bytes() : 0);
  return generate_ssmm_pipeline(spec, c,
                                {"wgmma_sp",
                                 {"samoyeds/ssmm_wgmma_ws.cuh"},
                                 fmt::format("samoyeds::SsmmWgmmaWs<{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}>",
                                             pipeline_tile_args(spec, c), c.stages, pipeline_sparsity_args(spec),
                                             c.split_k, c.tokens_first ? "true" : "false", c.multicast,
                                             c.tokens_tma ? "true" : "false", c.row_group,
                                             c.split_operands ? "true" : "false", c.stream_k ? "true" : "false",
                                             tma_store_chunk_tokens(spec, c)),
                                 r.threads,
                                 r.smem_bytes,
                                 /*weight_maps=*/true,
                                 c.persistent,
                                 c.split_k * c.multicast,
                                 {fmt::format("Kernel::kTxBytes == {}, \"the host's TMA boxes carry what the "
                                              "producer expects\"",
                                              tx)}});
}

}  // namespace samoyeds

#include "backends/wgmma_sp/wgmma_sp_family.hpp"

#include <algorithm>
#include <iterator>
#include <optional>
#include <utility>

#include <fmt/format.h>

#include "generator/ssmm_pipeline_source.hpp"
#include "backends/wgmma_sp/weight_tma_boxes.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds {
namespace {

// Row tiles of one expert: its condensed rows (N of every M) over block_m.
int64_t row_tiles(const KernelSpec& spec, int block_m) {
  const int64_t rows = (spec.m + spec.sparsity.M - 1) / spec.sparsity.M * spec.sparsity.N;
  return (rows + block_m - 1) / block_m;
}

// The defaults' row groups: 16 where there are more row tiles than that.
int default_row_group(const KernelSpec& spec, int block_m) { return row_tiles(spec, block_m) > 16 ? 16 : 0; }

// With TMA stores of chunks of `chunk_tokens` (WgmmaSpFamily::tma_store):
// the stages and barriers, then two buffers of output boxes on a swizzle
// period, then the alignment slack (SsmmWgmmaWs::kOutOffset, kSmemBytes).
int tma_store_smem_bytes(const KernelSpec& spec, const TileConfig& c, int pipeline_smem, int chunk_tokens) {
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
WgmmaSpResources WgmmaSpFamily::resources(const KernelSpec& spec, const TileConfig& c) {
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

std::optional<std::string> WgmmaSpFamily::invalid_reason(const KernelSpec& spec, const TileConfig& c) const {
  if (spec.arch != "sm_90a") return fmt::format("wgmma.sp needs sm_90a, not {}", spec.arch);
  if (c.block_m != 64 && c.block_m != 128 && c.block_m != 192) return "block_m must be 64, 128 or 192";
  if (auto why = pipeline_invalid_reason(spec, c)) return why;
  if (c.block_m == 192) {
    // Three consumer warpgroups leave the producer 32 registers (ssmm_wgmma_ws.cuh): only one thread issuing
    // TMA boxes fits, and the epilogue must run from registers (its staging would need 384 output rows).
    if (!c.tokens_tma) return "block_m = 192 needs token tiles by TMA (the gather's producer needs more registers)";
    if (c.split_k != 1 || c.multicast != 1 || spec.sparsity.N != 1)
      return "block_m = 192 stores from registers: N = 1, no split-k, no multicast";
    if (c.split_operands) return "a warpgroup per operand takes block_m = 64";
    if (row_tiles(spec, 128) < 2) return "block_m = 192 is for experts of more than 128 condensed rows";
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
              TileConfig c{bm, bn, bk, bm / 16, 1, stages};
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
                if (!invalid_reason(spec, c)) out.push_back(c);
                // Token tiles by TMA, for calls whose rows are in order (the
                // down projection, the shared experts, routed tokens copied into
                // list order); with 32-token tiles (4 KB boxes) they lost everywhere.
                c.tokens_tma = bn >= 64;
                if (c.tokens_tma && !invalid_reason(spec, c)) out.push_back(c);
              }
            }
          }
  return out;
}

bool WgmmaSpFamily::worth_timing(const KernelSpec& spec, const TileConfig& c, int64_t tokens, int sm_count) const {
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

WgmmaSpFamily::StreamKWorkspace WgmmaSpFamily::stream_k_workspace(const KernelSpec& spec, const TileConfig& c,
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

bool WgmmaSpFamily::tma_store(const KernelSpec& spec, const TileConfig& c) {
  return tma_store_chunk_tokens(spec, c) > 0;
}

// The largest chunk (64, 32 or 16 tokens, at most half the tile's: the
// chunks come in pairs, one per buffer) two buffers of which fit beside the
// stages; 0 where the kernel keeps the epilogue from registers. On the H200
// (fourteenth session, quick passes, bf16 up and down projections of
// Mixtral, OpenMoE-34B and -8B at n = 64-4096, against the same kernels
// storing from registers) chunks of 8 tokens ran 0.92-1.03x (15 of 16 cells
// slower), so tiles with room for no more keep the registers; 192-row tiles
// in chunks of 16 gained 1-10% and 128-row tiles 1-12% at n >= 1024.
int WgmmaSpFamily::tma_store_chunk_tokens(const KernelSpec& spec, const TileConfig& c) {
  if (spec.grouped || spec.sparsity.N != 1 || c.split_k != 1 || c.split_operands) return 0;
  const int pipeline = pipeline_resources(spec, c, 1024).smem_bytes;
  for (int tokens : {64, 32, 16})
    if (2 * tokens <= c.block_n && tma_store_smem_bytes(spec, c, pipeline, tokens) <= max_smem_per_block(spec.arch))
      return tokens;
  return 0;
}

int64_t WgmmaSpFamily::tile_count(const KernelSpec& spec, const TileConfig& c, int64_t tokens) {
  const int64_t experts = spec.grouped ? spec.experts : 1;
  // A multicast cluster takes token tiles in groups of `multicast` (a block past the tokens computes nothing).
  const int64_t span = int64_t(c.block_n) * c.multicast;
  return row_tiles(spec, c.block_m) * ((std::max<int64_t>(tokens, 1) + span - 1) / span) * c.multicast * experts;
}

GeneratedKernel WgmmaSpFamily::generate(const KernelSpec& spec, const TileConfig& c) const {
  spec.validate();
  if (auto why = invalid_reason(spec, c))
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

// From every config timed on the H200 (docs/perf-log.md): the largest tile
// wins as long as the grid has 0.7 of a wave of blocks, even short of one
// (Mixtral n = 256: 128x128 in 112 blocks beat 128x64 in 224 by 1.3x;
// OpenMoE-34B n = 64: 128x32 in 96 blocks beat 64x32 in 192 by 1.28x); a
// token tile at most half the tokens (n = 64: 128x32 beat 128x64); where no
// tile reaches that many blocks (a 1408-row expert at n <= 256), the most
// blocks (64x32). Three stages at 128-token tiles; below, the deepest
// pipeline that fits. `tokens` is per expert for a single launch and the
// per-expert bound for a grouped one.
// Then the schedule, from the H200 sweep of every schedule (perf-log, fourth
// session):
// - more tiles than SMs, at most four waves of them, and N = 1: persistent
//   blocks (DeepSeek n = 4096 -9%, Mixtral n = 1024 -4.5%) in token-first
//   order; past four waves persistence lost once selection was cheap
//   (OpenMoE n = 4096: 12 tiles per SM, +11%);
// - tiles for at most half the SMs: split-k, the largest split of 2 or 4
//   that still fits the SMs (DeepSeek n = 64: 22 tiles, k4 -26%); a split
//   that makes a second wave lost everywhere (DeepSeek n = 256: k2 +13%);
// - else one tile per block in token-first order (Mixtral n = 64 -6%,
//   n = 256 -3.5%; equal on the small expert).
// Token tiles by TMA where tiles are 64 or 128 tokens wide: on the H200 the
// down projection's best config ran 1.17-1.27x faster with them on Mixtral
// and OpenMoE at n = 256-4096 (1.03-1.14x on DeepSeek); only 32-token tiles
// (4 KB boxes) lost, by 4-12%. A call that gathers by id runs the tile with
// the gather instead (runtime/expert_ops.cpp).
// With token tiles by TMA, one launch's tiles (the sixth session's quick
// passes, bf16, Mixtral, OpenMoE-34B, DeepSeek at n = 256-4096, up and down
// projections) want 4 stages at 128-token tiles where k spans at least 16
// k-tiles (Mixtral up n = 4096: s4 0.3240 ms against s3 0.3607; the 11-k-tile
// DeepSeek down lost 15% with s4), and row tiles first unless every tile
// runs at once: tiles running together then share their token tile (Mixtral
// up n = 4096: 0.3240 against 0.3841 token-first; persistent Mixtral down
// n = 4096: 0.2996 against 0.3591). Over those 18 cells the defaults went
// from 1.13x to 1.06x the best config on average. The seventh session's runs
// (same shapes, rows in order) confirmed them against the previous defaults
// (Mixtral up n = 256 1.13x, n = 4096 1.10x; Mixtral down n = 4096 1.17x)
// and added: past one wave of tiles (N = 1) persistent blocks in row-first
// order beat one tile per block at any number of waves, 1.5-6.6% on Mixtral
// and 3-5% on OpenMoE-34B up at n = 4096 in four runs each (the four-wave
// cap of schedule() came from gathered token-first runs); and where there
// are more than 16 row tiles, walking them in groups of 16 (row_group) gave
// another 1-3.5% in three runs. Grouped launches keep the schedule the MoE
// layer was measured with (their tiles may grow to 192 rows, below), except
// for the gated up projection from 4096 tokens: a warpgroup per operand over
// 64 x 128 tiles, persistent, row-first in groups of 16 where there are more
// row tiles (eighth session, Mixtral's
// tuning run at bucket 4096: 1.54 ms against 1.68 for the best other config;
// at bucket 1024 it lost by 3%).
// The grouped gated up projection reads token tiles by TMA only after a copy
// of the routed tokens into list order (one pass over T * top_k rows of k
// values), whose cost against the projection's work goes as 1/m: on
// Mixtral's 14336-row experts the copy and `_xt` won (bucket 1024: 0.485 ms
// against 0.523 gathering; 4096: 1.54 against 1.79), on DeepSeek's 1408-row
// ones the gather won (4096: bm128_bn64_s4_p_tf 0.309 ms against 0.336 with
// `_xt`, 0.335 with the `_so` tile), so experts under 4096 rows gather.
// A call that gathers its rows by id gets schedule()'s tile, the rule fitted
// on gathered tiles (fourth session), with persistent token-first blocks at
// any number of waves past one (N = 1). Before, it ran the in-order
// default's tile with the gather, which failed with "invalid config" where
// that tile was 192 rows, and was slower elsewhere: on the H200 (seventeenth
// session, bf16, two passes, gathered) bm128_bn128_s3_p_tf beat the
// in-order tiles with the gather (s4_p_g16, s4_p_g16_sk) by 1.03-1.11x on
// Mixtral and OpenMoE-34B at n = 1024 and 4096, and the same tile without
// persistence by 1.04-1.07x at n = 4096 (7.8 and 13.6 waves: the four-wave
// cap of schedule() no longer holds).
// 33-64 tokens in order, one launch of one operand: 64 x 64 tiles by TMA
// where their row tiles make 0.7 of a wave. On the H200 (seventeenth
// session, bf16 and f16, n = 48 and 64, two passes each) they beat the
// 128 x 32 gathered default by 1.14x on Mixtral (13.4 against 15.3 us),
// 1.17x on Mixtral-8x22B and 1.10x on OpenMoE-34B; gathered, the same tile
// ran 1.18x slower than 128 x 32, and where the row tiles are fewer
// (OpenMoE-8B: 64, MiniCPM: 45) the default's narrower tiles tied or won.
TileConfig WgmmaSpFamily::default_config(const KernelSpec& spec, int64_t tokens, int sm_count) const {
  return default_for(spec, tokens, sm_count, true);
}

TileConfig WgmmaSpFamily::gathered_default_config(const KernelSpec& spec, int64_t tokens, int sm_count) const {
  return default_for(spec, tokens, sm_count, false);
}

TileConfig WgmmaSpFamily::default_for(const KernelSpec& spec, int64_t tokens, int sm_count, bool rows_in_order) const {
  const bool grouped_gated = spec.grouped && weight_operands(spec) == 2;
  const bool list_copy_pays = !grouped_gated || spec.m >= 4096;
  if (rows_in_order && grouped_gated && list_copy_pays && tokens >= 4096) {
    TileConfig so{64, 128, 128, 4, 1, 3};
    so.split_operands = so.persistent = so.tokens_tma = true;
    so.row_group = default_row_group(spec, so.block_m);
    if (!invalid_reason(spec, so)) return so;
  }
  TileConfig c = schedule(spec, default_tile(spec, tokens, sm_count), tokens, sm_count);
  if (!rows_in_order) {
    TileConfig p = c;
    p.persistent = p.tokens_first = true;
    const bool more_than_a_wave = tile_count(spec, c, tokens) > sm_count;
    return c.split_k == 1 && spec.sparsity.N == 1 && more_than_a_wave && !invalid_reason(spec, p) ? p : c;
  }
  if (!spec.grouped && weight_operands(spec) == 1 && spec.sparsity.N == 1 && tokens > 32 && tokens <= 64) {
    TileConfig t{64, 64, 128, 4, 1, 8};
    t.tokens_tma = true;
    if (!invalid_reason(spec, t) && tile_count(spec, t, tokens) >= enough_blocks(sm_count)) return t;
  }
  TileConfig x = c;
  x.tokens_tma = c.block_n >= 64 && list_copy_pays;
  if (invalid_reason(spec, x)) return c;
  // Tiles of one launch in the order their count asks for.
  const auto order_tiles = [&](TileConfig& t) {
    if (t.split_k != 1) return;
    const int64_t tiles = tile_count(spec, t, tokens);
    t.persistent = spec.sparsity.N == 1 && tiles > sm_count;
    t.tokens_first = !t.persistent && tiles <= sm_count;
    t.row_group = t.persistent ? default_row_group(spec, t.block_m) : 0;
  };
  if (!spec.grouped && x.tokens_tma) {  // gathered (32-token) tiles keep schedule()'s choice
    TileConfig t = x;
    if (t.block_n == 128 && (spec.k + t.block_k - 1) / t.block_k >= 16) t.stages = 4;
    order_tiles(t);
    if (!invalid_reason(spec, t)) x = t;
  }
  // 192-row tiles (three consumer warpgroups, 3 stages) for 128 x 128 `_xt`
  // tiles where they take fewer waves (one launch: in the order their count
  // asks for; grouped: the same schedule): on the H200 (eleventh session,
  // rows in order) one ran like 1.35 128-row tiles once the waves were many
  // (Mixtral up n = 4096: 14 waves of 128 rows against 10 of 192, 1.06x
  // faster), and won or lost by the waves where they were few (MiniCPM up
  // n = 1024: 1 wave against 2, 1.54x; OpenMoE-8B up n = 1024: 2 against 2,
  // 0.82x). Grouped down projections at bucket 4096 (tuning runs, every
  // config): Mixtral's and OpenMoE-34B's winners were 192-row tiles, 1.22x
  // and 1.16x the 128-row default; their layers at T = 4096 took 1% and 6%
  // less time with them.
  TileConfig w = x;
  w.block_m = 192;
  w.warps_m = 12;
  w.stages = 3;
  if (!spec.grouped) order_tiles(w);
  const auto waves = [&](const TileConfig& t) { return (tile_count(spec, t, tokens) + sm_count - 1) / sm_count; };
  // invalid_reason(w) also rules out tiles that gather (192 rows are `_xt` only).
  if (x.block_m == 128 && x.block_n == 128 && !invalid_reason(spec, w) && waves(w) * 1.35 < waves(x)) x = w;
  // Stream-K tails wherever persistent row-first tiles of one operand leave
  // a last round at most half full (the grid taken as one block per SM, as
  // these tiles run): on the H200 (thirteenth session, quick passes,
  // Mixtral-8x7B and -8x22B up, bf16 and f16, n = 1024 and 4096) `_sk` ran
  // 1.01-1.05x faster where it split and equal where it did not; it never
  // lost. The gated projection's tails (two operands' partial tiles) are
  // correct but were not timed, so its defaults keep whole tiles.
  TileConfig k = x;
  k.stream_k = true;
  if (!spec.grouped && weight_operands(spec) == 1 && x.persistent && !x.tokens_first && !invalid_reason(spec, k) &&
      stream_k_workspace(spec, k, tokens, sm_count).split.parts > 1)
    x = k;
  return x;
}

TileConfig WgmmaSpFamily::schedule(const KernelSpec& spec, const TileConfig& tile, int64_t tokens, int sm_count) const {
  TileConfig c = tile;
  c.split_k = c.multicast = 1;
  c.row_group = 0;
  c.persistent = c.tokens_first = false;
  const int64_t tiles = tile_count(spec, c, tokens);
  // Split-k shares are whole segments of max(V, block_k) columns: this many.
  const int64_t span = std::max(spec.sparsity.V, c.block_k), units = (spec.k + span - 1) / span;
  TileConfig s = c;
  // A grouped launch counts its tiles from a per-expert bound, so it may
  // have far fewer than `tiles`; it keeps the rule without the cap, which is
  // what the MoE layer was measured with.
  const bool few_waves = spec.grouped || tiles <= 4 * int64_t(sm_count);
  if (spec.sparsity.N == 1 && tiles > sm_count && few_waves) {
    s.persistent = s.tokens_first = true;
  } else if (2 * tiles <= sm_count) {
    for (int split : {4, 2})
      if (tiles * split <= sm_count && units >= split) {
        s.split_k = split;
        break;
      }
  }
  if (s.split_k == 1 && !s.persistent) s.tokens_first = true;  // one tile per block
  return invalid_reason(spec, s) ? c : s;
}

TileConfig WgmmaSpFamily::default_tile(const KernelSpec& spec, int64_t tokens, int sm_count) const {
  auto first_valid = [&](int bm, int bn) -> std::optional<TileConfig> {
    // Narrow token tiles: the deepest pipeline that fits (at n = 64, 8
    // stages beat 4 by 4-7%); 128-token tiles: 3 or 4 tied.
    static constexpr int kWide[] = {3, 4, 2}, kNarrow[] = {8, 6, 4, 3, 2};
    const bool wide = bn >= 128;
    for (size_t i = 0; i < (wide ? std::size(kWide) : std::size(kNarrow)); ++i) {
      const TileConfig c{bm, bn, 128, bm / 16, 1, wide ? kWide[i] : kNarrow[i]};
      if (!invalid_reason(spec, c)) return c;
    }
    return std::nullopt;
  };
  const std::pair<int, int> order[] = {{128, 128}, {128, 64}, {128, 32}, {64, 32}};
  std::optional<TileConfig> most_blocks;
  int64_t most = -1;
  for (const auto& [bm, bn] : order) {
    if (bn > 32 && bn > tokens / 2) continue;
    const auto c = first_valid(bm, bn);
    if (!c) continue;
    const int64_t blocks = tile_count(spec, *c, tokens);
    if (blocks >= enough_blocks(sm_count)) return *c;
    if (blocks > most) {
      most = blocks;
      most_blocks = c;
    }
  }
  if (most_blocks) return *most_blocks;
  const auto all = search_space(spec);
  if (all.empty())
    throw Error(ErrorCode::Unsupported, fmt::format("wgmma_sp has no valid config for {}", spec.to_string()));
  return all.front();
}

}  // namespace samoyeds

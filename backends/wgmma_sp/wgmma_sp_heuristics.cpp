// wgmma_sp's heuristic defaults: the rules fitted on the H200's timings of
// every config (docs/perf-log.md has the measurements behind each rule).
#include <algorithm>
#include <iterator>
#include <optional>
#include <utility>

#include <fmt/format.h>

#include "backends/wgmma_sp/wgmma_sp_family.hpp"
#include "generator/ssmm_pipeline_source.hpp"
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

}  // namespace

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
    WgmmaSpConfig so{64, 128, 128, 4, 1, 3};
    so.split_operands = so.persistent = so.tokens_tma = true;
    so.row_group = default_row_group(spec, so.block_m);
    if (!invalid_reason(spec, so)) return so;
  }
  WgmmaSpConfig c = schedule(spec, default_tile(spec, tokens, sm_count), tokens, sm_count);
  if (!rows_in_order) {
    WgmmaSpConfig p = c;
    p.persistent = p.tokens_first = true;
    const bool more_than_a_wave = tile_count(spec, c, tokens) > sm_count;
    return c.split_k == 1 && spec.sparsity.N == 1 && more_than_a_wave && !invalid_reason(spec, p) ? p : c;
  }
  if (!spec.grouped && weight_operands(spec) == 1 && spec.sparsity.N == 1 && tokens > 32 && tokens <= 64) {
    WgmmaSpConfig t{64, 64, 128, 4, 1, 8};
    t.tokens_tma = true;
    if (!invalid_reason(spec, t) && tile_count(spec, t, tokens) >= enough_blocks(sm_count)) return t;
  }
  WgmmaSpConfig x = c;
  x.tokens_tma = c.block_n >= 64 && list_copy_pays;
  if (invalid_reason(spec, x)) return c;
  // Tiles of one launch in the order their count asks for.
  const auto order_tiles = [&](WgmmaSpConfig& t) {
    if (t.split_k != 1) return;
    const int64_t tiles = tile_count(spec, t, tokens);
    t.persistent = spec.sparsity.N == 1 && tiles > sm_count;
    t.tokens_first = !t.persistent && tiles <= sm_count;
    t.row_group = t.persistent ? default_row_group(spec, t.block_m) : 0;
  };
  if (!spec.grouped && x.tokens_tma) {  // gathered (32-token) tiles keep schedule()'s choice
    WgmmaSpConfig t = x;
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
  WgmmaSpConfig w = x;
  w.block_m = 192;
  w.warps_m = 12;
  w.stages = 3;
  if (!spec.grouped) order_tiles(w);
  const auto waves = [&](const WgmmaSpConfig& t) { return (tile_count(spec, t, tokens) + sm_count - 1) / sm_count; };
  // invalid_reason(w) also rules out tiles that gather (192 rows are `_xt` only).
  if (x.block_m == 128 && x.block_n == 128 && !invalid_reason(spec, w) && waves(w) * 1.35 < waves(x)) x = w;
  // Stream-K tails wherever persistent row-first tiles of one operand leave
  // a last round at most half full (the grid taken as one block per SM, as
  // these tiles run): on the H200 (thirteenth session, quick passes,
  // Mixtral-8x7B and -8x22B up, bf16 and f16, n = 1024 and 4096) `_sk` ran
  // 1.01-1.05x faster where it split and equal where it did not; it never
  // lost. The gated projection's tails (two operands' partial tiles) are
  // correct but were not timed, so its defaults keep whole tiles.
  WgmmaSpConfig k = x;
  k.stream_k = true;
  if (!spec.grouped && weight_operands(spec) == 1 && x.persistent && !x.tokens_first && !invalid_reason(spec, k) &&
      stream_k_workspace(spec, k, tokens, sm_count).split.parts > 1)
    x = k;
  return x;
}

WgmmaSpConfig WgmmaSpFamily::schedule(const KernelSpec& spec, const WgmmaSpConfig& tile, int64_t tokens, int sm_count) const {
  WgmmaSpConfig c = tile;
  c.split_k = c.multicast = 1;
  c.row_group = 0;
  c.persistent = c.tokens_first = false;
  const int64_t tiles = tile_count(spec, c, tokens);
  // Split-k shares are whole segments of max(V, block_k) columns: this many.
  const int64_t span = std::max(spec.sparsity.V, c.block_k), units = (spec.k + span - 1) / span;
  WgmmaSpConfig s = c;
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

WgmmaSpConfig WgmmaSpFamily::default_tile(const KernelSpec& spec, int64_t tokens, int sm_count) const {
  auto first_valid = [&](int bm, int bn) -> std::optional<WgmmaSpConfig> {
    // Narrow token tiles: the deepest pipeline that fits (at n = 64, 8
    // stages beat 4 by 4-7%); 128-token tiles: 3 or 4 tied.
    static constexpr int kWide[] = {3, 4, 2}, kNarrow[] = {8, 6, 4, 3, 2};
    const bool wide = bn >= 128;
    for (size_t i = 0; i < (wide ? std::size(kWide) : std::size(kNarrow)); ++i) {
      const WgmmaSpConfig c{bm, bn, 128, bm / 16, 1, wide ? kWide[i] : kNarrow[i]};
      if (!invalid_reason(spec, c.config())) return c;
    }
    return std::nullopt;
  };
  const std::pair<int, int> order[] = {{128, 128}, {128, 64}, {128, 32}, {64, 32}};
  std::optional<WgmmaSpConfig> most_blocks;
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
  return WgmmaSpConfig::of(all.front());
}

}  // namespace samoyeds

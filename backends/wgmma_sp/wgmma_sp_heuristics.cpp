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

// The defaults' row groups: 16 where there are more row tiles than that.
int default_row_group(const KernelSpec& spec, int block_m) { return WgmmaSpFamily::row_tiles(spec, block_m) > 16 ? 16 : 0; }

}  // namespace

// The defaults, rule by rule (each rule's measurements on the H200:
// docs/perf-log.md, "the measurements behind wgmma_sp's default rules"):
// - tile: the largest that gives 0.7 of a wave of blocks; a token tile at
//   most half the tokens; where none reaches that, the most blocks. Three
//   stages at 128-token tiles, else the deepest pipeline that fits;
// - schedule: persistent token-first blocks past one wave (at most four, N =
//   1); split-k 4 or 2 where tiles fill at most half the SMs; else one tile
//   per block, token-first;
// - rows in order: token tiles by TMA at 64/128-token tiles, 4 stages at
//   128-token tiles over >= 16 k-tiles, row-first persistent blocks past a
//   wave in groups of 16 row tiles; 64 x 64 tiles at 33-64 tokens where
//   they make 0.7 of a wave; grouped gated up from 4096 tokens: a warpgroup
//   per operand over 64 x 128 tiles (experts of >= 4096 rows: the list
//   copy pays only there);
// - a call that gathers by id: schedule()'s tile, persistent token-first
//   past one wave.
// `tokens` is per expert for a single launch and the per-expert bound for a
// grouped one.
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
  // 192-row tiles for 128 x 128 `_xt` tiles where they take fewer waves
  // (one ran like 1.35 128-row tiles; perf-log, "192-row tiles").
  WgmmaSpConfig w = x;
  w.block_m = 192;
  w.warps_m = 12;
  w.stages = 3;
  if (!spec.grouped) order_tiles(w);
  const auto waves = [&](const WgmmaSpConfig& t) { return (tile_count(spec, t, tokens) + sm_count - 1) / sm_count; };
  // invalid_reason(w) also rules out tiles that gather (192 rows are `_xt` only).
  if (x.block_m == 128 && x.block_n == 128 && !invalid_reason(spec, w) && waves(w) * 1.35 < waves(x)) x = w;
  // Stream-K tails where persistent row-first tiles of one operand leave a
  // last round at most half full (1.01-1.05x, never slower; perf-log,
  // "Stream-K tails"). The gated projection's tails were not timed.
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

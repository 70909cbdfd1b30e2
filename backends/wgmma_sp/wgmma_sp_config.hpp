// The wgmma_sp backend's config: the common tile plus its schedule, whose
// one field list (below) names the values TileConfig::schedule holds, in
// the order of the text name's suffixes. Only this backend reads them.
#pragma once
#include "samoyeds/kernel_spec.hpp"

namespace samoyeds {

// X(type, name, suffix, default, flag)
#define SAMOYEDS_WGMMA_SP_SCHEDULE(X)                                                                       \
  /* blocks per tile, each a share of k, summed in a cluster (1, 2, 4, 8) */                              \
  X(int, split_k, "_k", 1, false)                                                                          \
  /* blocks of one cluster sharing a row tile, its weight tiles brought once by TMA multicast (1, 2) */    \
  X(int, multicast, "_m", 1, false)                                                                        \
  /* about one block per SM, each walking its tiles */                                                     \
  X(bool, persistent, "_p", 0, true)                                                                       \
  /* tile order: token tile fastest (default: row tile fastest) */                                         \
  X(bool, tokens_first, "_tf", 0, true)                                                                    \
  /* row-first order in groups of this many row tiles, each walking every token tile (0, 4, 8, 16) */      \
  X(int, row_group, "_g", 0, false)                                                                        \
  /* gated up, block_m = 64: a consumer warpgroup per weight operand over the whole tile */                \
  X(bool, split_operands, "_so", 0, true)                                                                  \
  /* token tiles by TMA boxes of consecutive rows: calls whose rows are in order */                        \
  X(bool, tokens_tma, "_xt", 0, true)                                                                      \
  /* persistent single launches: the last round's tiles split along k over idle blocks */                  \
  X(bool, stream_k, "_sk", 0, true)

const ScheduleFields& wgmma_sp_schedule_fields();

struct WgmmaSpConfig {
#define SAMOYEDS_WGMMA_TILE_MEMBER(name, prefix, init) int name = init;
  SAMOYEDS_TILE_FIELDS(SAMOYEDS_WGMMA_TILE_MEMBER)
#undef SAMOYEDS_WGMMA_TILE_MEMBER
#define SAMOYEDS_WGMMA_SCHEDULE_MEMBER(type, name, suffix, init, flag) type name = init;
  SAMOYEDS_WGMMA_SP_SCHEDULE(SAMOYEDS_WGMMA_SCHEDULE_MEMBER)
#undef SAMOYEDS_WGMMA_SCHEDULE_MEMBER

  static WgmmaSpConfig of(const TileConfig& c);
  TileConfig config() const;
  operator TileConfig() const { return config(); }  // NOLINT: a wgmma_sp config is a TileConfig
  int threads() const { return warps_m * warps_n * 32; }
  std::string to_string() const { return config().to_string(); }
  bool default_schedule() const { return config().default_schedule(); }
};

inline bool operator==(const WgmmaSpConfig& a, const WgmmaSpConfig& b) { return a.config() == b.config(); }
inline bool operator==(const WgmmaSpConfig& a, const TileConfig& b) { return a.config() == b; }
inline bool operator==(const TileConfig& a, const WgmmaSpConfig& b) { return a == b.config(); }

}  // namespace samoyeds

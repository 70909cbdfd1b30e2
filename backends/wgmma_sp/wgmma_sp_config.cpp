#include "backends/wgmma_sp/wgmma_sp_config.hpp"

namespace samoyeds {
namespace {

enum Field {
#define SAMOYEDS_WGMMA_FIELD_ENUM(type, name, suffix, init, flag) k_##name,
  SAMOYEDS_WGMMA_SP_SCHEDULE(SAMOYEDS_WGMMA_FIELD_ENUM)
#undef SAMOYEDS_WGMMA_FIELD_ENUM
  kFieldCount
};
static_assert(kFieldCount <= TileConfig::kMaxScheduleFields, "TileConfig::schedule holds too few values");

constexpr ScheduleField kFields[] = {
#define SAMOYEDS_WGMMA_FIELD_ROW(type, name, suffix, init, flag) {#name, suffix, init, flag},
    SAMOYEDS_WGMMA_SP_SCHEDULE(SAMOYEDS_WGMMA_FIELD_ROW)
#undef SAMOYEDS_WGMMA_FIELD_ROW
};

}  // namespace

const ScheduleFields& wgmma_sp_schedule_fields() {
  static const ScheduleFields fields{kFields, kFieldCount};
  return fields;
}

WgmmaSpConfig WgmmaSpConfig::of(const TileConfig& c) {
  WgmmaSpConfig w;
#define SAMOYEDS_WGMMA_TILE_IN(name, prefix, init) w.name = c.name;
  SAMOYEDS_TILE_FIELDS(SAMOYEDS_WGMMA_TILE_IN)
#undef SAMOYEDS_WGMMA_TILE_IN
#define SAMOYEDS_WGMMA_SCHEDULE_IN(type, name, suffix, init, flag) \
  w.name = type(c.schedule[k_##name] != 0 ? c.schedule[k_##name] : init);
  SAMOYEDS_WGMMA_SP_SCHEDULE(SAMOYEDS_WGMMA_SCHEDULE_IN)
#undef SAMOYEDS_WGMMA_SCHEDULE_IN
  return w;
}

TileConfig WgmmaSpConfig::config() const {
  TileConfig c;
#define SAMOYEDS_WGMMA_TILE_OUT(name, prefix, init) c.name = name;
  SAMOYEDS_TILE_FIELDS(SAMOYEDS_WGMMA_TILE_OUT)
#undef SAMOYEDS_WGMMA_TILE_OUT
#define SAMOYEDS_WGMMA_SCHEDULE_OUT(type, name, suffix, init, flag) \
  c.schedule[k_##name] = int(name) == init ? 0 : int(name);
  SAMOYEDS_WGMMA_SP_SCHEDULE(SAMOYEDS_WGMMA_SCHEDULE_OUT)
#undef SAMOYEDS_WGMMA_SCHEDULE_OUT
  c.schedule_fields = &wgmma_sp_schedule_fields();
  return c;
}

}  // namespace samoyeds

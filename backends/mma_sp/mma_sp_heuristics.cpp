// Untuned defaults for the mma_sp backend. Small token counts want narrow
// token tiles and more row tiles so every SM streams weights; large counts
// want big tiles for reuse. Falls back to the first valid config.
#include <fmt/format.h>

#include "backends/mma_sp/mma_sp_family.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds {

TileConfig mma_sp_default_config(const KernelSpec& spec, int64_t tokens) {
  // Fixed tables: this runs on every untuned launch, so no allocation here.
  static const TileConfig kSmall[] = {{64, 32, 64, 4, 1, 4}, {64, 32, 64, 2, 2, 4}};
  static const TileConfig kMedium[] = {{64, 64, 64, 2, 2, 4}, {64, 64, 64, 4, 1, 3}};
  static const TileConfig kLarge[] = {{128, 128, 64, 2, 4, 3}, {128, 64, 64, 4, 2, 3}};
  static const TileConfig kLargeGated[] = {{64, 128, 64, 2, 4, 3}, {64, 64, 64, 2, 2, 3}};
  const bool gated = gated_epilogue(spec.epilogue);
  const TileConfig* wishes = tokens <= 32 ? kSmall : tokens <= 128 ? kMedium : gated ? kLargeGated : kLarge;
  const MmaSpFamily family;
  for (int i = 0; i < 2; ++i)
    if (!family.invalid_reason(spec, wishes[i])) return wishes[i];
  const auto all = family.search_space(spec);
  if (all.empty()) throw Error(ErrorCode::Unsupported, "no valid mma_sp config for " + spec.to_string());
  return all.front();
}

}  // namespace samoyeds

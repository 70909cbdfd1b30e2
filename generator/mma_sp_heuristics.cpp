// Untuned defaults for the mma_sp backend. Small token counts want narrow
// token tiles and more row tiles so every SM streams weights; large counts
// want big tiles for reuse. Falls back to the first valid config.
#include <fmt/format.h>

#include "generator/mma_sp_family.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds {

TileConfig mma_sp_default_config(const KernelSpec& spec, int64_t tokens) {
  const MmaSpFamily family;
  const bool gated = spec.epilogue == Epilogue::GatedSilu;
  std::vector<TileConfig> wishes;
  if (tokens <= 32)
    wishes = {{64, 32, 64, 4, 1, 4}, {64, 32, 64, 2, 2, 4}};
  else if (tokens <= 128)
    wishes = {{64, 64, 64, 2, 2, 4}, {64, 64, 64, 4, 1, 3}};
  else
    wishes = gated ? std::vector<TileConfig>{{64, 128, 64, 2, 4, 3}, {64, 64, 64, 2, 2, 3}}
                   : std::vector<TileConfig>{{128, 128, 64, 2, 4, 3}, {128, 64, 64, 4, 2, 3}};
  for (const auto& c : wishes)
    if (!family.invalid_reason(spec, c)) return c;
  const auto all = family.search_space(spec);
  if (all.empty()) throw Error(ErrorCode::Unsupported, "no valid mma_sp config for " + spec.to_string());
  return all.front();
}

}  // namespace samoyeds

// mma_sp's launch: one block per (row tile, token tile), experts on z.
#include <fmt/format.h>

#include "backends/launch_common.hpp"
#include "backends/mma_sp/mma_sp_family.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds {

void MmaSpFamily::launch(const ExpertLaunch& l, LaunchContext& context) const {
  SsmmArgs a = ssmm_args(l);
  GroupedSsmmArgs g{};
  void* params[] = {&a};
  LaunchShape shape;
  shape.grid_x = unsigned((l.rows + l.config.block_m - 1) / l.config.block_m);
  const int64_t token_tiles = (l.n + l.config.block_n - 1) / l.config.block_n;
  if (token_tiles > 65535)
    throw Error(ErrorCode::InvalidArgument,
                fmt::format("{} tokens exceed the grid limit for block_n {}", l.n, l.config.block_n));
  shape.grid_y = unsigned(token_tiles);
  if (l.spec.grouped) {
    g = grouped_ssmm_args(l, a);
    params[0] = &g;
    shape.grid_z = unsigned(l.spec.experts);
  }
  launch_expert_kernel(l, context.device, shape, params);
}

const KernelFamily& mma_sp_family() {
  static const MmaSpFamily family;
  return family;
}

}  // namespace samoyeds

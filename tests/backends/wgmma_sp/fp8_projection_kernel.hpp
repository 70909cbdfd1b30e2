// The FP8 expert projection kernel (SsmmWgmmaWs over E4M3) as its tests
// instantiate it before the op offers it: one projection (gated or not),
// tokens by TMA in order, 1:2 row groups at V = 128, 256-column k-tiles.
// The GPU test launches it; the CPU test compiles it and reads its SASS.
#pragma once
#include <fmt/format.h>

#include "generator/generated_kernel.hpp"

namespace samoyeds::test {

struct Fp8Tile {
  int block_m, block_n, stages;
  bool gated;
  int consumers() const { return block_m / 64 * 128; }
};

inline GeneratedKernel fp8_projection_kernel(const Fp8Tile& t) {
  GeneratedKernel g;
  g.kernel_name = "samoyeds_fp8_ssmm";
  g.threads = t.consumers() + 128;
  g.source = fmt::format(
      "#include \"samoyeds/ssmm_wgmma_ws.cuh\"\n"
      "typedef samoyeds::SsmmWgmmaWs<samoyeds::E4M3, {}, {}, 256, {}, 128, 1, 2, samoyeds::{}, 1, false, 1, true>\n"
      "    Kernel;\n"
      "static_assert(Kernel::kThreads == {}, \"threads\");\n"
      "extern \"C\" __global__ void __launch_bounds__({}, 1)\n"
      "samoyeds_fp8_ssmm(const samoyeds::SsmmArgs args, const __grid_constant__ samoyeds::TmaWeightMaps maps) {{\n"
      "  samoyeds::grid_dependency_begin();\n"
      "  extern __shared__ __align__(128) unsigned char smem[];\n"
      "  Kernel kernel;\n"
      "  kernel.run(samoyeds::SingleProblem{{args}}, smem, maps);\n"
      "}}\n",
      t.block_m, t.block_n, t.stages, t.gated ? "kEpiGatedSilu" : "kEpiNone", g.threads, g.threads);
  return g;
}

// The tiles that fit the registers without spills (three accumulator sets
// of block_n / 2 floats per operand: the product and two rows' sums).
inline const Fp8Tile kFp8Tiles[] = {{128, 64, 4, false}, {64, 64, 4, true}, {128, 32, 4, true}};

}  // namespace samoyeds::test

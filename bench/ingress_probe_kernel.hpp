// The TMA delivery probe's kernels (templates/ingress_probe.cuh): the stage
// shapes bench/ingress_bench.cpp measures, and the source of each. Shared
// with the CPU test that compiles them (tests/generator/nvrtc_compile_test.cpp).
#pragma once
#include <algorithm>

#include <fmt/format.h>

#include "generator/generated_kernel.hpp"

namespace samoyeds {

struct IngressStageShape {
  int stages, boxes, box_rows;
  int multicast;  // 2: pairs of blocks (clusters) that each bring half of every stage to both
  const char* like;  // what in our kernels it stands for
  int bytes() const { return boxes * box_rows * 128; }
};
// 128-row boxes are our token boxes (128 tokens x 64 values); 192 rows the
// weight box of a 192-row tile.
inline const IngressStageShape kIngressStageShapes[] = {
    {3, 4, 128, 1, "3 x 64 KB: about a 192 x 128 tile's stages (59 KB)"},
    {4, 3, 128, 1, "4 x 48 KB: about a 128 x 128 tile's stages (50 KB)"},
    {6, 2, 128, 1, "6 x 32 KB"},
    {3, 3, 192, 1, "3 x 72 KB in 24 KB boxes"},
    {1, 1, 128, 1, "1 x 16 KB: one box in flight (latency)"},
    {3, 4, 128, 2, "3 x 64 KB, multicast pairs"},
};

inline GeneratedKernel ingress_probe_kernel(const IngressStageShape& s) {
  GeneratedKernel g;
  g.kernel_name = "samoyeds_ingress_probe";
  g.threads = 64;
  g.cluster_blocks = s.multicast;
  // At least 120 KB, so that two blocks never share an SM.
  g.smem_bytes = std::max(s.stages * s.bytes() + 16 * s.stages + 1024, 120 << 10);
  g.source = fmt::format(
      "#include \"samoyeds/ingress_probe.cuh\"\n"
      "extern \"C\" __global__ void __launch_bounds__(64, 1){}\n"
      "samoyeds_ingress_probe(const samoyeds::IngressProbeArgs a, const __grid_constant__ samoyeds::TensorMap map) {{\n"
      "  samoyeds::grid_dependency_begin();\n"
      "  extern __shared__ __align__(128) unsigned char smem[];\n"
      "  samoyeds::ingress_probe<{}, {}, {}, {}>(a, map, smem);\n"
      "}}\n",
      s.multicast > 1 ? fmt::format(" __cluster_dims__({}, 1, 1)", s.multicast) : "", s.stages, s.boxes,
      s.box_rows, s.multicast);
  return g;
}

}  // namespace samoyeds

#include "backends/wgmma_sp/fp8_projection.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "core/kernel_launch.hpp"
#include "samoyeds/device.hpp"
#include "samoyeds/error.hpp"
#include "templates/kernel_args.cuh"

namespace samoyeds {
namespace {

constexpr int kBlockK = 256, kV = 128, kAlign = 1024;
int round_up(int v, int a) { return (v + a - 1) / a * a; }
int consumers(const Fp8Tile& t) { return t.block_m / 64 * 128; }

}  // namespace

std::string Fp8Tile::to_string() const {
  return fmt::format("bm{}_bn{}_bk{}_s{}{}", block_m, block_n, kBlockK, stages, gated ? "_gated" : "");
}

const std::vector<Fp8Tile>& fp8_tiles() {
  static const std::vector<Fp8Tile> tiles = {{128, 64, 4, false}, {64, 64, 4, true}, {128, 32, 4, true}};
  return tiles;
}

// SsmmPipeline's and SsmmWgmmaWs's shared-memory arithmetic at E4M3, 1:2, V = 128.
int fp8_projection_smem_bytes(const Fp8Tile& t) {
  const int bm = t.block_m, bn = t.block_n, w = t.gated ? 2 : 1;
  const int a = bm * kBlockK / 2, meta = bm / 16 * kBlockK / 64 * 128, sel = kBlockK / kV * bm;
  const int wscale = kBlockK / 128 * (bm / 16) * 4, xscale = kBlockK / 128 * bn * 4;
  const int per_operand = round_up(a + meta + sel + wscale, kAlign);
  const int stage = round_up(w * per_operand + bn * kBlockK + xscale, kAlign);
  const int epi = w * bn * (2 * bm + 4) * 4;
  const int pipeline = std::max(t.stages * stage, epi) + bn * 4;
  return pipeline + 2 * t.stages * 8 + kAlign;
}

GeneratedKernel generate_fp8_projection(const Fp8Tile& t, bool grouped) {
  GeneratedKernel g;
  g.kernel_name = grouped ? "samoyeds_grouped_fp8_ssmm_wgmma_sp" : "samoyeds_fp8_ssmm_wgmma_sp";
  g.threads = consumers(t) + 128;
  g.smem_bytes = fp8_projection_smem_bytes(t);
  g.layout_id = "sp_tc_e4m3.v1";
  g.persistent = true;
  g.tile_prefix = grouped;
  g.source = fmt::format(
      "// samoyeds wgmma_sp FP8 kernel: e4m3 1:2x2:4/V128 {tile}{grouped}\n"
      "#include \"samoyeds/ssmm_wgmma_ws.cuh\"\n{include}"
      "typedef samoyeds::SsmmWgmmaWs<samoyeds::E4M3, {bm}, {bn}, {bk}, {stages}, {v}, 1, 2, samoyeds::{epi}, 1, "
      "false, 1, true>\n"
      "    Kernel;\n"
      "static_assert(Kernel::kSmemBytes == {smem}, \"host and device disagree on shared memory\");\n"
      "static_assert(Kernel::kThreads == {threads}, \"host and device disagree on threads\");\n"
      "extern \"C\" __global__ void __launch_bounds__({threads}, 1)\n"
      "{name}(const samoyeds::{args}, const __grid_constant__ samoyeds::TmaWeightMaps maps) {{\n"
      "  samoyeds::grid_dependency_begin();\n"
      "  extern __shared__ __align__(128) unsigned char smem[];\n"
      "  Kernel kernel;\n"
      "  kernel.run(samoyeds::{problem}, smem, maps);\n"
      "}}\n",
      fmt::arg("grouped", grouped ? " grouped" : ""),
      fmt::arg("include", grouped ? "#include \"samoyeds/grouped_experts.cuh\"\n" : ""),
      fmt::arg("args", grouped ? "GroupedSsmmArgs grouped" : "SsmmArgs args"),
      fmt::arg("problem", grouped ? "GroupedProblem<false>{grouped}" : "SingleProblem{args}"),
      fmt::arg("tile", t.to_string()), fmt::arg("bm", t.block_m), fmt::arg("bn", t.block_n), fmt::arg("bk", kBlockK),
      fmt::arg("stages", t.stages), fmt::arg("v", kV), fmt::arg("epi", t.gated ? "kEpiGatedSilu" : "kEpiNone"),
      fmt::arg("smem", g.smem_bytes), fmt::arg("threads", g.threads), fmt::arg("name", g.kernel_name));
  return g;
}

TmaWeightMaps fp8_projection_maps(const Fp8Tile& t, const Fp8ProjectionCall& c) {
  // What the maps cannot tell: the second operand of a gated tile, and the
  // token scales' rows (which the kernel reads by pointer).
  if (t.gated && !c.operands[1].values)
    throw Error(ErrorCode::InvalidArgument, "FP8 projection: a gated tile needs two weight operands");
  if (c.n > 0 && (!c.x_scale_inv || c.x_scale_ld < c.n))
    throw Error(ErrorCode::InvalidArgument,
                fmt::format("FP8 projection: token scales of {} tokens need rows of at least that many, not {}", c.n,
                            c.x_scale_ld));
  WeightMapShape shape;
  shape.rows_pad = c.rows_pad;
  shape.k_phys = c.k_phys;
  shape.V = kV;
  shape.block_m = t.block_m;
  shape.block_k = kBlockK;
  shape.experts = c.offsets ? c.experts : 1;
  return encode_fp8_maps(c.operands, t.gated ? 2 : 1, shape, c.x, c.n, c.k, t.block_n);
}

CUresult launch_fp8_projection(const Device& device, CUfunction f, const Fp8Tile& t, const Fp8ProjectionCall& c,
                               const TmaWeightMaps& maps, CUstream stream) {
  if (c.n <= 0) return CUDA_SUCCESS;
  SsmmArgs args{};
  args.x = static_cast<const unsigned short*>(c.x);  // the kernel reads its tokens by TMA
  args.y = static_cast<unsigned short*>(c.y);
  args.error_flag = c.error_flag;
  args.m = int(c.m);
  args.k = int(c.k);
  args.n = int(c.n);
  args.x_rows = int(c.n);
  args.ldx = int(c.k);
  args.ldy = int(c.m);
  args.rows_pad = int(c.rows_pad);
  args.k_phys = int(c.k_phys);
  args.row_scale = c.row_scale;
  args.x_scale_inv = static_cast<const float*>(c.x_scale_inv);
  args.x_scale_ld = int(c.x_scale_ld);
  const bool grouped = c.offsets != nullptr;
  const int64_t row_tiles = ((c.m + 1) / 2 + t.block_m - 1) / t.block_m;
  const int64_t tiles = row_tiles * ((c.n + t.block_n - 1) / t.block_n) * (grouped ? c.experts : 1);
  GroupedSsmmArgs g{};
  g.base = args;
  g.offsets = c.offsets;
  g.x_is_compact = 1;  // tokens in list order: the quantizing gather wrote them so
  g.experts = c.experts;
  void* params[] = {grouped ? static_cast<void*>(&g) : static_cast<void*>(&args), const_cast<TmaWeightMaps*>(&maps)};
  const int smem = fp8_projection_smem_bytes(t) + (grouped ? tile_prefix_bytes(c.experts) : 0);
  const LaunchShape shape{unsigned(std::min<int64_t>(tiles, device.info().sm_count)), 1, 1,
                          unsigned(consumers(t) + 128), unsigned(smem)};
  return launch_kernel(device, f, shape, stream, params);
}

}  // namespace samoyeds

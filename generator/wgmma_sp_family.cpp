#include "generator/wgmma_sp_family.hpp"

#include <algorithm>
#include <optional>
#include <utility>

#include <fmt/format.h>

#include "generator/ssmm_pipeline_source.hpp"
#include "generator/weight_tma_boxes.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds {

// Mirrors SsmmWgmmaWs: the pipeline's tiles (operands on 1024-byte swizzle
// periods) plus a producer warpgroup, two mbarriers per stage and the slack
// that aligns the dynamic shared memory to a swizzle period.
WgmmaSpResources WgmmaSpFamily::resources(const KernelSpec& spec, const TileConfig& c) {
  const PipelineResources p = pipeline_resources(spec, c, 1024);
  return {p.threads + 128, p.smem_bytes + 2 * c.stages * 8 + 1024, p.accumulator_regs};
}

std::optional<std::string> WgmmaSpFamily::invalid_reason(const KernelSpec& spec, const TileConfig& c) const {
  if (spec.arch != "sm_90a") return fmt::format("wgmma.sp needs sm_90a, not {}", spec.arch);
  if (auto why = pipeline_invalid_reason(spec, c)) return why;
  if (c.block_k != 128) return "block_k must be 128 (a k-tile's weight row is one 128-byte swizzle atom)";
  if (c.block_n != 32 && c.block_n != 64 && c.block_n != 128) return "block_n must be 32, 64 or 128 (one wgmma N)";
  if (c.warps_m != c.block_m / 16 || c.warps_n != 1)
    return "a warpgroup owns 64 rows and all tokens: warps_m = block_m / 16, warps_n = 1";
  const WgmmaSpResources r = resources(spec, c);
  if (r.smem_bytes > max_smem_per_block(spec.arch))
    return fmt::format("{} bytes of shared memory (limit {} on {})", r.smem_bytes, max_smem_per_block(spec.arch),
                       spec.arch);
  if (r.accumulator_regs > max_accumulator_regs(spec, c))
    return fmt::format("{} accumulator registers per thread (limit {})", r.accumulator_regs, max_accumulator_regs(spec, c));
  return std::nullopt;
}

std::vector<TileConfig> WgmmaSpFamily::search_space(const KernelSpec& spec) const {
  spec.validate();
  std::vector<TileConfig> out;
  for (int bm : {64, 128})
    for (int bn : {32, 64, 128})
      for (int bk : {128})
        for (int stages : {2, 3, 4}) {
          TileConfig c{bm, bn, bk, bm / 16, 1, stages};
          if (!invalid_reason(spec, c)) out.push_back(c);
        }
  return out;
}

GeneratedKernel WgmmaSpFamily::generate(const KernelSpec& spec, const TileConfig& c) const {
  spec.validate();
  if (auto why = invalid_reason(spec, c))
    throw Error(ErrorCode::Unsupported, fmt::format("config {} invalid for {}: {}", c.to_string(), spec.to_string(), *why));
  const WgmmaSpResources r = resources(spec, c);
  const int64_t tx = weight_operands(spec) * weight_tma_boxes(c.block_m, c.block_k, spec.sparsity.V).bytes();
  return generate_ssmm_pipeline(spec, c,
                                {"wgmma_sp",
                                 {"samoyeds/ssmm_wgmma_ws.cuh"},
                                 fmt::format("samoyeds::SsmmWgmmaWs<{}, {}, {}>", pipeline_tile_args(spec, c),
                                             c.stages, pipeline_sparsity_args(spec)),
                                 r.threads,
                                 r.smem_bytes,
                                 /*weight_maps=*/true,
                                 {fmt::format("Kernel::kWeightTxBytes == {}, \"the host's TMA boxes carry what the "
                                              "producer expects\"",
                                              tx)}});
}

// From every config timed on the H200 (docs/perf-log.md): the largest tile
// wins as long as the grid has about a wave of blocks, even short of one
// (Mixtral n = 256: 128x128 in 112 blocks beat 128x64 in 224 by 1.3x); a
// token tile at most half the tokens (n = 64: 128x32 beat 128x64); where no
// tile reaches that many blocks (a 1408-row expert at n <= 256), the most
// blocks (64x32). Three stages at 128-token tiles, four below. `tokens` is
// per expert for a single launch and the per-expert bound for a grouped one.
TileConfig WgmmaSpFamily::default_config(const KernelSpec& spec, int64_t tokens) const {
  constexpr int64_t kEnoughBlocks = 100;
  const int64_t rows = spec.sparsity.N < spec.sparsity.M ? spec.m * spec.sparsity.N / spec.sparsity.M : spec.m;
  const int64_t experts = spec.grouped ? spec.experts : 1;
  auto blocks = [&](int bm, int bn) {
    return (rows + bm - 1) / bm * ((std::max<int64_t>(tokens, 1) + bn - 1) / bn) * experts;
  };
  auto first_valid = [&](int bm, int bn) -> std::optional<TileConfig> {
    const int wide[] = {3, 4, 2}, narrow[] = {4, 3, 2};
    for (int i = 0; i < 3; ++i) {
      const TileConfig c{bm, bn, 128, bm / 16, 1, bn >= 128 ? wide[i] : narrow[i]};
      if (!invalid_reason(spec, c)) return c;
    }
    return std::nullopt;
  };
  const std::pair<int, int> order[] = {{128, 128}, {128, 64}, {128, 32}, {64, 32}};
  std::optional<TileConfig> most_blocks;
  int64_t most = -1;
  for (const auto& [bm, bn] : order) {
    if (bn > 32 && bn > tokens / 2) continue;
    const auto c = first_valid(bm, bn);
    if (!c) continue;
    if (blocks(bm, bn) >= kEnoughBlocks) return *c;
    if (blocks(bm, bn) > most) {
      most = blocks(bm, bn);
      most_blocks = c;
    }
  }
  if (most_blocks) return *most_blocks;
  const auto all = search_space(spec);
  if (all.empty())
    throw Error(ErrorCode::Unsupported, fmt::format("wgmma_sp has no valid config for {}", spec.to_string()));
  return all.front();
}

}  // namespace samoyeds

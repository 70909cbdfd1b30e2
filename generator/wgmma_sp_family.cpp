#include "generator/wgmma_sp_family.hpp"

#include <fmt/format.h>

#include "generator/ssmm_pipeline_source.hpp"
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
  return generate_ssmm_pipeline(spec, c,
                                {"wgmma_sp",
                                 {"samoyeds/ssmm_wgmma_ws.cuh"},
                                 fmt::format("samoyeds::SsmmWgmmaWs<{}, {}, {}>", pipeline_tile_args(spec, c),
                                             c.stages, pipeline_sparsity_args(spec)),
                                 r.threads,
                                 r.smem_bytes,
                                 /*weight_maps=*/true});
}

// Two warpgroups of 64 rows; the widest token tile the accumulators allow
// once there are enough tokens to fill it; deep stages to cover HBM latency.
TileConfig WgmmaSpFamily::default_config(const KernelSpec& spec, int64_t tokens) const {
  for (int bn : {128, 64, 32}) {
    if (bn > 32 && tokens <= bn / 2) continue;
    for (int stages : {4, 3, 2}) {
      const TileConfig c{128, bn, 128, 8, 1, stages};
      if (!invalid_reason(spec, c)) return c;
    }
  }
  const auto all = search_space(spec);
  if (all.empty())
    throw Error(ErrorCode::Unsupported, fmt::format("wgmma_sp has no valid config for {}", spec.to_string()));
  return all.front();
}

}  // namespace samoyeds

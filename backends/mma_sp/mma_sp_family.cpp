#include "backends/mma_sp/mma_sp_family.hpp"

#include <fmt/format.h>

#include "generator/ssmm_pipeline_source.hpp"
#include "format/device_layout.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds {

MmaSpResources MmaSpFamily::resources(const KernelSpec& spec, const TileConfig& c) {
  const PipelineResources p = pipeline_resources(spec, c);
  const int w = weight_operands(spec);
  const int wm = c.block_m / c.warps_m, wn = c.block_n / c.warps_n;
  MmaSpResources r;
  r.threads = p.threads;
  r.smem_bytes = p.smem_bytes;
  r.accumulator_regs = p.accumulator_regs;
  r.operand_regs = r.accumulator_regs + w * (wm / 16) * 5 + (wn / 8) * 4;
  return r;
}

int MmaSpFamily::max_operand_regs(const KernelSpec& spec, const TileConfig& cfg) {
  const auto& sp = spec.sparsity;
  const int slots = sp.N < sp.M ? sp.M : 1;
  if (sp.V < 64 || slots > 2) return 112;
  // With four k32 steps per stage, 164 (64 x 32 warp tiles) sits at the
  // 255-register limit: the gated op's second operand's addresses tipped it
  // into spilling, and so did the single operand's metadata reads of the
  // sp_tc.v2 layout (a lane's two words of a k-tile side by side).
  return cfg.block_k == 128 ? 160 : 168;
}

std::optional<std::string> MmaSpFamily::invalid_reason(const KernelSpec& spec, const TileConfig& c) const {
  if (c.block_m != 64 && c.block_m != 128) return "block_m must be 64 or 128";
  // Its copies read whole row tiles: they must stay within the packed layout's row padding.
  if (c.block_m > DeviceLayout::kRowAlign) return "tile larger than the packed layout's row padding";
  if (auto why = pipeline_invalid_reason(spec, c)) return why;
  if (!c.default_schedule()) return fmt::format("mma_sp has no schedule options ({} is another backend's)", c.to_string());
  if (c.block_n % 8 != 0 || c.block_n < 8 || c.block_n > 256) return "block_n must be a multiple of 8 in [8, 256]";
  if (c.warps_m < 1 || c.warps_n < 1 || c.threads() > 512) return "1 to 16 warps";
  if (c.block_m % (16 * c.warps_m) != 0) return "warp tile rows must be a multiple of 16";
  if (c.block_n % (8 * c.warps_n) != 0) return "warp tile tokens must be a multiple of 8";
  const MmaSpResources r = resources(spec, c);
  if (r.operand_regs > max_operand_regs(spec, c))
    return fmt::format("{} accumulator and fragment registers per thread (limit {})", r.operand_regs,
                       max_operand_regs(spec, c));
  return std::nullopt;
}

std::vector<TileConfig> MmaSpFamily::search_space(const KernelSpec& spec) const {
  spec.validate();
  std::vector<TileConfig> out;
  const int warp_layouts[][2] = {{2, 2}, {4, 1}, {2, 4}, {4, 2}};
  for (int bm : {64, 128})
    for (int bn : {32, 64, 128})
      for (int bk : {64, 128})
        for (const auto& wl : warp_layouts)
          for (int stages : {2, 3, 4}) {
            TileConfig c{bm, bn, bk, wl[0], wl[1], stages};
            if (!invalid_reason(spec, c)) out.push_back(c);
          }
  return out;
}

GeneratedKernel MmaSpFamily::generate(const KernelSpec& spec, const TileConfig& c) const {
  spec.validate();
  if (auto why = invalid_reason(spec, c))
    throw Error(ErrorCode::Unsupported, fmt::format("config {} invalid for {}: {}", c.to_string(), spec.to_string(), *why));
  const MmaSpResources r = resources(spec, c);
  return generate_ssmm_pipeline(
      spec, c,
      {"mma_sp", {"samoyeds/ssmm_pipeline.cuh", "samoyeds/mma_sp_sm80.cuh"},
       fmt::format("samoyeds::SsmmPipeline<samoyeds::WarpMmaSpCore, {}, {}, {}, {}, {}>", pipeline_tile_args(spec, c),
                   c.warps_m, c.warps_n, c.stages, pipeline_sparsity_args(spec)),
       r.threads, r.smem_bytes, /*weight_maps=*/false, /*persistent=*/false, /*cluster_blocks=*/1, /*checks=*/{}});
}

TileConfig MmaSpFamily::default_config(const KernelSpec& spec, int64_t tokens, int /*sm_count*/) const {
  return mma_sp_default_config(spec, tokens);
}

}  // namespace samoyeds

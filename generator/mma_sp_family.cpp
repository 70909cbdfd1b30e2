#include "generator/mma_sp_family.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "runtime/format/mma_sp_layout.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds {
namespace {

int operands(const KernelSpec& spec) { return spec.epilogue == Epilogue::GatedSilu ? 2 : 1; }

const char* epilogue_constant(Epilogue e) {
  switch (e) {
    case Epilogue::None: return "samoyeds::kEpiNone";
    case Epilogue::Silu: return "samoyeds::kEpiSilu";
    case Epilogue::GatedSilu: return "samoyeds::kEpiGatedSilu";
  }
  return "?";
}

}  // namespace

// Mirrors SsmmMmaSp's constants; the generated source static_asserts the
// shared-memory figure so the two cannot disagree silently.
MmaSpResources MmaSpFamily::resources(const KernelSpec& spec, const TileConfig& c) {
  const auto& sp = spec.sparsity;
  const int w = operands(spec);
  const bool select = sp.N < sp.M;
  const int slots = select ? sp.M : 1;
  const int segs = c.block_k >= sp.V ? c.block_k / sp.V : 1;
  const int a_bytes = c.block_m * c.block_k;
  const int meta_bytes = (c.block_m / 16) * (c.block_k / 64) * 128;
  const int sel_bytes = segs * c.block_m;
  const int stage = w * (a_bytes + meta_bytes + sel_bytes) + c.block_n * c.block_k * 2;
  const int out_rows = c.block_m / sp.N * sp.M;
  const int epi = w * c.block_n * (out_rows + 4) * 4;
  MmaSpResources r;
  r.threads = c.threads();
  r.smem_bytes = std::max(c.stages * stage, epi) + c.block_n * 4;
  const int wm = c.block_m / c.warps_m, wn = c.block_n / c.warps_n;
  r.accumulator_regs = w * slots * (wm / 16) * (wn / 8) * 4;
  r.operand_regs = r.accumulator_regs + w * (wm / 16) * 5 + (wn / 8) * 4;
  return r;
}

int MmaSpFamily::max_operand_regs(const KernelSpec& spec, const TileConfig& cfg) {
  const auto& sp = spec.sparsity;
  const int slots = sp.N < sp.M ? sp.M : 1;
  if (sp.V < 64 || slots > 2) return 112;
  // The gated op's second operand adds addresses; with four k32 steps per
  // stage that tipped 164 into spilling.
  return (operands(spec) == 2 && cfg.block_k == 128) ? 160 : 168;
}

std::optional<std::string> MmaSpFamily::invalid_reason(const KernelSpec& spec, const TileConfig& c) const {
  const auto& sp = spec.sparsity;
  if (c.block_m != 64 && c.block_m != 128) return "block_m must be 64 or 128";
  if (c.block_m > MmaSpLayout::kRowAlign || c.block_k > MmaSpLayout::kKAlign)
    return "tile larger than the packed layout's padding";
  if (c.block_n % 8 != 0 || c.block_n < 8 || c.block_n > 256) return "block_n must be a multiple of 8 in [8, 256]";
  if (c.block_k != 64 && c.block_k != 128) return "block_k must be 64 or 128";
  if (c.stages < 2 || c.stages > 6) return "stages must be in [2, 6]";
  if (c.warps_m < 1 || c.warps_n < 1 || c.threads() > 512) return "1 to 16 warps";
  if (c.block_m % (16 * c.warps_m) != 0) return "warp tile rows must be a multiple of 16";
  if (c.block_n % (8 * c.warps_n) != 0) return "warp tile tokens must be a multiple of 8";
  if (c.block_m % sp.N != 0) return fmt::format("block_m must hold whole groups of {} condensed rows", sp.N);
  if ((c.block_m / sp.N * sp.M) % 8 != 0) return "output rows per tile must be a multiple of 8";
  const MmaSpResources r = resources(spec, c);
  if (r.operand_regs > max_operand_regs(spec, c))
    return fmt::format("{} accumulator and fragment registers per thread (limit {})", r.operand_regs,
                       max_operand_regs(spec, c));
  const int smem_limit = max_smem_per_block(spec.arch);
  if (r.smem_bytes > smem_limit)
    return fmt::format("{} bytes of shared memory (limit {} on {})", r.smem_bytes, smem_limit, spec.arch);
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
  const auto& sp = spec.sparsity;
  const MmaSpResources r = resources(spec, c);
  GeneratedKernel g;
  g.kernel_name = spec.grouped ? "samoyeds_grouped_ssmm_mma_sp" : "samoyeds_ssmm_mma_sp";
  g.threads = r.threads;
  g.smem_bytes = r.smem_bytes;
  g.layout_id = MmaSpLayout::kLayoutId;
  // The grouped entry point picks its expert's slice, then runs the same body.
  const std::string entry =
      spec.grouped ? fmt::format("{}(const samoyeds::GroupedSsmmArgs grouped) {{\n"
                                 "  extern __shared__ __align__(128) unsigned char smem[];\n"
                                 "  samoyeds::SsmmArgs args;\n"
                                 "  if (!samoyeds::select_expert<{}>(grouped, args)) return;\n",
                                 g.kernel_name, c.block_n)
                   : fmt::format("{}(const samoyeds::SsmmArgs args) {{\n"
                                 "  extern __shared__ __align__(128) unsigned char smem[];\n",
                                 g.kernel_name);
  // Only what changes the machine code goes into the text (no shape, no op
  // name): identical kernels share one binary in the cache.
  g.source = fmt::format(
      "// samoyeds mma_sp kernel: {dtype} {sparsity} epilogue={epi} {cfg}{grouped}\n"
      "#include \"samoyeds/ssmm_mma_sp.cuh\"\n"
      "{grouped_include}"
      "typedef samoyeds::SsmmMmaSp<samoyeds::{elem}, {bm}, {bn}, {bk}, {wm}, {wn}, {stages}, {V}, {N}, {M}, {epic}>\n"
      "    Kernel;\n"
      "static_assert(Kernel::kSmemBytes == {smem}, \"host and device disagree on shared memory\");\n"
      "static_assert(Kernel::kThreads == {threads}, \"host and device disagree on threads\");\n"
      "extern \"C\" __global__ void __launch_bounds__({threads}, 1)\n"
      "{entry}"
      "  Kernel kernel;\n"
      "  kernel.run(args, smem);\n"
      "}}\n",
      fmt::arg("dtype", dtype_name(spec.dtype)), fmt::arg("sparsity", sp.to_string()),
      fmt::arg("epi", epilogue_name(spec.epilogue)), fmt::arg("cfg", c.to_string()),
      fmt::arg("grouped", spec.grouped ? " grouped" : ""),
      fmt::arg("grouped_include", spec.grouped ? "#include \"samoyeds/grouped_experts.cuh\"\n" : ""),
      fmt::arg("elem", spec.dtype == DType::f16 ? "F16" : "BF16"), fmt::arg("bm", c.block_m),
      fmt::arg("bn", c.block_n), fmt::arg("bk", c.block_k), fmt::arg("wm", c.warps_m), fmt::arg("wn", c.warps_n),
      fmt::arg("stages", c.stages), fmt::arg("V", sp.V), fmt::arg("N", sp.N), fmt::arg("M", sp.M),
      fmt::arg("epic", epilogue_constant(spec.epilogue)), fmt::arg("smem", r.smem_bytes),
      fmt::arg("threads", r.threads), fmt::arg("entry", entry));
  return g;
}

TileConfig MmaSpFamily::default_config(const KernelSpec& spec, int64_t tokens) const {
  return mma_sp_default_config(spec, tokens);
}

}  // namespace samoyeds

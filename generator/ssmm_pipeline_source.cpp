#include "generator/ssmm_pipeline_source.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "format/device_layout.hpp"

namespace samoyeds {
namespace {

const char* epilogue_constant(Epilogue e) {
  switch (e) {
    case Epilogue::None: return "samoyeds::kEpiNone";
    case Epilogue::Silu: return "samoyeds::kEpiSilu";
    case Epilogue::GatedSilu: return "samoyeds::kEpiGatedSilu";
    case Epilogue::Bias: return "samoyeds::kEpiBias";
    case Epilogue::ClampedSwiglu: return "samoyeds::kEpiClampedSwiglu";
  }
  return "?";
}

}  // namespace

int weight_operands(const KernelSpec& spec) { return gated_epilogue(spec.epilogue) ? 2 : 1; }

// Mirrors SsmmPipeline's constants; the generated source static_asserts the
// shared-memory figure so the two cannot disagree silently.
PipelineResources pipeline_resources(const KernelSpec& spec, const TileConfig& c, int stage_align) {
  const auto& sp = spec.sparsity;
  const int w = weight_operands(spec);
  const bool select = sp.N < sp.M;
  const int slots = select ? sp.M : 1;
  const int segs = c.block_k >= sp.V ? c.block_k / sp.V : 1;
  const int a_bytes = c.block_m * c.block_k;
  // Whole k-tiles of the packed metadata (a 64-column stage takes the one its columns lie in).
  const int meta_bytes = (c.block_m / 16) * std::max(c.block_k, DeviceLayout::kKAlign) / 64 * 128;
  const int sel_bytes = segs * c.block_m;
  const int w_bytes = (a_bytes + meta_bytes + sel_bytes + stage_align - 1) / stage_align * stage_align;
  const int stage = w * w_bytes + c.block_n * c.block_k * 2;
  const int out_rows = c.block_m / sp.N * sp.M;
  const int epi = w * c.block_n * (out_rows + 4) * 4;
  PipelineResources r;
  r.threads = c.threads();
  r.smem_bytes = std::max(c.stages * stage, epi) + c.block_n * 4;
  const int wm = c.block_m / c.warps_m, wn = c.block_n / c.warps_n;
  r.accumulator_regs = w * slots * (wm / 16) * (wn / 8) * 4;
  return r;
}

std::optional<std::string> pipeline_invalid_reason(const KernelSpec& spec, const TileConfig& c) {
  const auto& sp = spec.sparsity;
  if (c.block_k > DeviceLayout::kKAlign) return "tile deeper than the packed layout's padding along k";
  if (c.block_k != 64 && c.block_k != 128) return "block_k must be 64 or 128";
  if (c.stages < 2 || c.stages > 8) return "stages must be in [2, 8]";
  if (c.block_m % sp.N != 0) return fmt::format("block_m must hold whole groups of {} condensed rows", sp.N);
  if ((c.block_m / sp.N * sp.M) % 8 != 0) return "output rows per tile must be a multiple of 8";
  const PipelineResources r = pipeline_resources(spec, c);
  const int smem_limit = max_smem_per_block(spec.arch);
  if (r.smem_bytes > smem_limit)
    return fmt::format("{} bytes of shared memory (limit {} on {})", r.smem_bytes, smem_limit, spec.arch);
  return std::nullopt;
}

std::string pipeline_tile_args(const KernelSpec& spec, const TileConfig& c) {
  return fmt::format("samoyeds::{}, {}, {}, {}", dtype_device_type(spec.dtype), c.block_m, c.block_n,
                     c.block_k);
}

std::string pipeline_sparsity_args(const KernelSpec& spec) {
  const auto& sp = spec.sparsity;
  return fmt::format("{}, {}, {}, {}", sp.V, sp.N, sp.M, epilogue_constant(spec.epilogue));
}

GeneratedKernel generate_ssmm_pipeline(const KernelSpec& spec, const TileConfig& c, const PipelineKernel& k) {
  GeneratedKernel g;
  g.kernel_name = fmt::format("samoyeds_{}ssmm_{}", spec.grouped ? "grouped_" : "", k.backend);
  g.threads = k.threads;
  g.smem_bytes = k.smem_bytes;
  g.layout_id = DeviceLayout::kLayoutId;
  g.persistent = k.persistent;
  g.cluster_blocks = k.cluster_blocks;
  g.tile_prefix = k.weight_maps && spec.grouped;
  // The entry: its signature, then (after the wait for the previous kernel
  // and the shared memory) what the variant does before the body runs.
  std::string signature, prologue, run_call;
  if (k.weight_maps) {  // the tile-scheduled wgmma_sp kernels: a problem, the tensor maps
    signature = fmt::format("{}(const samoyeds::{},\n    const __grid_constant__ samoyeds::TmaWeightMaps maps) {{\n",
                            g.kernel_name, spec.grouped ? "GroupedSsmmArgs grouped" : "SsmmArgs args");
    run_call = spec.grouped ? fmt::format("  kernel.run(samoyeds::GroupedProblem<{}>{{grouped}}, smem, maps);\n",
                                          biased_epilogue(spec.epilogue) ? "true" : "false")
                            : "  kernel.run(samoyeds::SingleProblem{args}, smem, maps);\n";
  } else {  // the grouped entry point picks its expert's slice, then runs the same body
    signature = fmt::format("{}(const samoyeds::{}) {{\n", g.kernel_name,
                            spec.grouped ? "GroupedSsmmArgs grouped" : "SsmmArgs args");
    if (spec.grouped)
      prologue = fmt::format("  samoyeds::SsmmArgs args;\n"
                             "  if (!samoyeds::select_expert<{}{}>(grouped, args)) return;\n",
                             c.block_n, biased_epilogue(spec.epilogue) ? ", true" : "");
    run_call = "  kernel.run(args, smem);\n";
  }
  std::string includes;
  for (const auto& h : k.headers) includes += fmt::format("#include \"{}\"\n", h);
  std::string checks;
  for (const auto& c : k.checks) checks += fmt::format("static_assert({});\n", c);
  if (spec.grouped) includes += "#include \"samoyeds/grouped_experts.cuh\"\n";
  // Only what changes the machine code goes into the text (no shape, no op
  // name): identical kernels share one binary in the cache.
  g.source = fmt::format(
      "// samoyeds {backend} kernel: {dtype} {sparsity} epilogue={epi} {cfg}{grouped}\n"
      "{includes}"
      "typedef {type}\n"
      "    Kernel;\n"
      "static_assert(Kernel::kSmemBytes == {smem}, \"host and device disagree on shared memory\");\n"
      "static_assert(Kernel::kThreads == {threads}, \"host and device disagree on threads\");\n"
      "{checks}"
      "extern \"C\" __global__ void __launch_bounds__({threads}, 1){cluster}\n"
      "{signature}"
      "  samoyeds::grid_dependency_begin();  // first: before any read of what earlier kernels wrote\n"
      "  extern __shared__ __align__(128) unsigned char smem[];\n"
      "{prologue}"
      "  Kernel kernel;\n"
      "{run_call}"
      "}}\n",
      fmt::arg("backend", k.backend), fmt::arg("dtype", dtype_name(spec.dtype)),
      fmt::arg("sparsity", spec.sparsity.to_string()), fmt::arg("epi", epilogue_name(spec.epilogue)),
      fmt::arg("cfg", c.to_string()), fmt::arg("grouped", spec.grouped ? " grouped" : ""),
      fmt::arg("includes", includes),
      fmt::arg("type", k.kernel_type), fmt::arg("smem", k.smem_bytes), fmt::arg("threads", k.threads),
      fmt::arg("cluster", k.cluster_blocks > 1 ? fmt::format(" __cluster_dims__({}, 1, 1)", k.cluster_blocks) : ""),
      fmt::arg("signature", signature), fmt::arg("prologue", prologue), fmt::arg("run_call", run_call),
      fmt::arg("checks", checks));
  return g;
}

}  // namespace samoyeds

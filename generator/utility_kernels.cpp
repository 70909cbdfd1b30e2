#include "generator/utility_kernels.hpp"

#include <fmt/format.h>

namespace samoyeds {

std::string utility_kernel_name(UtilityKernel which) {
  switch (which) {
    case UtilityKernel::ScatterAddRows: return "samoyeds_scatter_add_rows";
    case UtilityKernel::RouteTopk: return "samoyeds_route_topk";
    case UtilityKernel::CountExperts: return "samoyeds_count_experts";
    case UtilityKernel::ScanOffsets: return "samoyeds_scan_offsets";
    case UtilityKernel::WriteExpertLists: return "samoyeds_write_expert_lists";
    case UtilityKernel::MoeCombine: return "samoyeds_moe_combine";
    case UtilityKernel::GatherRows: return "samoyeds_gather_rows";
  }
  return "?";
}

int utility_kernel_threads(UtilityKernel which) {
  switch (which) {
    case UtilityKernel::ScatterAddRows: return 128;
    // The token-list passes: one block per expert (or one in all) walks
    // every entry, so it gets the largest block.
    case UtilityKernel::CountExperts:
    case UtilityKernel::ScanOffsets:
    case UtilityKernel::WriteExpertLists: return 1024;
    default: return kUtilityThreads;
  }
}

GeneratedKernel generate_utility_kernel(UtilityKernel which, DType dtype) {
  GeneratedKernel g;
  g.kernel_name = utility_kernel_name(which);
  g.threads = utility_kernel_threads(which);
  g.smem_bytes = 0;
  g.layout_id = "";
  const char* elem = dtype == DType::f16 ? "F16" : "BF16";
  switch (which) {
    case UtilityKernel::ScatterAddRows:
      // 16 rows per batch: 16 independent y loads in flight per thread.
      g.source = fmt::format(
          "#include \"samoyeds/scatter_add_rows.cuh\"\n"
          "extern \"C\" __global__ void __launch_bounds__(128) {}(const samoyeds::ScatterAddArgs args) {{\n"
          "  samoyeds::grid_dependency_begin();\n"
          "  samoyeds::scatter_add_rows<samoyeds::{}, 16>(args);\n"
          "}}\n",
          g.kernel_name, elem);
      break;
    case UtilityKernel::RouteTopk:
    case UtilityKernel::MoeCombine: {
      const bool route = which == UtilityKernel::RouteTopk;
      g.source = fmt::format(
          "#include \"samoyeds/moe_routing.cuh\"\n"
          "extern \"C\" __global__ void __launch_bounds__({}) {}(const samoyeds::{} args) {{\n"
          "  samoyeds::grid_dependency_begin();\n"
          "  samoyeds::{}<samoyeds::{}>(args);\n"
          "}}\n",
          kUtilityThreads, g.kernel_name, route ? "RouteArgs" : "CombineArgs", route ? "route_topk" : "moe_combine",
          elem);
      break;
    }
    case UtilityKernel::GatherRows:
      g.source = fmt::format(
          "#include \"samoyeds/gather_rows.cuh\"\n"
          "extern \"C\" __global__ void __launch_bounds__({0}) {1}(const samoyeds::GatherRowsArgs args) {{\n"
          "  samoyeds::grid_dependency_begin();\n"
          "  samoyeds::gather_rows<{0}>(args);\n"
          "}}\n",
          kUtilityThreads, g.kernel_name);
      break;
    case UtilityKernel::CountExperts:
    case UtilityKernel::ScanOffsets:
    case UtilityKernel::WriteExpertLists: {
      const char* body = which == UtilityKernel::CountExperts   ? "count_expert<{t}>"
                         : which == UtilityKernel::ScanOffsets ? "scan_offsets<{t}>"
                                                                : "write_expert_list<{t}>";
      g.source = fmt::format(
          fmt::runtime("#include \"samoyeds/moe_routing.cuh\"\n"
                       "extern \"C\" __global__ void __launch_bounds__({t}) {name}(const samoyeds::TokenListArgs args) {{\n"
                       "  samoyeds::grid_dependency_begin();\n"
                       "  samoyeds::" + std::string(body) + "(args);\n"
                       "}}\n"),
          fmt::arg("t", g.threads), fmt::arg("name", g.kernel_name));
      break;
    }
  }
  return g;
}

}  // namespace samoyeds

#include "generator/utility_kernels.hpp"

#include <fmt/format.h>

namespace samoyeds {

std::string utility_kernel_name(UtilityKernel which) {
  switch (which) {
    case UtilityKernel::ScatterAddRows: return "samoyeds_scatter_add_rows";
    case UtilityKernel::RouteTopk: return "samoyeds_route_topk";
    case UtilityKernel::RouteTopkF32: return "samoyeds_route_topk_f32";
    case UtilityKernel::BuildExpertLists: return "samoyeds_build_expert_lists";
    case UtilityKernel::MoeCombine: return "samoyeds_moe_combine";
    case UtilityKernel::GatherRows: return "samoyeds_gather_rows";
    case UtilityKernel::QuantizeRowsE4m3: return "samoyeds_quantize_rows_e4m3";
  }
  return "?";
}

int utility_kernel_threads(UtilityKernel which) {
  switch (which) {
    case UtilityKernel::ScatterAddRows: return 128;
    // The token lists: every block walks every entry, so it gets the
    // largest block.
    case UtilityKernel::BuildExpertLists: return 1024;
    default: return kUtilityThreads;
  }
}

namespace {

// What a utility kernel's source varies in: its header, the type of its one
// argument block, and the call of its body.
struct UtilityBody {
  const char* header;
  const char* args_type;
  std::string call;
};

UtilityBody utility_body(UtilityKernel which, const char* elem, int threads) {
  switch (which) {
    // 16 rows per batch: 16 independent y loads in flight per thread.
    case UtilityKernel::ScatterAddRows:
      return {"scatter_add_rows.cuh", "ScatterAddArgs", fmt::format("scatter_add_rows<samoyeds::{}, 16>", elem)};
    case UtilityKernel::RouteTopk:
      return {"route_topk.cuh", "RouteArgs", fmt::format("route_topk<samoyeds::{}>", elem)};
    case UtilityKernel::RouteTopkF32:
      return {"route_topk.cuh", "RouteArgs", "route_topk<samoyeds::F32>"};
    case UtilityKernel::MoeCombine:
      return {"moe_routing.cuh", "CombineArgs", fmt::format("moe_combine<samoyeds::{}>", elem)};
    case UtilityKernel::GatherRows:
      return {"gather_rows.cuh", "GatherRowsArgs", fmt::format("gather_rows<{}>", threads)};
    case UtilityKernel::BuildExpertLists:
      return {"moe_routing.cuh", "TokenListArgs", fmt::format("build_expert_list<{}>", threads)};
    case UtilityKernel::QuantizeRowsE4m3:
      return {"quantize_rows.cuh", "QuantizeRowsArgs",
              fmt::format("quantize_rows_e4m3<samoyeds::{}, {}>", elem, threads)};
  }
  return {"", "", ""};
}

}  // namespace

GeneratedKernel generate_utility_kernel(UtilityKernel which, DType dtype) {
  GeneratedKernel g;
  g.kernel_name = utility_kernel_name(which);
  g.threads = utility_kernel_threads(which);
  g.smem_bytes = 0;
  g.layout_id = "";
  const UtilityBody body = utility_body(which, dtype_device_type(dtype), g.threads);
  g.source = fmt::format(
      "#include \"samoyeds/{}\"\n"
      "extern \"C\" __global__ void __launch_bounds__({}) {}(const samoyeds::{} args) {{\n"
      "  samoyeds::grid_dependency_begin();\n"
      "  samoyeds::{}(args);\n"
      "}}\n",
      body.header, g.threads, g.kernel_name, body.args_type, body.call);
  return g;
}

}  // namespace samoyeds

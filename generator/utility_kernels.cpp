#include "generator/utility_kernels.hpp"

#include <fmt/format.h>

namespace samoyeds {

std::string utility_kernel_name(UtilityKernel which) {
  switch (which) {
    case UtilityKernel::ScatterAddRows: return "samoyeds_scatter_add_rows";
  }
  return "?";
}

GeneratedKernel generate_utility_kernel(UtilityKernel which, DType dtype) {
  GeneratedKernel g;
  g.kernel_name = utility_kernel_name(which);
  g.threads = 128;
  g.smem_bytes = 0;
  g.layout_id = "";
  // 16 rows per batch: 16 independent y loads in flight per thread.
  g.source = fmt::format(
      "#include \"samoyeds/scatter_add_rows.cuh\"\n"
      "extern \"C\" __global__ void __launch_bounds__(128) {name}(const samoyeds::ScatterAddArgs args) {{\n"
      "  samoyeds::scatter_add_rows<samoyeds::{elem}, 16>(args);\n"
      "}}\n",
      fmt::arg("name", g.kernel_name), fmt::arg("elem", dtype == DType::f16 ? "F16" : "BF16"));
  return g;
}

}  // namespace samoyeds

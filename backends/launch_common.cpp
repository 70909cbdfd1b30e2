#include "backends/launch_common.hpp"

#include <fmt/format.h>

#include "core/cuda_driver.hpp"
#include "samoyeds/device.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds {

void require(bool ok, const std::string& what) {
  if (!ok) throw Error(ErrorCode::InvalidArgument, what);
}

SsmmArgs ssmm_args(const ExpertLaunch& l) {
  SsmmArgs a{};
  for (int i = 0; i < 2; ++i) {
    const ExpertLaunch::Operand& w = l.operands[i < l.n_operands ? i : 0];
    a.values[i] = static_cast<const unsigned short*>(w.values);
    a.meta[i] = static_cast<const unsigned int*>(w.meta);
    a.sel[i] = static_cast<const unsigned char*>(w.sel);
  }
  a.x = static_cast<const unsigned short*>(l.x);
  a.ids = l.ids;
  a.row_scale = l.row_scale;
  a.bias[0] = l.bias[0];
  a.bias[1] = l.bias[1];
  a.act_alpha = l.act_alpha;
  a.act_limit = l.act_limit;
  a.y = static_cast<unsigned short*>(l.y);
  a.error_flag = l.error_flag;
  a.m = int(l.m);
  a.k = int(l.k);
  a.n = int(l.n);
  a.x_rows = int(l.x_rows);
  a.ldx = int(l.ldx);
  a.ldy = int(l.m);
  a.rows_pad = int(l.rows_pad);
  a.k_phys = int(l.k_phys);
  return a;
}

GroupedSsmmArgs grouped_ssmm_args(const ExpertLaunch& l, const SsmmArgs& base) {
  GroupedSsmmArgs g{};
  g.base = base;
  g.offsets = l.offsets;
  g.values_stride = l.values_stride;
  g.meta_stride = l.meta_stride;
  g.sel_stride = l.sel_stride;
  g.bias_stride = l.bias_stride;
  g.x_is_compact = l.x_is_compact ? 1 : 0;
  g.experts = l.spec.experts;
  return g;
}

void launch_expert_kernel(const ExpertLaunch& l, const Device& device, LaunchShape shape, void** params) {
  const LoadedKernel& kernel = *l.kernel;
  int smem = kernel.smem_bytes;
  if (kernel.tile_prefix) {
    smem += tile_prefix_bytes(l.spec.experts);
    if (smem > device.info().max_smem_optin)
      throw Error(ErrorCode::InvalidArgument,
                  fmt::format("{} experts: the kernel's {} bytes of shared memory plus its tile prefix exceed the "
                              "device's {}",
                              l.spec.experts, kernel.smem_bytes, device.info().max_smem_optin));
  }
  device.make_current();
  shape.threads = unsigned(kernel.threads);
  shape.smem_bytes = unsigned(smem);
  const CUresult rc =
      launch_kernel(device, static_cast<CUfunction>(kernel.function), shape, static_cast<CUstream>(l.stream), params);
  if (rc != CUDA_SUCCESS)  // the message is built only on failure: this is the hot path
    check(rc, fmt::format("launch {} {}", l.spec.to_string(), l.config.to_string()).c_str());
}

}  // namespace samoyeds

#include "samoyeds/kernel_spec.hpp"

#include <cstdio>

#include <fmt/format.h>

#include "samoyeds/error.hpp"

namespace samoyeds {

const char* op_name(Op op) {
  switch (op) {
    case Op::Ssmm: return "ssmm";
    case Op::GatedUp: return "gated_up";
    case Op::Down: return "down";
  }
  return "?";
}

Op parse_op(const std::string& name) {
  if (name == "ssmm") return Op::Ssmm;
  if (name == "gated_up" || name == "up") return Op::GatedUp;
  if (name == "down") return Op::Down;
  throw Error(ErrorCode::InvalidArgument, "unknown op '" + name + "' (expected ssmm, gated_up or down)");
}

const char* backend_name(Backend b) {
  switch (b) {
    case Backend::MmaSp: return "mma_sp";
    case Backend::WgmmaSp: return "wgmma_sp";
  }
  return "?";
}

Backend parse_backend(const std::string& name) {
  for (Backend b : {Backend::MmaSp, Backend::WgmmaSp})
    if (name == backend_name(b)) return b;
  throw Error(ErrorCode::InvalidArgument, "unknown backend '" + name + "' (mma_sp or wgmma_sp)");
}

int arch_number(const std::string& arch) {
  // "sm_" + two digits + optional 'a'; parsed by hand (it runs per launch).
  const size_t n = arch.size();
  const bool ok = (n == 5 || (n == 6 && arch[5] == 'a')) && arch.compare(0, 3, "sm_") == 0 &&
                  arch[3] >= '1' && arch[3] <= '9' && arch[4] >= '0' && arch[4] <= '9';
  if (!ok) throw Error(ErrorCode::InvalidArgument, "bad architecture '" + arch + "' (expected e.g. sm_80, sm_90a)");
  return (arch[3] - '0') * 10 + (arch[4] - '0');
}

int max_smem_per_block(const std::string& arch) {
  const int n = arch_number(arch);
  if (n == 80 || n == 87) return 163 * 1024;
  if (n >= 90) return 227 * 1024;
  return 99 * 1024;  // sm_86, sm_89
}

void KernelSpec::validate() const {
  sparsity.validate();
  const int n = arch_number(arch);
  if (n < 80) throw Error(ErrorCode::Unsupported, "sparse tensor cores need sm_80 or newer, got " + arch);
  if (m <= 0 || k <= 0) throw Error(ErrorCode::InvalidArgument, fmt::format("shape m={} k={} is empty", m, k));
  if (k % 8 != 0)
    throw Error(ErrorCode::Unsupported,
                fmt::format("k={} must be a multiple of 8 (token rows are read in 16-byte pieces)", k));
  if (experts < 1) throw Error(ErrorCode::InvalidArgument, "experts must be >= 1");
  const bool gated = epilogue == Epilogue::GatedSilu;
  if ((op == Op::GatedUp) != gated)
    throw Error(ErrorCode::InvalidArgument, "the gated_silu epilogue belongs to the gated_up op and only to it");
  if (op == Op::Down && epilogue != Epilogue::None)
    throw Error(ErrorCode::InvalidArgument, "the down op has no activation");
}

std::string KernelSpec::to_string() const {
  return fmt::format("{}/{}/{}/{} m{} k{} {} E{}{} {}", op_name(op), backend_name(backend), arch, dtype_name(dtype), m,
                     k, sparsity.to_string(), experts, grouped ? " grouped" : "", epilogue_name(epilogue));
}

std::string TileConfig::to_string() const {
  return fmt::format("bm{}_bn{}_bk{}_w{}x{}_s{}{}{}{}{}{}{}{}{}", block_m, block_n, block_k, warps_m, warps_n, stages,
                     split_k != 1 ? fmt::format("_k{}", split_k) : "",
                     multicast != 1 ? fmt::format("_m{}", multicast) : "", persistent ? "_p" : "",
                     tokens_first ? "_tf" : "", row_group != 0 ? fmt::format("_g{}", row_group) : "",
                     split_operands ? "_so" : "", tokens_tma ? "_xt" : "", stream_k ? "_sk" : "");
}

TileConfig TileConfig::parse(const std::string& text) {
  TileConfig c;
  int used = 0;
  const auto bad = [&text] {
    return Error(ErrorCode::InvalidArgument,
                 "bad tile config '" + text + "' (expected e.g. bm128_bn64_bk64_w2x2_s3, optionally _k2, _m2, _p, _tf, _g16, _so, _xt, _sk)");
  };
  if (std::sscanf(text.c_str(), "bm%d_bn%d_bk%d_w%dx%d_s%d%n", &c.block_m, &c.block_n, &c.block_k, &c.warps_m,
                  &c.warps_n, &c.stages, &used) != 6)
    throw bad();
  std::string rest = text.substr(size_t(used));
  // The schedule suffixes, each at most once, in to_string's order: "_k2"
  // style ones carry a number (at least 1), "_p" style ones are flags.
  const auto number = [&](const char* format, int& value) {
    int v = 0, n = 0;
    if (std::sscanf(rest.c_str(), format, &v, &n) != 1 || n == 0) return;
    if (v < 1) throw bad();
    value = v;
    rest = rest.substr(size_t(n));
  };
  const auto flag = [&](const std::string& suffix, bool& value) {
    if (rest != suffix && rest.rfind(suffix + "_", 0) != 0) return;
    value = true;
    rest = rest.substr(suffix.size());
  };
  number("_k%d%n", c.split_k);
  number("_m%d%n", c.multicast);
  flag("_p", c.persistent);
  flag("_tf", c.tokens_first);
  number("_g%d%n", c.row_group);
  flag("_so", c.split_operands);
  flag("_xt", c.tokens_tma);
  flag("_sk", c.stream_k);
  if (!rest.empty()) throw bad();
  return c;
}

}  // namespace samoyeds

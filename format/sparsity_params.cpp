#include <cstdio>

#include <fmt/format.h>

#include "samoyeds/error.hpp"
#include "samoyeds/format.hpp"

namespace samoyeds {

void SparsityParams::validate() const {
  if (V != 32 && V != 64 && V != 128 && V != 256)
    throw Error(ErrorCode::InvalidArgument,
                fmt::format("segment length V={} unsupported (expected 32, 64, 128 or 256)", V));
  if (M < 1 || M > 8 || N < 1 || N > M)
    throw Error(ErrorCode::InvalidArgument,
                fmt::format("row pattern {}:{} unsupported (need 1 <= N <= M <= 8)", N, M));
}

std::string SparsityParams::to_string() const { return fmt::format("{}:{}x2:4/V{}", N, M, V); }

SparsityParams SparsityParams::parse(const std::string& text) {
  SparsityParams sp;
  char tail = 0;
  if (std::sscanf(text.c_str(), "%d:%dx2:4/V%d%c", &sp.N, &sp.M, &sp.V, &tail) != 3)
    throw Error(ErrorCode::InvalidArgument, "bad sparsity '" + text + "' (expected e.g. 1:2x2:4/V128)");
  sp.validate();
  return sp;
}

SparsityParams SparsityParams::from_rows(const std::string& n_m, int V) {
  SparsityParams sp;
  sp.V = V;
  char tail = 0;
  if (std::sscanf(n_m.c_str(), "%d:%d%c", &sp.N, &sp.M, &tail) != 2)
    throw Error(ErrorCode::InvalidArgument, "row pattern '" + n_m + "' (expected N:M, e.g. 1:2)");
  sp.validate();
  return sp;
}

int64_t PackedWeights::payload_bytes() const {
  return int64_t(values.size()) * 2 + int64_t(meta.size()) + int64_t(sel.size());
}

PackedSizes packed_sizes(int64_t m, int64_t k, const SparsityParams& sp) {
  sp.validate();
  // Below 2^31 each, so that every product below fits in 64 bits.
  if (m <= 0 || k <= 0 || m >= (int64_t(1) << 31) || k >= (int64_t(1) << 31))
    throw Error(ErrorCode::InvalidArgument, fmt::format("packed matrix shape [{}, {}] (1 to 2^31 - 1 each)", m, k));
  PackedSizes s;
  s.m_pad = (m + sp.M - 1) / sp.M * sp.M;
  s.k_pad = (k + sp.V - 1) / sp.V * sp.V;
  s.rows = s.m_pad / sp.M * sp.N;
  s.values = s.rows * (s.k_pad / 2);
  s.sel = s.k_pad / sp.V * s.rows;
  s.meta = (s.values + 3) / 4;
  return s;
}

}  // namespace samoyeds

// Canonical packed form -> dense, and structural validation of packed objects
// (e.g. ones read from a file) before anything trusts their indices.
#include <fmt/format.h>

#include "samoyeds/error.hpp"
#include "samoyeds/format.hpp"

namespace samoyeds {

void validate_packed(const PackedWeights& p) {
  p.sparsity.validate();
  const auto& sp = p.sparsity;
  auto fail = [](const std::string& what) { throw Error(ErrorCode::InvalidArgument, "packed weights: " + what); };
  if (p.m <= 0 || p.k <= 0) fail(fmt::format("empty shape [{}, {}]", p.m, p.k));
  if (p.m_pad != (p.m + sp.M - 1) / sp.M * sp.M || p.k_pad != (p.k + sp.V - 1) / sp.V * sp.V)
    fail(fmt::format("padded shape [{}, {}] does not match [{}, {}] with {}", p.m_pad, p.k_pad, p.m, p.k,
                     sp.to_string()));
  const int64_t rows = p.condensed_rows(), half_k = p.k_pad / 2;
  if (int64_t(p.values.size()) != rows * half_k) fail("values size mismatch");
  if (int64_t(p.sel.size()) != p.segments() * rows) fail("selector size mismatch");
  if (int64_t(p.meta.size()) != (rows * half_k + 3) / 4) fail("metadata size mismatch");
  for (int64_t s = 0; s < p.segments(); ++s)
    for (int64_t r = 0; r < rows; ++r) {
      const int j = int(r % sp.N);
      const uint8_t v = p.sel[size_t(s * rows + r)];
      if (v >= sp.M) fail(fmt::format("selector {} >= M at segment {}, row {}", v, s, r));
      if (j > 0 && v <= p.sel[size_t(s * rows + r - 1)])
        fail(fmt::format("selectors of segment {}, group {} not increasing", s, r / sp.N));
    }
  for (int64_t i = 0; i < rows * half_k; i += 2)
    if (p.meta_at(i) >= p.meta_at(i + 1))
      fail(fmt::format("metadata pair at value {} not increasing", i));
}

namespace {
template <typename Sink>
void for_each_kept(const PackedWeights& p, Sink&& sink) {
  const auto& sp = p.sparsity;
  const int64_t rows = p.condensed_rows(), half_k = p.k_pad / 2;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t g = r / sp.N;
    for (int64_t c2 = 0; c2 < half_k; ++c2) {
      const int64_t vi = r * half_k + c2;
      const int64_t col = (c2 / 2) * 4 + p.meta_at(vi);
      const int64_t row = g * sp.M + p.sel[size_t((col / sp.V) * rows + r)];
      if (row < p.m && col < p.k) sink(row, col, p.values[size_t(vi)]);
    }
  }
}
}  // namespace

std::vector<uint16_t> decode_weights(const PackedWeights& p) {
  std::vector<uint16_t> dense(size_t(p.m * p.k), 0);
  for_each_kept(p, [&](int64_t r, int64_t c, uint16_t bits) { dense[size_t(r * p.k + c)] = bits; });
  return dense;
}

std::vector<double> decode_weights_f64(const PackedWeights& p) {
  std::vector<double> dense(size_t(p.m * p.k), 0.0);
  for_each_kept(p, [&](int64_t r, int64_t c, uint16_t bits) {
    dense[size_t(r * p.k + c)] = to_float(p.dtype, bits);
  });
  return dense;
}

}  // namespace samoyeds

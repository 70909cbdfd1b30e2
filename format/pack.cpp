// Dense -> dual-side sparse format. Magnitude mode prunes; strict mode only
// verifies and encodes weights that already follow the pattern.
#include <algorithm>
#include <array>
#include <cmath>

#include <fmt/format.h>

#include "samoyeds/error.hpp"
#include "samoyeds/format.hpp"

namespace samoyeds {
namespace {

struct Chunk {  // the two kept positions of one 4-column chunk, increasing
  uint8_t lo, hi;
};

// Two largest magnitudes of a 4-chunk (ties to the lower index), increasing.
Chunk top_two(const float* v) {
  int a = 0;
  for (int i = 1; i < 4; ++i)
    if (std::fabs(v[i]) > std::fabs(v[a])) a = i;
  int b = -1;
  for (int i = 0; i < 4; ++i) {
    if (i == a) continue;
    if (b < 0 || std::fabs(v[i]) > std::fabs(v[b])) b = i;
  }
  return {uint8_t(std::min(a, b)), uint8_t(std::max(a, b))};
}

// Strict: at most two nonzeros; pad with the lowest free indices so the pair is
// distinct and increasing (the hardware leaves equal indices undefined).
bool strict_pair(const float* v, Chunk& out) {
  int nz[4], count = 0;
  for (int i = 0; i < 4; ++i)
    if (v[i] != 0.0f) nz[count++] = i;
  if (count > 2) return false;
  for (int i = 0; i < 4 && count < 2; ++i)
    if (count == 0 || nz[0] != i) nz[count++] = i;
  out = {uint8_t(std::min(nz[0], nz[1])), uint8_t(std::max(nz[0], nz[1]))};
  return true;
}

}  // namespace

PackedWeights pack_weights(const uint16_t* dense, int64_t m, int64_t k, DType dtype,
                           const SparsityParams& sp, PackMode mode) {
  sp.validate();
  if (m <= 0 || k <= 0)
    throw Error(ErrorCode::InvalidArgument, fmt::format("weight shape [{}, {}] is empty", m, k));
  if (dense == nullptr) throw Error(ErrorCode::InvalidArgument, "dense weights pointer is null");
  const int64_t max_dim = int64_t(1) << 31;
  if (m >= max_dim || k >= max_dim)
    throw Error(ErrorCode::InvalidArgument, fmt::format("weight shape [{}, {}] too large", m, k));

  PackedWeights out;
  out.dtype = dtype;
  out.sparsity = sp;
  out.m = m;
  out.k = k;
  out.m_pad = (m + sp.M - 1) / sp.M * sp.M;
  out.k_pad = (k + sp.V - 1) / sp.V * sp.V;

  // Decode to float once (padded with zeros) and reject non-finite values with
  // their coordinates before doing any work.
  const int64_t kp = out.k_pad;
  std::vector<float> w(size_t(out.m_pad * kp), 0.0f);
  double total_mag = 0.0;
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < k; ++c) {
      float f = to_float(dtype, dense[r * k + c]);
      if (!std::isfinite(f))
        throw Error(ErrorCode::NonFiniteInput,
                    fmt::format("weight [{}, {}] is {}", r, c, std::isnan(f) ? "NaN" : "Inf"));
      w[size_t(r * kp + c)] = f;
      total_mag += std::fabs(double(f));
    }

  const int64_t rows_c = out.condensed_rows();
  const int64_t half_k = kp / 2;
  const int64_t segs = out.segments();
  const int64_t groups = out.m_pad / sp.M;
  const int V = sp.V;
  out.values.assign(size_t(rows_c * half_k), 0);
  out.sel.assign(size_t(segs * rows_c), 0);
  out.meta.assign(size_t((rows_c * half_k + 3) / 4), 0);

  std::vector<Chunk> chunks(size_t(sp.M) * (V / 4));
  std::vector<double> norms(size_t(sp.M));
  std::vector<int> order(size_t(sp.M));
  double kept_mag = 0.0;

  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t s = 0; s < segs; ++s) {
      // 2:4 inside every candidate row segment, and the rows' norms after it.
      for (int i = 0; i < sp.M; ++i) {
        const float* row = &w[size_t((g * sp.M + i) * kp + s * V)];
        double norm = 0.0;
        bool any = false;
        for (int q = 0; q < V / 4; ++q) {
          Chunk& ch = chunks[size_t(i * (V / 4) + q)];
          if (mode == PackMode::Strict) {
            if (!strict_pair(row + 4 * q, ch)) {
              int64_t r = g * sp.M + i, c = s * V + 4 * q;
              throw Error(ErrorCode::PatternViolation,
                          fmt::format("strict pack: row {}, columns {}..{} hold more than 2 "
                                      "nonzeros in one 2:4 group",
                                      r, c, c + 3));
            }
          } else {
            ch = top_two(row + 4 * q);
          }
          double a = row[4 * q + ch.lo], b = row[4 * q + ch.hi];
          norm += a * a + b * b;
          for (int e = 0; e < 4; ++e) any |= row[4 * q + e] != 0.0f;
        }
        norms[size_t(i)] = mode == PackMode::Strict ? (any ? 1.0 : 0.0) : norm;
      }
      // Choose N rows: largest norm first, ties to the lower row; then increasing.
      for (int i = 0; i < sp.M; ++i) order[size_t(i)] = i;
      std::stable_sort(order.begin(), order.end(),
                       [&](int a, int b) { return norms[size_t(a)] > norms[size_t(b)]; });
      if (mode == PackMode::Strict && sp.N < sp.M && norms[size_t(order[size_t(sp.N)])] > 0.0) {
        std::string rows;
        for (int i = 0; i < sp.M; ++i)
          if (norms[size_t(i)] > 0.0) rows += fmt::format("{}{}", rows.empty() ? "" : ", ", g * sp.M + i);
        throw Error(ErrorCode::PatternViolation,
                    fmt::format("strict pack: rows {{{}}} of group {} are nonzero in columns {}..{} "
                                "(segment {}), more than {} of {} rows",
                                rows, g, s * V, s * V + V - 1, s, sp.N, sp.M));
      }
      std::sort(order.begin(), order.begin() + sp.N);

      for (int j = 0; j < sp.N; ++j) {
        const int i = order[size_t(j)];
        const int64_t r = g * sp.N + j;
        out.sel[size_t(s * rows_c + r)] = uint8_t(i);
        const float* row = &w[size_t((g * sp.M + i) * kp + s * V)];
        const uint16_t* src = dense;  // re-read the exact bits for real columns
        for (int q = 0; q < V / 4; ++q) {
          const Chunk& ch = chunks[size_t(i * (V / 4) + q)];
          const int64_t vi = r * half_k + (s * V) / 2 + 2 * q;
          const int64_t orow = g * sp.M + i;
          const int64_t c0 = s * V + 4 * q;
          uint8_t pos[2] = {ch.lo, ch.hi};
          for (int t = 0; t < 2; ++t) {
            const int64_t col = c0 + pos[t];
            uint16_t bits = 0;
            if (orow < m && col < k) bits = src[orow * k + col];
            // Keep negative zero out of the packed form: it decodes identically.
            if (row[4 * q + pos[t]] == 0.0f) bits = 0;
            out.values[size_t(vi + t)] = bits;
            kept_mag += std::fabs(double(row[4 * q + pos[t]]));
            out.meta[size_t((vi + t) / 4)] |= uint8_t(pos[t] << (2 * ((vi + t) % 4)));
          }
        }
      }
    }
  }
  out.retained_magnitude = total_mag > 0.0 ? kept_mag / total_mag : 1.0;
  return out;
}

}  // namespace samoyeds

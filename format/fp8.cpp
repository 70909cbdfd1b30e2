#include "format/fp8.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "samoyeds/error.hpp"

namespace samoyeds {

uint8_t float_to_e4m3_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  const uint8_t sign = uint8_t((bits >> 24) & 0x80u);
  if (std::isnan(value)) return sign | 0x7Fu;
  const float a = std::fabs(value);
  if (a >= kE4m3Max) return sign | 0x7Eu;  // 448 = 1.75 x 2^8; past it (and inf) saturates
  if (a < 0.015625f) {
    // Subnormal, m x 2^-9: the scaling by 512 is exact, the half to even
    // decided on integers (whatever the rounding mode), and m = 8 is the
    // smallest normal's code (0x08).
    const float scaled = a * 512.0f;
    uint32_t m = uint32_t(scaled);
    const float rest = scaled - float(m);
    if (rest > 0.5f || (rest == 0.5f && (m & 1u))) ++m;
    return sign | uint8_t(m);
  }
  const uint32_t abits = bits & 0x7FFFFFFFu;
  int exponent = int(abits >> 23) - 127;  // -6 .. 8
  uint32_t keep = (abits >> 20) & 7u;
  const uint32_t rest = abits & 0xFFFFFu, half = 0x80000u;
  if (rest > half || (rest == half && (keep & 1u))) ++keep;
  if (keep == 8u) {
    keep = 0;
    ++exponent;
  }
  if (exponent > 8 || (exponent == 8 && keep == 7u)) return sign | 0x7Eu;  // rounded past 448
  return sign | uint8_t(((exponent + 7) << 3) | int(keep));
}

float e4m3_bits_to_float(uint8_t bits) {
  const int e = (bits >> 3) & 0xF, m = bits & 7;
  const bool negative = bits & 0x80u;
  if (e == 15 && m == 7) return negative ? -std::nanf("") : std::nanf("");
  const float v = e == 0 ? std::ldexp(float(m), -9) : std::ldexp(float(8 + m), e - 10);
  return negative ? -v : v;
}

Fp8ScaleGrid fp8_scale_grid(Fp8Scaling scaling, int64_t rows, int64_t cols) {
  Fp8ScaleGrid g{kFp8Block, kFp8Block, 0, 0};
  if (scaling == Fp8Scaling::PerRow) g = {1, cols, 0, 0};
  if (scaling == Fp8Scaling::Group1x128) g = {1, kFp8Block, 0, 0};
  g.rows = (rows + g.block_rows - 1) / g.block_rows;
  g.cols = (cols + g.block_cols - 1) / g.block_cols;
  return g;
}

void validate(const Fp8Weights& q) {
  const auto bad = [](const std::string& why) { throw Error(ErrorCode::InvalidArgument, "FP8 weights: " + why); };
  if (q.rows <= 0 || q.cols <= 0 || q.cols > std::numeric_limits<int64_t>::max() / q.rows)
    bad(std::to_string(q.rows) + " x " + std::to_string(q.cols) + " is no matrix");
  if (int64_t(q.values.size()) != q.rows * q.cols)
    bad(std::to_string(q.values.size()) + " values for " + std::to_string(q.rows) + " x " + std::to_string(q.cols));
  const int64_t scales = fp8_scale_grid(q.scaling, q.rows, q.cols).count();
  if (int64_t(q.scale_inv.size()) != scales)
    bad(std::to_string(q.scale_inv.size()) + " scales where the scaling has " + std::to_string(scales));
}

float Fp8Weights::scale_at(int64_t row, int64_t col) const {
  return scale_inv[size_t(fp8_scale_grid(scaling, rows, cols).index(row, col))];
}

Fp8Weights quantize_e4m3(const uint16_t* w, int64_t rows, int64_t cols, DType dtype, Fp8Scaling scaling) {
  if (rows <= 0 || cols <= 0 || cols > std::numeric_limits<int64_t>::max() / rows)
    throw Error(ErrorCode::InvalidArgument, "quantize_e4m3: a " + std::to_string(rows) + " x " + std::to_string(cols) +
                                                " matrix has no elements or too many");
  if (!w) throw Error(ErrorCode::InvalidArgument, "quantize_e4m3: the weights are null");
  // The first non-finite weight in row-major order, as pack_weights names it.
  for (int64_t i = 0; i < rows * cols; ++i)
    if (!std::isfinite(to_float(dtype, w[i])))
      throw Error(ErrorCode::NonFiniteInput, "quantize_e4m3: weight (" + std::to_string(i / cols) + ", " +
                                                 std::to_string(i % cols) + ") is not finite");
  Fp8Weights q;
  q.rows = rows;
  q.cols = cols;
  q.scaling = scaling;
  const Fp8ScaleGrid grid = fp8_scale_grid(scaling, rows, cols);
  const int64_t block_rows = grid.block_rows, block_cols = grid.block_cols, grid_rows = grid.rows,
                grid_cols = grid.cols;
  q.scale_inv.assign(size_t(grid.count()), 1.0f);
  q.values.resize(size_t(rows * cols));
  for (int64_t br = 0; br < grid_rows; ++br)
    for (int64_t bc = 0; bc < grid_cols; ++bc) {
      const int64_t r0 = br * block_rows, r1 = std::min(rows, r0 + block_rows);
      const int64_t c0 = bc * block_cols, c1 = std::min(cols, c0 + block_cols);
      float amax = 0.0f;
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) {
          amax = std::max(amax, std::fabs(to_float(dtype, w[r * cols + c])));
        }
      // Divided by scale_inv rather than times 448 / amax: for a block of
      // subnormal weights the latter is infinite (and 0 x inf is NaN).
      const float scale_inv = amax > 0.0f ? amax / kE4m3Max : 1.0f;
      q.scale_inv[size_t(br * grid_cols + bc)] = scale_inv;
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c)
          q.values[size_t(r * cols + c)] = float_to_e4m3_bits(to_float(dtype, w[r * cols + c]) / scale_inv);
    }
  return q;
}

std::vector<double> e4m3_token_round_trip(const std::vector<double>& row) {
  std::vector<uint16_t> bits(row.size());
  for (size_t i = 0; i < row.size(); ++i) bits[i] = float_to_bf16_bits(float(row[i]));
  const std::vector<float> q =
      dequantize(quantize_e4m3(bits.data(), 1, int64_t(row.size()), DType::bf16, Fp8Scaling::Group1x128));
  return std::vector<double>(q.begin(), q.end());
}

std::vector<float> dequantize(const Fp8Weights& q) {
  validate(q);
  std::vector<float> out(q.values.size());
  for (int64_t r = 0; r < q.rows; ++r)
    for (int64_t c = 0; c < q.cols; ++c)
      out[size_t(r * q.cols + c)] = e4m3_bits_to_float(q.values[size_t(r * q.cols + c)]) * q.scale_at(r, c);
  return out;
}

}  // namespace samoyeds

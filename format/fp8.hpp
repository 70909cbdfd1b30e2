// FP8 E4M3 weights with their scales, on the host: the element conversion
// (OCP E4M3, the "fn" variant of torch.float8_e4m3fn: no infinities, NaN at
// S.1111.111, largest finite 448) and the scalings the FP8 path takes: one
// scale per 128 x 128 block (DeepSeek-V3's checkpoints, whose
// `weight_scale_inv` [ceil(rows/128), ceil(cols/128)] this layout is), one
// per output row, or one per 1 x 128 group of a row (activations: a token's
// groups, as DeepGEMM scales them). w ~= e4m3 * scale_inv. Packed in the
// dual-side format by fp8_pack.hpp; the FP8 kernel is still to come.
#pragma once
#include <cstdint>
#include <vector>

#include "samoyeds/dtype.hpp"

namespace samoyeds {

// Round to nearest even (in any floating-point rounding mode); magnitudes
// past 448 (and infinities) saturate to +-448, as cvt.satfinite does
// (torch's cast gives NaN past 480 instead); NaN stays NaN, its sign kept.
uint8_t float_to_e4m3_bits(float value);
float e4m3_bits_to_float(uint8_t bits);
constexpr float kE4m3Max = 448.0f;

// The block one scale covers: 128 x 128, a whole row, or 1 x 128.
enum class Fp8Scaling { Block128, PerRow, Group1x128 };
constexpr int64_t kFp8Block = 128;

// Scales along rows and along columns that `scaling` gives a rows x cols
// matrix (each dimension's blocks, the last partial).
struct Fp8ScaleGrid {
  int64_t block_rows, block_cols, rows, cols;
  int64_t count() const { return rows * cols; }
  int64_t index(int64_t row, int64_t col) const { return row / block_rows * cols + col / block_cols; }
};
Fp8ScaleGrid fp8_scale_grid(Fp8Scaling scaling, int64_t rows, int64_t cols);

struct Fp8Weights {
  int64_t rows = 0, cols = 0;
  Fp8Scaling scaling = Fp8Scaling::Block128;
  std::vector<uint8_t> values;   // [rows, cols], E4M3 bits
  // Block128: [ceil(rows/128), ceil(cols/128)]; PerRow: [rows]; Group1x128: [rows, ceil(cols/128)]
  std::vector<float> scale_inv;
  float scale_at(int64_t row, int64_t col) const;
};
// Sizes consistent with the shape and scaling (InvalidArgument otherwise):
// what reads an Fp8Weights checks it first.
void validate(const Fp8Weights& q);

// Each block's (or row's) largest magnitude maps to 448: scale_inv =
// amax / 448 and the value is E4M3(w / scale_inv); an all-zero block gets
// scale_inv 1. Non-finite weights are refused (NonFiniteInput), naming the
// first in row-major order.
Fp8Weights quantize_e4m3(const uint16_t* w, int64_t rows, int64_t cols, DType dtype,
                         Fp8Scaling scaling = Fp8Scaling::Block128);
// e4m3 * scale_inv, row-major, in float.
std::vector<float> dequantize(const Fp8Weights& q);

// One row as the FP8 kernels take a token (or the gated activation): rounded
// to bf16, then to E4M3 with one scale per 1 x 128 group, back in float64.
// The float64 models of the FP8 layer (its GPU test, bench/fp8_accuracy) use it.
std::vector<double> e4m3_token_round_trip(const std::vector<double>& row);

}  // namespace samoyeds

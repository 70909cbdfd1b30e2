#include "format/fp8_pack.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "samoyeds/error.hpp"

namespace samoyeds {
namespace {

void require_block_aligned(const SparsityParams& sp) {
  sp.validate();
  if (kFp8Block % sp.M != 0 || kFp8Block % sp.V != 0)
    throw Error(ErrorCode::InvalidArgument,
                "FP8 packing: " + sp.to_string() + " has row groups (M) or segments (V) that cross the 128 x 128 " +
                    "scale blocks; M and V must divide 128");
}

// Every E4M3 value is a bfloat16 value (3 mantissa bits of 7, exponents in
// range): the codes widen exactly, so the 16-bit packing can select them.
uint16_t e4m3_as_bf16(uint8_t code) { return float_to_bf16_bits(e4m3_bits_to_float(code)); }

// The dense 128 x 128 block (its scale's index) of condensed row r, value
// column j (two values per 4 columns).
size_t block_of(const PackedWeights& p, const Fp8ScaleGrid& grid, int64_t r, int64_t j) {
  const int64_t row = r / p.sparsity.N * p.sparsity.M;  // the group's first dense row
  return size_t(grid.index(row, j / 2 * 4));
}

// The packing's selection and room for its codes, at scale 1.
PackedFp8Weights frame_of(PackedWeights p) {
  PackedFp8Weights q;
  q.values.resize(p.values.size());
  p.values.clear();
  q.scale_inv.assign(size_t(fp8_scale_grid(Fp8Scaling::Block128, p.m, p.k).count()), 1.0f);
  q.selection = std::move(p);
  return q;
}

}  // namespace

int64_t PackedFp8Weights::payload_bytes() const {
  return int64_t(values.size()) + int64_t(selection.meta.size()) + int64_t(selection.sel.size()) +
         int64_t(scale_inv.size()) * 4;
}

PackedFp8Weights pack_weights_e4m3(const uint16_t* dense, int64_t m, int64_t k, DType dtype,
                                   const SparsityParams& sparsity, PackMode mode) {
  require_block_aligned(sparsity);
  const PackedWeights p = pack_weights(dense, m, k, dtype, sparsity, mode);
  PackedFp8Weights q = frame_of(p);
  const Fp8ScaleGrid grid = fp8_scale_grid(Fp8Scaling::Block128, m, k);
  const int64_t half = p.k_pad / 2;
  std::vector<float> amax(q.scale_inv.size(), 0.0f);
  for (int64_t r = 0; r < p.condensed_rows(); ++r)
    for (int64_t j = 0; j < half; ++j) {
      float& a = amax[block_of(p, grid, r, j)];
      a = std::max(a, std::fabs(to_float(dtype, p.values[size_t(r * half + j)])));
    }
  for (size_t b = 0; b < amax.size(); ++b) q.scale_inv[b] = amax[b] > 0.0f ? amax[b] / kE4m3Max : 1.0f;
  for (int64_t r = 0; r < p.condensed_rows(); ++r)
    for (int64_t j = 0; j < half; ++j) {
      const uint8_t code =
          float_to_e4m3_bits(to_float(dtype, p.values[size_t(r * half + j)]) / q.scale_inv[block_of(p, grid, r, j)]);
      q.values[size_t(r * half + j)] = (code & 0x7Fu) ? code : 0;  // no -0, as the 16-bit packing keeps none
    }
  return q;
}

PackedFp8Weights pack_weights_e4m3(const Fp8Weights& weights, const SparsityParams& sparsity, PackMode mode) {
  require_block_aligned(sparsity);
  validate(weights);
  if (weights.scaling != Fp8Scaling::Block128)
    throw Error(ErrorCode::InvalidArgument, "FP8 packing takes weights with one scale per 128 x 128 block");
  std::vector<uint16_t> widened(weights.values.size());
  for (size_t i = 0; i < widened.size(); ++i) {
    if ((weights.values[i] & 0x7Fu) == 0x7Fu)
      throw Error(ErrorCode::NonFiniteInput, "FP8 packing: weight (" + std::to_string(int64_t(i) / weights.cols) +
                                                 ", " + std::to_string(int64_t(i) % weights.cols) + ") is NaN");
    widened[i] = e4m3_as_bf16(weights.values[i]);
  }
  PackedWeights p = pack_weights(widened.data(), weights.rows, weights.cols, DType::bf16, sparsity, mode);
  std::vector<uint8_t> codes(p.values.size());
  for (size_t i = 0; i < p.values.size(); ++i) codes[i] = float_to_e4m3_bits(bf16_bits_to_float(p.values[i]));
  PackedFp8Weights q = frame_of(std::move(p));
  q.values = std::move(codes);
  q.scale_inv = weights.scale_inv;
  return q;
}

std::vector<float> decode_weights(const PackedFp8Weights& q) {
  const PackedWeights& sel = q.selection;
  const PackedSizes sizes = packed_sizes(sel.m, sel.k, sel.sparsity);
  const Fp8ScaleGrid grid = fp8_scale_grid(Fp8Scaling::Block128, sel.m, sel.k);
  if (int64_t(q.values.size()) != sizes.values || int64_t(sel.sel.size()) != sizes.sel ||
      int64_t(sel.meta.size()) != sizes.meta || int64_t(q.scale_inv.size()) != grid.count())
    throw Error(ErrorCode::InvalidArgument, "packed FP8 weights: sizes do not fit their shape and pattern");
  PackedWeights p = sel;  // the codes widened: the 16-bit decode places them
  p.dtype = DType::bf16;
  p.values.resize(q.values.size());
  for (size_t i = 0; i < q.values.size(); ++i) p.values[i] = e4m3_as_bf16(q.values[i]);
  const std::vector<uint16_t> codes = decode_weights(p);
  std::vector<float> out(codes.size());
  for (int64_t r = 0; r < sel.m; ++r)
    for (int64_t c = 0; c < sel.k; ++c)
      out[size_t(r * sel.k + c)] =
          bf16_bits_to_float(codes[size_t(r * sel.k + c)]) * q.scale_inv[size_t(grid.index(r, c))];
  return out;
}

}  // namespace samoyeds

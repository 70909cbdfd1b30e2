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

// The block of condensed row r, value column j (two values per 4 columns).
size_t block_of(const PackedFp8Weights& p, int64_t r, int64_t j) {
  const int64_t block_cols = (p.k + kFp8Block - 1) / kFp8Block;
  const int64_t row = r / p.sparsity.N * p.sparsity.M;  // the group's first dense row
  return size_t(row / kFp8Block * block_cols + (j / 2) * 4 / kFp8Block);
}

PackedFp8Weights frame_of(const PackedWeights& p) {
  PackedFp8Weights q;
  q.sparsity = p.sparsity;
  q.m = p.m;
  q.k = p.k;
  q.m_pad = p.m_pad;
  q.k_pad = p.k_pad;
  q.sel = p.sel;
  q.meta = p.meta;
  q.values.resize(p.values.size());
  q.scale_inv.assign(size_t(((p.m + kFp8Block - 1) / kFp8Block) * ((p.k + kFp8Block - 1) / kFp8Block)), 1.0f);
  return q;
}

}  // namespace

int64_t PackedFp8Weights::payload_bytes() const {
  return int64_t(values.size()) + int64_t(meta.size()) + int64_t(sel.size()) + int64_t(scale_inv.size()) * 4;
}

PackedFp8Weights pack_weights_e4m3(const uint16_t* dense, int64_t m, int64_t k, DType dtype,
                                   const SparsityParams& sparsity, PackMode mode) {
  require_block_aligned(sparsity);
  const PackedWeights p = pack_weights(dense, m, k, dtype, sparsity, mode);
  PackedFp8Weights q = frame_of(p);
  const int64_t half = p.k_pad / 2;
  std::vector<float> amax(q.scale_inv.size(), 0.0f);
  for (int64_t r = 0; r < p.condensed_rows(); ++r)
    for (int64_t j = 0; j < half; ++j) {
      float& a = amax[block_of(q, r, j)];
      a = std::max(a, std::fabs(to_float(dtype, p.values[size_t(r * half + j)])));
    }
  for (size_t b = 0; b < amax.size(); ++b) q.scale_inv[b] = amax[b] > 0.0f ? amax[b] / kE4m3Max : 1.0f;
  for (int64_t r = 0; r < p.condensed_rows(); ++r)
    for (int64_t j = 0; j < half; ++j) {
      const uint8_t code =
          float_to_e4m3_bits(to_float(dtype, p.values[size_t(r * half + j)]) / q.scale_inv[block_of(q, r, j)]);
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
  const PackedWeights p = pack_weights(widened.data(), weights.rows, weights.cols, DType::bf16, sparsity, mode);
  PackedFp8Weights q = frame_of(p);
  q.scale_inv = weights.scale_inv;
  for (size_t i = 0; i < p.values.size(); ++i) q.values[i] = float_to_e4m3_bits(bf16_bits_to_float(p.values[i]));
  return q;
}

std::vector<float> decode_weights(const PackedFp8Weights& q) {
  const PackedSizes sizes = packed_sizes(q.m, q.k, q.sparsity);
  if (int64_t(q.values.size()) != sizes.values || int64_t(q.sel.size()) != sizes.sel ||
      int64_t(q.meta.size()) != sizes.meta ||
      int64_t(q.scale_inv.size()) != ((q.m + kFp8Block - 1) / kFp8Block) * ((q.k + kFp8Block - 1) / kFp8Block))
    throw Error(ErrorCode::InvalidArgument, "packed FP8 weights: sizes do not fit their shape and pattern");
  PackedWeights p;  // the selection, with the codes widened: decode_weights places them
  p.dtype = DType::bf16;
  p.sparsity = q.sparsity;
  p.m = q.m;
  p.k = q.k;
  p.m_pad = q.m_pad;
  p.k_pad = q.k_pad;
  p.sel = q.sel;
  p.meta = q.meta;
  p.values.resize(q.values.size());
  for (size_t i = 0; i < q.values.size(); ++i) p.values[i] = e4m3_as_bf16(q.values[i]);
  const std::vector<uint16_t> codes = decode_weights(p);
  Fp8Weights scales;  // for scale_at: the dense matrix's blocks
  scales.rows = q.m;
  scales.cols = q.k;
  scales.scale_inv = q.scale_inv;
  std::vector<float> out(codes.size());
  for (int64_t r = 0; r < q.m; ++r)
    for (int64_t c = 0; c < q.k; ++c)
      out[size_t(r * q.k + c)] = bf16_bits_to_float(codes[size_t(r * q.k + c)]) * scales.scale_at(r, c);
  return out;
}

}  // namespace samoyeds

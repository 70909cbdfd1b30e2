// FP8 E4M3 weights in the dual-side format (issue 29, item 1): the same
// selection as the 16-bit packing (rows per segment, 2:4 in each kept row:
// selectors and 2-bit metadata as PackedWeights holds them), the kept values
// as E4M3 codes, one scale per 128 x 128 block of the dense matrix. A 1:2
// row group and a segment then lie inside one block (M and V divide 128),
// so a value's scale follows from its condensed row and column alone, no
// selector needed. The device layout (the 8-bit sparse MMA's metadata
// order) comes with the FP8 kernel.
#pragma once
#include <cstdint>
#include <vector>

#include "format/fp8.hpp"
#include "samoyeds/format.hpp"

namespace samoyeds {

struct PackedFp8Weights {
  // The 16-bit packing's selection: shape, pattern, selectors and metadata;
  // its 16-bit values stay empty (the codes below stand for them).
  PackedWeights selection;
  std::vector<uint8_t> values;   // [condensed_rows, k_pad/2] E4M3 codes
  std::vector<float> scale_inv;  // [ceil(m/128), ceil(k/128)]: value = e4m3 * scale_inv of its block
  // Values, metadata, selectors and scales: the memory the packed matrix needs.
  int64_t payload_bytes() const;
};

// From 16-bit weights: pruned as pack_weights prunes them, then each block's
// kept values scaled so their largest is 448 (the pruned values' range, not
// the dense matrix's). Throws as pack_weights does, and for patterns whose
// groups or segments cross a 128 block (M or V not dividing 128).
PackedFp8Weights pack_weights_e4m3(const uint16_t* dense, int64_t m, int64_t k, DType dtype,
                                   const SparsityParams& sparsity, PackMode mode = PackMode::Magnitude);
// From FP8 weights with block scales (a checkpoint's): pruned by the codes'
// magnitudes (one scale per block, so the same order as the values'), the
// kept codes and the scales kept exactly; Strict verifies the pattern.
PackedFp8Weights pack_weights_e4m3(const Fp8Weights& weights, const SparsityParams& sparsity,
                                   PackMode mode = PackMode::Magnitude);

// The dense [m, k] matrix the packed one stands for, in float.
std::vector<float> decode_weights(const PackedFp8Weights& packed);

}  // namespace samoyeds

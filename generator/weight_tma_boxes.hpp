// The boxes a wgmma_sp kernel's TMA brings per k-tile and weight operand.
// runtime/tma_weight_maps.cpp encodes its tensor maps with them, and the
// generated kernel static_asserts that their bytes equal what its producer
// tells the `full` mbarrier to expect: a mismatch would leave the consumers
// waiting forever, so it must fail at compile time, on any machine.
#pragma once
#include <cstdint>

namespace samoyeds {

struct TmaBox {
  uint32_t cols = 0, rows = 0;  // cols: the innermost (contiguous) dimension, in elements
  int elem_bytes = 0;
  int64_t bytes() const { return int64_t(cols) * rows * elem_bytes; }
};

struct WeightTmaBoxes {
  TmaBox values;  // [block_m rows][block_k/2 values], u16, one 128-byte swizzle atom wide at block_k = 128
  TmaBox meta;    // [block_m/16 tiles][block_k/2 words], u32 (a 16-row tile's row holds k/2 words)
  TmaBox sel;     // [segments in the k-tile][block_m], u8
  int64_t bytes() const { return values.bytes() + meta.bytes() + sel.bytes(); }
};

inline WeightTmaBoxes weight_tma_boxes(int block_m, int block_k, int V) {
  WeightTmaBoxes b;
  b.values = {uint32_t(block_k / 2), uint32_t(block_m), 2};
  b.meta = {uint32_t(block_k / 2), uint32_t(block_m / 16), 4};
  b.sel = {uint32_t(block_m), uint32_t(block_k >= V ? block_k / V : 1), 1};
  return b;
}

}  // namespace samoyeds

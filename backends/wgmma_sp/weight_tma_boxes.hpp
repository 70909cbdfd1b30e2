// The boxes a wgmma_sp kernel's TMA brings per k-tile and weight operand
// (and, with tokens_tma, of the token tile).
// backends/wgmma_sp/tma_weight_maps.cpp encodes its tensor maps with them, and the
// generated kernel static_asserts that the bytes landing per stage equal what
// its producer tells the `full` mbarrier to expect: a mismatch would leave
// the consumers waiting forever, so it must fail at compile time, on any
// machine. With multicast over a cluster of `multicast` blocks, each block
// asks for 1/multicast of the rows of the values and metadata, sent to every
// block of the cluster; the selectors stay per block (a few bytes).
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
  int multicast = 1;
  // What lands in one block's stage: every block's share of values and metadata, its own selectors.
  int64_t stage_bytes() const { return (values.bytes() + meta.bytes()) * multicast + sel.bytes(); }
};

inline WeightTmaBoxes weight_tma_boxes(int block_m, int block_k, int V, int multicast = 1) {
  WeightTmaBoxes b;
  b.multicast = multicast;
  b.values = {uint32_t(block_k / 2), uint32_t(block_m / multicast), 2};
  b.meta = {uint32_t(block_k / 2), uint32_t(block_m / 16 / multicast), 4};
  b.sel = {uint32_t(block_m), uint32_t(block_k >= V ? block_k / V : 1), 1};
  return b;
}

// Token tiles by TMA (TileConfig::tokens_tma): per 128-byte atom column of
// the k-tile, one box of block_n consecutive activation rows, 64 values wide
// (the 128-byte swizzle's limit); block_k / 64 boxes per stage.
inline TmaBox token_tma_box(int block_n) { return {64, uint32_t(block_n), 2}; }

}  // namespace samoyeds

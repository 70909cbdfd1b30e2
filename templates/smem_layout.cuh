// Shared-memory tile layouts. A tile row of ROW_BYTES is split into 16-byte
// chunks; the chunk index is XOR-swizzled with the row so that the eight rows an
// ldmatrix phase reads land in eight different 16-byte bank groups.
#pragma once
#include "samoyeds/common.cuh"

namespace samoyeds {

template <int ROW_BYTES>
struct SwizzledTile {
  static_assert(ROW_BYTES % 64 == 0, "rows must be a multiple of 64 bytes");
  static constexpr int kChunks = ROW_BYTES / 16;
  // Rows narrower than a 128-byte bank line share one: two 64-byte rows per line.
  static constexpr int kRowsPerLine = ROW_BYTES >= 128 ? 1 : 128 / ROW_BYTES;
  static constexpr int kXorSpan = kChunks < 8 ? kChunks : 8;

  static __device__ __forceinline__ int offset(int row, int chunk) {
    const int x = (row / kRowsPerLine) % kXorSpan;
    return row * ROW_BYTES + ((chunk ^ x) * 16);
  }
};

}  // namespace samoyeds

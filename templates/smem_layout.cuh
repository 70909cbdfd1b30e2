// Shared-memory tile layout for ldmatrix operands: rows of ROW_BYTES, 16-byte
// chunks XOR-swizzled with the row so the eight rows of one ldmatrix phase hit
// eight different bank groups. Fragment rows a thread reads sit at multiples
// of 16 (A) or 8 (B) rows apart, so the XOR term depends on the lane alone:
// a thread computes it once and applies it to every k-step's chunk. (Keeping
// the XOR per (row, k-step) held 32 addresses live and spilled at
// block_k = 128; 16-byte row padding avoided that too but ran 10-16% slower
// than this layout on the H200, docs/perf-log.md.)
#pragma once
#include "samoyeds/common.cuh"

namespace samoyeds {

template <int ROWS, int ROW_BYTES>
struct SwizzledTile {
  static_assert(ROW_BYTES % 64 == 0, "rows must be a multiple of 64 bytes");
  static constexpr int kBytes = ROWS * ROW_BYTES;
  static constexpr int kStride = ROW_BYTES;
  static constexpr int kChunks = ROW_BYTES / 16;
  static constexpr int kRowsPerLine = ROW_BYTES >= 128 ? 1 : 128 / ROW_BYTES;
  static constexpr int kXorSpan = kChunks < 8 ? kChunks : 8;
  static __device__ __forceinline__ int row_xor(int row) { return (row / kRowsPerLine) % kXorSpan; }
  static __device__ __forceinline__ int offset(int row, int chunk) {
    return row * ROW_BYTES + ((chunk ^ row_xor(row)) * 16);
  }
};

}  // namespace samoyeds

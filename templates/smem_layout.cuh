// Shared-memory tile layout for ldmatrix operands. Each row of ROW_BYTES is
// followed by 16 bytes of padding: eight consecutive rows read at the same
// column then fall into eight different 16-byte bank groups (row stride is
// one group more than a multiple of 128 bytes), so ldmatrix is conflict-free.
// Unlike an XOR swizzle, the address of a later k-step is the first one plus
// a constant, which the compiler folds into the instruction's immediate: a
// thread keeps one address per fragment row instead of one per (row, k-step)
// (with block_k = 128 the swizzle kept 32 addresses live and forced spills).
#pragma once
#include "samoyeds/common.cuh"

namespace samoyeds {

template <int ROW_BYTES>
struct PaddedTile {
  static_assert(ROW_BYTES % 128 == 0 || ROW_BYTES == 64, "rows of 64 bytes or a multiple of 128");
  // Strides of 80, 144 or 272 bytes: 5, 9 or 17 bank groups, all odd, so
  // eight consecutive rows start in eight different groups.
  static constexpr int kStride = ROW_BYTES + 16;
  static __device__ __forceinline__ int offset(int row, int chunk) { return row * kStride + chunk * 16; }
};

}  // namespace samoyeds

// Shared-memory tile layout for ldmatrix operands: rows of ROW_BYTES, 16-byte
// chunks XOR-swizzled with the row so the eight rows of one ldmatrix phase hit
// eight different bank groups. Fragment rows a thread reads sit at multiples
// of 16 (A) or 8 (B) rows apart, so the XOR term depends on the lane alone:
// a thread computes it once and applies it to every k-step's chunk. (Keeping
// the XOR per (row, k-step) held 32 addresses live and spilled at
// block_k = 128; 16-byte row padding avoided that too but ran 10-16% slower
// than this layout on the H200: docs/perf-log.md, 2026-11-29, 8c881d1.)
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

// The 128-byte swizzle of TMA (CU_TENSOR_MAP_SWIZZLE_128B) and of the wgmma
// descriptors: a tile of ROWS rows and ROW_BYTES bytes per row is cut along
// k into 128-byte columns; each column holds every row's 128 bytes back to
// back, and inside each 8-row x 128-byte block the 16-byte chunk index is
// XORed with the row (mod 8). The wgmma operands use it (wgmma_sp_sm90a.cuh),
// and so does the staging of TMA-stored outputs (ssmm_pipeline.cuh), whose
// rows are tokens.
template <int ROWS, int ROW_BYTES>
struct Swizzle128Tile {
  static_assert(ROWS % 8 == 0 && ROW_BYTES % 128 == 0, "whole 8-row x 128-byte swizzle atoms");
  static constexpr int kBytes = ROWS * ROW_BYTES;
  static constexpr int kColumnBytes = ROWS * 128;  // one 128-byte column of every row
  static __device__ __forceinline__ int offset(int row, int chunk) {
    return (chunk / 8) * kColumnBytes + row * 128 + (((chunk % 8) ^ (row % 8)) * 16);
  }
  // Start of the k32 operand at byte `kb` of a row (kb a multiple of 32):
  // inside an atom the descriptor's start address moves by kb and the
  // hardware applies the swizzle to the final address, as TMA did.
  static __device__ __forceinline__ u32 k_offset(int kb) { return (kb / 128) * kColumnBytes + kb % 128; }
};

}  // namespace samoyeds

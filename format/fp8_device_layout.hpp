// Physical layout of packed FP8 weights on the device (layout id
// "sp_tc_e4m3.v1"), what the sparse FP8 warpgroup MMA reads
// (wgmma.mma_async.sp m64nNk64 e4m3, docs/fp8.md). Derived from a
// PackedFp8Weights at upload.
//
// - values [rows_pad, k_phys/2] E4M3 codes: condensed rows padded to
//   kRowAlign, k to kKAlign (and V) with zeros. A 256-column k-tile of a row
//   is 128 bytes: one 128-byte swizzle atom, the 16-bit layout's geometry.
// - meta [rows_pad/16][k_phys/256][32][4] u32: lane L's four words of
//   (16-row tile t, k-tile g) side by side, one 16-byte shared-memory load
//   per k-tile. Word s is the register lane L supplies to k64 step 4g + s
//   (selector 0): one row and 32 columns, as fp8_meta_slot says. A k-tile
//   of a 16-row tile is 512 contiguous bytes, so the array is also a
//   row-major [rows_pad/16][k_phys/2] array of words, as the 16-bit one.
// - sel [k_phys/V][rows_pad] u8, as the 16-bit layout.
// - scale_inv [rows_pad/16][k_phys/128] f32: the block scale of each 16-row
//   tile and 128 columns. A tile's rows lie inside one 128-row scale block
//   when 16 condensed rows are whole groups (N divides 16) spanning a
//   divisor of 128 dense rows; padding is 1.
#pragma once
#include <cstdint>
#include <vector>

#include "format/device_layout.hpp"
#include "format/fp8_pack.hpp"

namespace samoyeds {

// Which row (of a warp's 16) and which 4-column chunk (of a k64 step's 16)
// nibble q of lane L's metadata register feeds: lane 4g + t holds row
// g + 8 (t & 1) and columns 32 (t >> 1) .. + 31, chunk by chunk in bits
// 4q .. 4q + 3 as lo | hi << 2 (CUTLASS's sm90 sparse GMMA layout; the GPU
// test tests/backends/wgmma_sp/fp8_mma_gpu_test.cpp reads it off the hardware).
struct Fp8MetaSlot {
  int row;    // 0 .. 15
  int chunk;  // 0 .. 15
};
constexpr Fp8MetaSlot fp8_meta_slot(int lane, int nibble) {
  return {lane / 4 + 8 * (lane % 4 & 1), 8 * (lane % 4 >> 1) + nibble};
}

struct Fp8DeviceLayout {
  static constexpr const char* kLayoutId = "sp_tc_e4m3.v1";
  static constexpr int kRowAlign = DeviceLayout::kRowAlign;
  static constexpr int kKAlign = 256;    // the FP8 k-tile: four k64 steps

  SparsityParams sparsity;
  int64_t m = 0, k = 0;  // caller's shape
  int64_t rows = 0;      // condensed rows before padding
  int64_t rows_pad = 0;
  int64_t k_phys = 0;    // multiple of max(V, kKAlign)

  std::vector<uint8_t> values;
  std::vector<uint32_t> meta;
  std::vector<uint8_t> sel;
  std::vector<float> scale_inv;

  int64_t bytes() const {
    return int64_t(values.size()) + int64_t(meta.size()) * 4 + int64_t(sel.size()) + int64_t(scale_inv.size()) * 4;
  }
};

// Throws InvalidArgument for a pattern whose 16-row tiles cross a scale
// block (N not dividing 16, or 16 / N groups of M rows not dividing 128).
Fp8DeviceLayout to_device_layout(const PackedFp8Weights& packed);

}  // namespace samoyeds

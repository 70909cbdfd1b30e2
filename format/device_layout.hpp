// Physical layout of packed weights on the device (layout id "sp_tc.v2"),
// read by both backends. Derived from the canonical PackedWeights at upload.
//
// - values [rows_pad, k_phys/2]: condensed rows padded to kRowAlign so every
//   block tile is in bounds (no predication on weight loads), k padded to
//   kKAlign (and to V) with zeros. Row-major: a wgmma_sp k-tile is one TMA
//   box whose 128-byte rows the swizzle lays out in wgmma's operand order.
// - meta  [rows_pad/16][k_phys/128][32][2] u32, register order of a
//   128-column k-tile (wgmma_sp's, and mma_sp's deepest): lane L's two words
//   of (16-row tile t, k-tile g) sit side by side, one 8-byte shared-memory
//   load per k-tile. Word h (0, 1) is the mma.sp m16n8k32 metadata register
//   of lane L for the 64 columns g*128 + 64*h ..: rows t*16+L/4 (bits 15:0)
//   and t*16+L/4+8 (bits 31:16), columns 16*(L%4) .. +15 of those 64: lanes
//   4q, 4q+1 feed the even k32 step (selector 0), 4q+2, 4q+3 the odd one
//   (selector 1). wgmma.sp m64nNk32 takes the same register per warp of its
//   warpgroup (16 rows each). A k-tile of a 16-row tile is 256 contiguous
//   bytes, so TMA boxes and 16-byte copies of whole k-tiles read the layout
//   as a row-major [rows_pad/16][k_phys/2] array of words.
// - sel   [k_phys/V][rows_pad] u8: row within the group, per segment.
//
// v1 ("mma_sp.v1") kept each 64-column slab's 32 words together, so a
// 128-column k-tile took two 4-byte loads per thread and operand.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "samoyeds/format.hpp"

namespace samoyeds {

struct DeviceLayout {
  static constexpr const char* kLayoutId = "sp_tc.v2";
  static constexpr int kRowAlign = 128;  // largest block tile in condensed rows
  static constexpr int kKAlign = 128;    // largest block tile along k, and the metadata's k-tile

  DType dtype = DType::f16;
  SparsityParams sparsity;
  int64_t m = 0, k = 0;  // caller's shape
  int64_t rows = 0;      // condensed rows before padding
  int64_t rows_pad = 0;
  int64_t k_phys = 0;    // multiple of max(V, kKAlign)

  std::vector<uint16_t> values;
  std::vector<uint32_t> meta;
  std::vector<uint8_t> sel;

  int64_t bytes() const {
    return int64_t(values.size()) * 2 + int64_t(meta.size()) * 4 + int64_t(sel.size());
  }
};

DeviceLayout to_device_layout(const PackedWeights& packed);

// What both device layouts (this and the FP8 one) pad alike: condensed rows
// to kRowAlign, k to k_align (and to V); selectors past the packed ones are
// j for row j (distinct, increasing), so the kernels never see an undefined
// pattern; values past the packed ones are zero.
struct LayoutFrame {
  int64_t rows = 0, rows_pad = 0, k_phys = 0;
};
LayoutFrame layout_frame(const PackedWeights& packed, int64_t k_align);
std::vector<uint8_t> padded_selectors(const PackedWeights& packed, const LayoutFrame& frame);
// [rows_pad, k_phys/2] from [rows, k_pad/2] values of any element type.
template <class T>
std::vector<T> padded_values(const std::vector<T>& values, const PackedWeights& packed, const LayoutFrame& frame) {
  const int64_t half_src = packed.k_pad / 2, half_dst = frame.k_phys / 2;
  std::vector<T> out(size_t(frame.rows_pad * half_dst), T(0));
  for (int64_t r = 0; r < frame.rows; ++r)
    std::copy_n(&values[size_t(r * half_src)], half_src, &out[size_t(r * half_dst)]);
  return out;
}

}  // namespace samoyeds

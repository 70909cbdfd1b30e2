// Physical layout of packed weights on the device, read by both backends (layout id
// "mma_sp.v1"). Derived from the canonical PackedWeights at pack time.
//
// - values [rows_pad, k_phys/2]: condensed rows padded to kRowAlign so every
//   block tile is in bounds (no predication on weight loads), k padded to
//   kKAlign (and to V) with zeros.
// - meta  [rows_pad/16][k_phys/64][32] u32: register order of mma.sp m16n8k32.
//   Word for lane L of (16-row tile t, 64-column slab s) holds rows t*16+L/4
//   (bits 15:0) and t*16+L/4+8 (bits 31:16), columns s*64+16*(L%4) .. +15:
//   lanes 4g,4g+1 feed the even k32 step (selector 0), 4g+2,4g+3 the odd one
//   (selector 1). A warp reads one 128-byte line per tile and slab.
// - sel   [k_phys/V][rows_pad] u8: row within the group, per segment.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "samoyeds/format.hpp"

namespace samoyeds {

struct DeviceLayout {
  static constexpr const char* kLayoutId = "mma_sp.v1";
  static constexpr int kRowAlign = 128;  // largest block tile in condensed rows
  static constexpr int kKAlign = 128;    // largest block tile along k

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

}  // namespace samoyeds

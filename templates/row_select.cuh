// Data-stationary N:M row selection. A thread's MMA fragment rows are
// condensed rows; in each V-column segment a condensed row stands for one of
// the M original rows of its group (its selector). Every fragment row keeps M
// accumulator slots; the MMA always accumulates into slot 0, and at a segment
// boundary slot 0 is swapped with the slot that holds the newly selected row.
// Cost: 2(M-1) selects per accumulator per segment, no shared memory, no
// extra accumulators beyond the M slots.
#pragma once
#include "samoyeds/common.cuh"

namespace samoyeds {

// Which original row (0..M-1) each slot holds: a nibble per slot.
struct SlotMap {
  u32 nibbles;
  static __device__ __forceinline__ SlotMap identity(int slots) {
    u32 v = 0;
    for (int i = 0; i < slots; ++i) v |= u32(i) << (4 * i);
    return SlotMap{v};
  }
  __device__ __forceinline__ int row_of(int slot) const { return int((nibbles >> (4 * slot)) & 0xfu); }
};

// Bring the accumulators of original row `want` into slot 0. `acc[s][j]` is
// slot s's j-th float of this fragment row (J floats per row).
template <int SLOTS, int J>
__device__ __forceinline__ void select_row(float (&acc)[SLOTS][J], SlotMap& map, int want) {
#pragma unroll
  for (int s = 1; s < SLOTS; ++s) {
    const bool hit = map.row_of(s) == want;
#pragma unroll
    for (int j = 0; j < J; ++j) {
      const float a0 = acc[0][j], as = acc[s][j];
      acc[0][j] = hit ? as : a0;
      acc[s][j] = hit ? a0 : as;
    }
    const u32 r0 = map.nibbles & 0xfu, rs = (map.nibbles >> (4 * s)) & 0xfu;
    const u32 swapped = (map.nibbles & ~(0xfu | (0xfu << (4 * s)))) | rs | (r0 << (4 * s));
    map.nibbles = hit ? swapped : map.nibbles;
  }
}

}  // namespace samoyeds

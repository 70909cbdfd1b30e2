// Data-stationary N:M row selection. A thread's MMA fragment rows are
// condensed rows; in each V-column segment a condensed row stands for one of
// the M original rows of its group (its selector). Every fragment row keeps
// M accumulator slots and the MMA always accumulates into slot 0. Two ways to
// route each segment's product to its original row; the MMA core picks one
// (Core::kSelectByDifference), because they trade registers for instructions:
//
// SwapSelect: at a segment boundary slot 0 is swapped with the slot that
//   holds the newly selected row; a nibble map remembers which row each slot
//   holds. 2(M-1) selects per accumulator per segment. The warp core (mma.sp)
//   uses it: its 128-deep k-tiles sit at the register limit, and the
//   difference form made five of its configs spill.
//
// DifferenceSelect: slot 0 holds the running sum S_s after segment s (no data
//   moves); slot q >= 1 holds D_q, the part that belongs to original row q.
//   Row q's share is sum_s [sel_s = q] (S_s - S_{s-1}), which regroups as
//     sum_s ([sel_s = q] - [sel_{s+1} = q]) S_s     (sel past the last: none),
//   so at the boundary into segment s, with S_{s-1} at rest, D_q gains
//   ([sel_{s-1} = q] - [sel_s = q]) * S_{s-1}: one FMA by -1, 0 or 1 per
//   accumulator and q, half the swap's selects. The warpgroup core (wgmma.sp)
//   uses it: its consumers were issue-bound, the selects the largest part.
//   After the last segment finish() adds the final term and leaves row 0 =
//   S - sum_q D_q. Extra rounding: M-1 fp32 adds per segment, far below the
//   output's precision; deterministic. A running sum that overflows fp32
//   turns the other rows of its group into inf/NaN too.
//
// Both: state() starts a tile, boundary() enters a segment (accumulators at
// rest), finish() ends the tile, row_of() says which original row a slot
// holds afterwards. `acc[s][j]` is slot s's j-th float of one fragment row.
#pragma once
#include "samoyeds/common.cuh"

namespace samoyeds {

struct SwapSelect {
  // Which original row (0..M-1) each slot holds: a nibble per slot.
  static __device__ __forceinline__ u32 start(int slots) {
    u32 v = 0;
    for (int i = 0; i < slots; ++i) v |= u32(i) << (4 * i);
    return v;
  }
  template <int SLOTS, int J>
  static __device__ __forceinline__ void boundary(float (&acc)[SLOTS][J], u32& map, int want) {
#pragma unroll
    for (int s = 1; s < SLOTS; ++s) {
      const bool hit = int((map >> (4 * s)) & 0xfu) == want;
#pragma unroll
      for (int j = 0; j < J; ++j) {
        const float a0 = acc[0][j], as = acc[s][j];
        acc[0][j] = hit ? as : a0;
        acc[s][j] = hit ? a0 : as;
      }
      const u32 r0 = map & 0xfu, rs = (map >> (4 * s)) & 0xfu;
      const u32 swapped = (map & ~(0xfu | (0xfu << (4 * s)))) | rs | (r0 << (4 * s));
      map = hit ? swapped : map;
    }
  }
  template <int SLOTS, int J>
  static __device__ __forceinline__ void finish(float (&)[SLOTS][J], u32) {}
  static __device__ __forceinline__ int row_of(u32 map, int slot) { return int((map >> (4 * slot)) & 0xfu); }
};

struct DifferenceSelect {
  // The previous segment's selector (0 before the first: S is still 0).
  static __device__ __forceinline__ u32 start(int) { return 0; }
  template <int SLOTS, int J>
  static __device__ __forceinline__ void boundary(float (&acc)[SLOTS][J], u32& prev, int want) {
#pragma unroll
    for (int q = 1; q < SLOTS; ++q) {
      const float c = float(int(prev) == q) - float(want == q);
#pragma unroll
      for (int j = 0; j < J; ++j) acc[q][j] = fmaf(c, acc[0][j], acc[q][j]);
    }
    prev = u32(want);
  }
  template <int SLOTS, int J>
  static __device__ __forceinline__ void finish(float (&acc)[SLOTS][J], u32 prev) {
#pragma unroll
    for (int q = 1; q < SLOTS; ++q) {
      const float c = float(int(prev) == q);
#pragma unroll
      for (int j = 0; j < J; ++j) acc[q][j] = fmaf(c, acc[0][j], acc[q][j]);
    }
#pragma unroll
    for (int q = 1; q < SLOTS; ++q)
#pragma unroll
      for (int j = 0; j < J; ++j) acc[0][j] -= acc[q][j];
  }
  static __device__ __forceinline__ int row_of(u32, int slot) { return slot; }
};

// DirectSelect (FP8): slot q is original row q throughout. The MMAs write a
// separate product per 128-deep k-block, which the pipeline's promote()
// scales and adds into the slot its segment selects, so nothing moves at a
// boundary.
struct DirectSelect {
  static __device__ __forceinline__ u32 start(int) { return 0; }
  template <int SLOTS, int J>
  static __device__ __forceinline__ void boundary(float (&)[SLOTS][J], u32&, int) {}
  template <int SLOTS, int J>
  static __device__ __forceinline__ void finish(float (&)[SLOTS][J], u32) {}
  static __device__ __forceinline__ int row_of(u32, int slot) { return slot; }
};

}  // namespace samoyeds

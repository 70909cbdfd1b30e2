// out[i, :] = x[ids[i], :] for i < n: routed tokens copied into list order,
// so that the up projection can read its token tiles as boxes of rows in
// order (TMA) instead of gathering them row by row inside the main loop.
// One warp per row, 16-byte pieces (k is a multiple of 8). An id out of
// range gives a zero row and raises the error flag.
#pragma once
#include "samoyeds/common.cuh"
#include "samoyeds/kernel_args.cuh"

namespace samoyeds {

template <int THREADS>
__device__ __forceinline__ void gather_rows(const GatherRowsArgs& a) {
  constexpr int kWarps = THREADS / 32;
  const int row = blockIdx.x * kWarps + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= a.n) return;
  const int id = a.ids[row];
  const bool valid = id >= 0 && id < a.x_rows;
  if (!valid && lane == 0 && a.error_flag) global_or(a.error_flag, kErrorBadTokenId);
  const uint4* src = reinterpret_cast<const uint4*>(a.x + u64(valid ? id : 0) * a.k);
  uint4* dst = reinterpret_cast<uint4*>(a.out + u64(row) * a.k);
  for (int c = lane; c < a.k / 8; c += 32) dst[c] = valid ? __ldg(src + c) : make_uint4(0, 0, 0, 0);
}

}  // namespace samoyeds

// Tokens into the FP8 projection's form (QuantizeRowsArgs): each 1 x 128
// group of a (gathered) row scaled so its largest magnitude is 448, rounded
// to E4M3 (nearest even, saturating: cvt.rn.satfinite), its scale stored
// transposed (a stage's scales of consecutive tokens lie together). The arithmetic is
// format/fp8.cpp's (amax / 448, then an IEEE division), so codes and scales
// equal quantize_e4m3's. One warp per (row, group), four values a lane; an
// id out of range gives zeros and raises the error flag. NaN stays NaN.
#pragma once
#include "samoyeds/common.cuh"
#include "samoyeds/kernel_args.cuh"

namespace samoyeds {

// Two floats as E4M3 codes: lo in the low byte. The conversion exists from
// sm_89 on; the host refuses FP8 tokens on older devices, and the utility
// kernels compile for every arch, so there it traps.
__device__ __forceinline__ u16 e4m3x2(float lo, float hi) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  u16 r;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(hi), "f"(lo));
  return r;
#else
  (void)lo;
  (void)hi;
  __trap();
  return 0;
#endif
}

template <class T, int THREADS>
__device__ __forceinline__ void quantize_rows_e4m3(const QuantizeRowsArgs& a) {
  const int groups = (a.k + 127) / 128;
  const int item = blockIdx.x * (THREADS / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (item >= a.n * groups) return;
  const int row = item / groups, g = item % groups, col = g * 128 + lane * 4;
  const int id = a.ids ? a.ids[row] : row;
  const bool valid = id >= 0 && id < a.x_rows;
  if (!valid && lane == 0 && g == 0 && a.error_flag) global_or(a.error_flag, kErrorBadTokenId);
  float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  if (valid && col < a.k) {
    const uint2 raw = __ldg(reinterpret_cast<const uint2*>(a.x + u64(id) * a.k + col));
    v[0] = ToFloat<T>::run(u16(raw.x & 0xffffu));
    v[1] = ToFloat<T>::run(u16(raw.x >> 16));
    v[2] = ToFloat<T>::run(u16(raw.y & 0xffffu));
    v[3] = ToFloat<T>::run(u16(raw.y >> 16));
  }
  float amax = fmaxf(fmaxf(fabsf(v[0]), fabsf(v[1])), fmaxf(fabsf(v[2]), fabsf(v[3])));
#pragma unroll
  for (int o = 16; o > 0; o /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  const float s = amax > 0.0f ? amax / 448.0f : 1.0f;
  if (col < a.k) {
    const u32 codes = u32(e4m3x2(v[0] / s, v[1] / s)) | (u32(e4m3x2(v[2] / s, v[3] / s)) << 16);
    *reinterpret_cast<u32*>(a.codes + u64(row) * a.k + col) = codes;
  }
  if (lane == 0) a.scale_inv[u64(g) * a.scale_ld + row] = s;
}

}  // namespace samoyeds

// A probe of the sparse FP8 warpgroup MMA (WgmmaSpE4m3, wgmma_sp_sm90a.cuh):
// one warpgroup multiplies 64 compressed rows by 32 tokens over two k64 steps
// (128 dense columns), each block with its own metadata, and writes its
// accumulators as a [64][32] float matrix. The GPU test reads from it where
// each metadata bit lands; the CPU test compiles it and reads its SASS.
#pragma once
#include <cstdint>

#include "format/fp8_device_layout.hpp"
#include "generator/generated_kernel.hpp"

namespace samoyeds::test {

constexpr int kFp8ProbeRows = 64, kFp8ProbeTokens = 32, kFp8ProbeSteps = 2;

// The row (of the warpgroup's 64) and chunk (of a k64 step's 16) that
// nibble q of thread i's metadata register feeds, as the FP8 device layout
// assumes (format/fp8_device_layout.hpp): warp i / 32 supplies its 16 rows.
struct Fp8ProbeSlot {
  int row, chunk;
};
inline Fp8ProbeSlot fp8_meta_slot(int thread, int nibble) {
  const Fp8MetaSlot s = samoyeds::fp8_meta_slot(thread % 32, nibble);
  return {16 * (thread / 32) + s.row, s.chunk};
}

// a: [64][128] bytes, row r's compressed e4m3 values of step s at bytes
// 32 s .. 32 s + 31 (bytes 64 .. 127 unused); b: [32][128] e4m3, token n's
// dense values of step s at bytes 64 s ..; meta: [block][step][128 threads];
// d: [block][64][32].
inline GeneratedKernel fp8_mma_probe_kernel() {
  GeneratedKernel g;
  g.kernel_name = "samoyeds_fp8_mma_probe";
  g.threads = 128;
  g.smem_bytes = 0;
  g.source = R"(#include "samoyeds/wgmma_sp_sm90a.cuh"
using namespace samoyeds;
extern "C" __global__ void __launch_bounds__(128, 1)
samoyeds_fp8_mma_probe(const u8* a, const u8* b, const u32* meta, float* d) {
  constexpr int N = 32;
  typedef Swizzle128Tile<64, 128> ATile;
  typedef Swizzle128Tile<N, 128> BTile;
  __shared__ __align__(1024) u8 sa[ATile::kBytes];
  __shared__ __align__(1024) u8 sb[BTile::kBytes];
  const int tid = threadIdx.x;
  for (int i = tid; i < 64 * 8; i += 128)
    *reinterpret_cast<uint4*>(sa + ATile::offset(i / 8, i % 8)) = reinterpret_cast<const uint4*>(a)[i];
  for (int i = tid; i < N * 8; i += 128)
    *reinterpret_cast<uint4*>(sb + BTile::offset(i / 8, i % 8)) = reinterpret_cast<const uint4*>(b)[i];
  fence_proxy_async_shared();
  __syncthreads();
  const u32* m = meta + blockIdx.x * 256;
  const u32 m0 = m[tid], m1 = m[128 + tid];
  float acc[N / 8][4];
#pragma unroll
  for (int j = 0; j < N / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[j][e] = 0.0f;
  wgmma_fence();
  WgmmaSpE4m3<N>::run(acc, smem_desc_sw128(smem_addr(sa) + ATile::k_offset(0)),
                      smem_desc_sw128(smem_addr(sb) + BTile::k_offset(0)), m0);
  WgmmaSpE4m3<N>::run(acc, smem_desc_sw128(smem_addr(sa) + ATile::k_offset(32)),
                      smem_desc_sw128(smem_addr(sb) + BTile::k_offset(64)), m1);
  wgmma_commit();
  wgmma_wait<0>();
  float* out = d + blockIdx.x * 64 * N;
  const int w = tid / 32, l = tid % 32;
#pragma unroll
  for (int j = 0; j < N / 8; ++j) {
    const int r = 16 * w + l / 4, c = 8 * j + 2 * (l % 4);
    out[r * N + c] = acc[j][0];
    out[r * N + c + 1] = acc[j][1];
    out[(r + 8) * N + c] = acc[j][2];
    out[(r + 8) * N + c + 1] = acc[j][3];
  }
}
)";
  return g;
}

}  // namespace samoyeds::test

// Warp-level sparse MMA (sm_80+): mma.sp::ordered_metadata m16n8k32 with f32
// accumulation, plus the ldmatrix loads that produce its fragments.
//   A: compressed 16x16 tile (16 rows x 32 columns at 2:4), dense-A-fragment order
//   B: 32x8 (k x n), four registers
//   meta: one register per thread, SEL picks the lane pair that supplies it
#pragma once
#include "samoyeds/common.cuh"
#include "samoyeds/smem_layout.cuh"

namespace samoyeds {

// One metadata word. At k-tiles of 128 a lane's words of two slabs lie side
// by side (device_layout.hpp); with plain loads ptxas merges them into one
// 8-byte load and holds the second word's registers for two more k32 steps.
// A volatile load is never merged: each word is loaded when its pair of
// steps starts, with the register lifetimes of the mma_sp.v1 layout's reads.
// (The 64 x 32 warp tiles at the 255-register limit spilled 8-16 bytes with
// either load, and MmaSpFamily now excludes them.)
__device__ __forceinline__ u32 lds_u32(u32 addr) {
  u32 v;
  asm volatile("ld.volatile.shared.b32 %0, [%1];" : "=r"(v) : "r"(addr));
  return v;
}

__device__ __forceinline__ void ldmatrix_x4(u32 (&r)[4], u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

template <class T, int SEL>
struct MmaSp16832;

#define SAMOYEDS_MMA_SP(TAG, TYPE)                                                                  \
  template <int SEL>                                                                                \
  struct MmaSp16832<TAG, SEL> {                                                                     \
    static __device__ __forceinline__ void run(float (&d)[4], const u32 (&a)[4], const u32 (&b)[4], \
                                               u32 meta) {                                          \
      asm volatile(                                                                                 \
          "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32." TYPE "." TYPE ".f32 "       \
          "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9, %10, %11}, {%0, %1, %2, %3}, %12, %13;"     \
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                                          \
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), \
            "r"(meta), "n"(SEL));                                                                   \
    }                                                                                               \
  };
SAMOYEDS_MMA_SP(F16, "f16")
SAMOYEDS_MMA_SP(BF16, "bf16")
#undef SAMOYEDS_MMA_SP

// The warp-level core of SsmmPipeline: operands in XOR-swizzled tiles,
// fragments by ldmatrix, one mma.sp per (operand, 16-row tile, 8 tokens).
struct WarpMmaSpCore {
  template <int ROWS, int ROW_BYTES>
  using Tile = SwizzledTile<ROWS, ROW_BYTES>;
  static constexpr int kStageAlign = 16;  // 16-byte copies and ldmatrix rows
  static constexpr int kMinThreadsPerRow = 1;
  static constexpr bool kSelectByDifference = false;  // row_select.cuh: at the register limit, swaps spill less
  static __device__ __forceinline__ void stage_landed() {}  // ldmatrix reads through the generic proxy
  template <class K>
  static __device__ __forceinline__ void prepare(K&, const unsigned char*, int, int) {}  // reads metadata per step
  static __device__ __forceinline__ void begin() {}
  static __device__ __forceinline__ void settle() {}

  // One k32 step of the block's stage for this warp's tile.
  template <class K>
  static __device__ __forceinline__ void step(K& k, const unsigned char* stage, u32 stage_addr, int ks, int warp_m,
                                              int warp_n, int lane) {
    static_assert(K::kWA == K::kW, "every warp accumulates every operand");
    typedef typename K::ATile ATile;
    typedef typename K::BTile BTile;
    u32 a[K::kW][K::MT][4], b[K::NT][4];
#pragma unroll
    for (int w = 0; w < K::kW; ++w)
#pragma unroll
      for (int mt = 0; mt < K::MT; ++mt) {
        const int r = warp_m * K::WM + mt * 16 + lane % 16;
        // chunk ks*2 + lane/16 == (ks*2) ^ (lane/16); the row's XOR term is lane-only.
        const int a_xor = (lane / 16) ^ ATile::row_xor(lane % 16);
        ldmatrix_x4(a[w][mt], stage_addr + w * K::kWBytes + r * ATile::kStride + (((ks * 2) ^ a_xor) * 16));
        if (ks % 2 == 0) {  // one word serves a pair of k32 steps (selectors 0 and 1)
          const int word = k.meta_word(warp_m * K::WM / 16 + mt, ks / 2, lane);
          if constexpr (K::kBK == 64)  // one word of a tile's pairs per stage: nothing to merge
            k.pair_meta[w][mt] = reinterpret_cast<const u32*>(stage + w * K::kWBytes + K::kABytes)[word];
          else
            k.pair_meta[w][mt] = lds_u32(stage_addr + w * K::kWBytes + K::kABytes + 4 * word);
        }
      }
#pragma unroll
    for (int nt = 0; nt < K::NT; ++nt) {
      const int t = warp_n * K::WN + nt * 8 + lane % 8;
      const int b_xor = (lane / 8) ^ BTile::row_xor(lane % 8);
      ldmatrix_x4(b[nt], stage_addr + K::kW * K::kWBytes + t * BTile::kStride + (((ks * 4) ^ b_xor) * 16));
    }
#pragma unroll
    for (int w = 0; w < K::kW; ++w)
#pragma unroll
      for (int mt = 0; mt < K::MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < K::NT; ++nt) {
          if (ks % 2 == 0)
            MmaSp16832<typename K::ElemType, 0>::run(k.acc[w][0][mt][nt], a[w][mt], b[nt], k.pair_meta[w][mt]);
          else
            MmaSp16832<typename K::ElemType, 1>::run(k.acc[w][0][mt][nt], a[w][mt], b[nt], k.pair_meta[w][mt]);
        }
  }
};

}  // namespace samoyeds

// Warpgroup-level sparse MMA (sm_90a only): wgmma.mma_async.sp m64nNk32 with
// f32 accumulators, A (compressed weights) and B (tokens) both read from
// shared memory through matrix descriptors, both K-major without swizzle.
//
// Shared-memory operand layout ("core matrices"): a tile of ROWS rows and
// ROW_BYTES bytes per row is stored as 8-row x 16-byte core matrices
// (128 contiguous bytes, one 16-byte row each). Core matrices that follow
// each other along the rows are 128 bytes apart (the descriptor's stride
// byte offset); along k they are ROWS*16 bytes apart (its leading byte
// offset). Eight consecutive rows of one 16-byte column fill 128 contiguous
// bytes, so the 16-byte cp.async stores of a warp cover whole bank lines.
//
// Accumulator fragment: thread (warp w of the warpgroup, lane l) holds
// d[j][0..1] = row 16w + l/4, columns 8j + 2(l%4) + {0,1}, and d[j][2..3] the
// same columns of row 16w + l/4 + 8: per 8 columns the layout of mma.sp
// m16n8, so the pipeline's row selection and epilogue serve both cores.
// Metadata: warp w supplies its own 16 rows, in mma.sp m16n8k32 register
// order; SEL picks the lane pair that holds it (as for mma.sp).
#pragma once
#include "samoyeds/common.cuh"

namespace samoyeds {

template <int ROWS, int ROW_BYTES>
struct CoreMatrixTile {
  static_assert(ROWS % 8 == 0 && ROW_BYTES % 16 == 0, "whole core matrices");
  static constexpr int kBytes = ROWS * ROW_BYTES;
  static constexpr int kLeadingBytes = ROWS * 16;  // next 16-byte column (k)
  static constexpr int kStrideBytes = 128;         // next 8 rows
  static __device__ __forceinline__ int offset(int row, int chunk) {
    return chunk * kLeadingBytes + (row / 8) * 128 + (row % 8) * 16;
  }
};

// Shared-memory matrix descriptor, no swizzle: start address, leading and
// stride byte offsets, each in 16-byte units.
__device__ __forceinline__ u64 smem_matrix_desc(u32 addr, u32 leading_bytes, u32 stride_bytes) {
  return u64((addr & 0x3ffffu) >> 4) | (u64((leading_bytes >> 4) & 0x3fffu) << 16) |
         (u64((stride_bytes >> 4) & 0x3fffu) << 32);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}
// cp.async writes shared memory through the generic proxy; wgmma reads it
// through the async proxy. A thread that has seen a stage's copies land (its
// own, or a producer's through an mbarrier) fences before its wgmma reads.
__device__ __forceinline__ void fence_proxy_async_shared() {
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}

template <class T, int N, int SEL>
struct WgmmaSp;

// Operand lists for the accumulators: d[j][0..3] for j < N/8.
#define SAMOYEDS_WGMMA_D4(j) "+f"(d[j][0]), "+f"(d[j][1]), "+f"(d[j][2]), "+f"(d[j][3])
#define SAMOYEDS_WGMMA_D16 SAMOYEDS_WGMMA_D4(0), SAMOYEDS_WGMMA_D4(1), SAMOYEDS_WGMMA_D4(2), SAMOYEDS_WGMMA_D4(3)
#define SAMOYEDS_WGMMA_D32 \
  SAMOYEDS_WGMMA_D16, SAMOYEDS_WGMMA_D4(4), SAMOYEDS_WGMMA_D4(5), SAMOYEDS_WGMMA_D4(6), SAMOYEDS_WGMMA_D4(7)
#define SAMOYEDS_WGMMA_D64                                                                                     \
  SAMOYEDS_WGMMA_D32, SAMOYEDS_WGMMA_D4(8), SAMOYEDS_WGMMA_D4(9), SAMOYEDS_WGMMA_D4(10), SAMOYEDS_WGMMA_D4(11), \
      SAMOYEDS_WGMMA_D4(12), SAMOYEDS_WGMMA_D4(13), SAMOYEDS_WGMMA_D4(14), SAMOYEDS_WGMMA_D4(15)
// Register names in the instruction text: "%0, ..., %(N/2-1)".
#define SAMOYEDS_WGMMA_R16 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
#define SAMOYEDS_WGMMA_R32 \
  SAMOYEDS_WGMMA_R16 ", %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define SAMOYEDS_WGMMA_R64                                                                                  \
  SAMOYEDS_WGMMA_R32 ", %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
                     "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"

// m64nNk32, A and B descriptors, metadata register, selector; scale-d is
// always 1 (the pipeline zeroes the accumulators itself). REST names the
// operands after the accumulators: "%16, %17, %18, %19" for N = 32.
#define SAMOYEDS_WGMMA_SP(TAG, TYPE, N, DLIST, RLIST, REST, PRED)                                        \
  template <int SEL>                                                                                    \
  struct WgmmaSp<TAG, N, SEL> {                                                                         \
    static __device__ __forceinline__ void run(float (&d)[N / 8][4], u64 a_desc, u64 b_desc, u32 meta) { \
      asm volatile("{ .reg .pred p; setp.ne.b32 p, " PRED ", 0; "                                       \
                   "wgmma.mma_async.sp.sync.aligned.m64n" #N "k32.f32." TYPE "." TYPE " {" RLIST "}, " REST \
                   ", p, 1, 1, 0, 0; }"                                                                 \
                   : DLIST                                                                              \
                   : "l"(a_desc), "l"(b_desc), "r"(meta), "n"(SEL), "n"(1));                            \
    }                                                                                                   \
  };
SAMOYEDS_WGMMA_SP(F16, "f16", 32, SAMOYEDS_WGMMA_D16, SAMOYEDS_WGMMA_R16, "%16, %17, %18, %19", "%20")
SAMOYEDS_WGMMA_SP(BF16, "bf16", 32, SAMOYEDS_WGMMA_D16, SAMOYEDS_WGMMA_R16, "%16, %17, %18, %19", "%20")
SAMOYEDS_WGMMA_SP(F16, "f16", 64, SAMOYEDS_WGMMA_D32, SAMOYEDS_WGMMA_R32, "%32, %33, %34, %35", "%36")
SAMOYEDS_WGMMA_SP(BF16, "bf16", 64, SAMOYEDS_WGMMA_D32, SAMOYEDS_WGMMA_R32, "%32, %33, %34, %35", "%36")
SAMOYEDS_WGMMA_SP(F16, "f16", 128, SAMOYEDS_WGMMA_D64, SAMOYEDS_WGMMA_R64, "%64, %65, %66, %67", "%68")
SAMOYEDS_WGMMA_SP(BF16, "bf16", 128, SAMOYEDS_WGMMA_D64, SAMOYEDS_WGMMA_R64, "%64, %65, %66, %67", "%68")
#undef SAMOYEDS_WGMMA_SP
#undef SAMOYEDS_WGMMA_D4
#undef SAMOYEDS_WGMMA_D16
#undef SAMOYEDS_WGMMA_D32
#undef SAMOYEDS_WGMMA_D64
#undef SAMOYEDS_WGMMA_R16
#undef SAMOYEDS_WGMMA_R32
#undef SAMOYEDS_WGMMA_R64

// The warpgroup core of SsmmPipeline: each warpgroup owns 64 condensed rows
// of the block and all BN tokens (WARPS_M = BM/16, WARPS_N = 1). One
// wgmma.sp per (operand, k32 step); its accumulators are the pipeline's
// slot 0, which the pipeline only touches after settle().
struct WgmmaSpCore {
  template <int ROWS, int ROW_BYTES>
  using Tile = CoreMatrixTile<ROWS, ROW_BYTES>;
  static __device__ __forceinline__ void stage_landed() { fence_proxy_async_shared(); }
  static __device__ __forceinline__ void begin() { wgmma_fence(); }
  static __device__ __forceinline__ void settle() {
    wgmma_commit();
    wgmma_wait<0>();
  }

  template <class K>
  static __device__ __forceinline__ void step(K& k, const unsigned char* stage, u32 stage_addr, int ks, int warp_m,
                                              int warp_n, int lane) {
    static_assert(K::WARPS_N_ == 1 && K::WM == 16 && K::MT == 1, "a warpgroup spans all tokens, 16 rows a warp");
    typedef typename K::ATile ATile;
    typedef typename K::BTile BTile;
    const int group_row0 = (warp_m / 4) * 64;  // this warpgroup's first row in the block
    const u64 b_desc = smem_matrix_desc(stage_addr + K::kW * K::kWBytes + (ks * 4) * BTile::kLeadingBytes,
                                        BTile::kLeadingBytes, BTile::kStrideBytes);
#pragma unroll
    for (int w = 0; w < K::kW; ++w) {
      const u32 a_addr = stage_addr + w * K::kWBytes + ATile::offset(group_row0, ks * 2);
      const u64 a_desc = smem_matrix_desc(a_addr, ATile::kLeadingBytes, ATile::kStrideBytes);
      const u32* m = reinterpret_cast<const u32*>(stage + w * K::kWBytes + K::kABytes);
      const u32 meta = m[(warp_m * (K::kBK / 64) + ks / 2) * 32 + lane];
      if (ks % 2 == 0)
        WgmmaSp<typename K::ElemType, K::kBN, 0>::run(k.acc[w][0][0], a_desc, b_desc, meta);
      else
        WgmmaSp<typename K::ElemType, K::kBN, 1>::run(k.acc[w][0][0], a_desc, b_desc, meta);
    }
    (void)warp_n;
  }
};

}  // namespace samoyeds

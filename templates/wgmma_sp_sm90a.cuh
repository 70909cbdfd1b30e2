// Warpgroup-level sparse MMA (sm_90a only): wgmma.mma_async.sp m64nNk32 with
// f32 accumulators, A (compressed weights) and B (tokens) both read from
// shared memory through matrix descriptors, both K-major with the 128-byte
// swizzle.
//
// Shared-memory operand layout: Swizzle128Tile (smem_layout.cuh), the layout
// TMA writes with CU_TENSOR_MAP_SWIZZLE_128B (the weights) and the one the
// descriptor's 128-byte swizzle mode reads, so TMA and cp.async (the
// gathered tokens, placed by the same offset()) fill it alike; any 8 rows of
// one chunk, or 8 chunks of one row, fall in 8 different bank groups. Tiles
// start 1024-byte aligned (the swizzle repeats every 8 rows).
//
// Accumulator fragment: thread (warp w of the warpgroup, lane l) holds
// d[j][0..1] = row 16w + l/4, columns 8j + 2(l%4) + {0,1}, and d[j][2..3] the
// same columns of row 16w + l/4 + 8: per 8 columns the layout of mma.sp
// m16n8, so the pipeline's row selection and epilogue serve both cores.
// Metadata: warp w supplies its own 16 rows, in mma.sp m16n8k32 register
// order; SEL picks the lane pair that holds it (as for mma.sp). A lane's
// words of a k-tile are adjacent in the packed layout (device_layout.hpp).
#pragma once
#include "samoyeds/common.cuh"
#include "samoyeds/smem_layout.cuh"

namespace samoyeds {

// Shared-memory matrix descriptor, K-major, 128-byte swizzle: start address
// (16-byte units), leading offset unused by K-major swizzled layouts (1 by
// convention), stride offset 1024 bytes (the next 8 rows), layout type 1.
__device__ __forceinline__ u64 smem_desc_sw128(u32 addr) {
  return u64((addr & 0x3ffffu) >> 4) | (u64(1) << 16) | (u64(1024 >> 4) << 32) | (u64(1) << 62);
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

// The FP8 form, m64nNk64 with e4m3 A and B: the same bytes per instruction as
// the 16-bit k32 form (32 compressed bytes of A, 64 bytes of B per row), both
// K-major (FP8 takes no transpose operands). Selector 0 only: every thread of
// a quad supplies its own metadata register, one row and 32 columns of the 64
// (docs/fp8.md). SCALE_D 0 overwrites the accumulators (a k-block's first
// step), 1 adds to them.
template <int N, int SCALE_D = 1>
struct WgmmaSpE4m3;
#define SAMOYEDS_WGMMA_SP_E4M3(N, DLIST, RLIST, REST, PRED)                                                \
  template <int SCALE_D>                                                                                  \
  struct WgmmaSpE4m3<N, SCALE_D> {                                                                        \
    static __device__ __forceinline__ void run(float (&d)[N / 8][4], u64 a_desc, u64 b_desc, u32 meta) {   \
      asm volatile("{ .reg .pred p; setp.ne.b32 p, " PRED ", 0; "                                         \
                   "wgmma.mma_async.sp.sync.aligned.m64n" #N "k64.f32.e4m3.e4m3 {" RLIST "}, " REST        \
                   ", p, 1, 1; }"                                                                         \
                   : DLIST                                                                                \
                   : "l"(a_desc), "l"(b_desc), "r"(meta), "n"(0), "n"(SCALE_D));                          \
    }                                                                                                     \
  };
SAMOYEDS_WGMMA_SP_E4M3(32, SAMOYEDS_WGMMA_D16, SAMOYEDS_WGMMA_R16, "%16, %17, %18, %19", "%20")
SAMOYEDS_WGMMA_SP_E4M3(64, SAMOYEDS_WGMMA_D32, SAMOYEDS_WGMMA_R32, "%32, %33, %34, %35", "%36")
SAMOYEDS_WGMMA_SP_E4M3(128, SAMOYEDS_WGMMA_D64, SAMOYEDS_WGMMA_R64, "%64, %65, %66, %67", "%68")
#undef SAMOYEDS_WGMMA_SP_E4M3
#undef SAMOYEDS_WGMMA_D4
#undef SAMOYEDS_WGMMA_D16
#undef SAMOYEDS_WGMMA_D32
#undef SAMOYEDS_WGMMA_D64
#undef SAMOYEDS_WGMMA_R16
#undef SAMOYEDS_WGMMA_R32
#undef SAMOYEDS_WGMMA_R64

// The warpgroup core of SsmmPipeline: each warpgroup owns 64 condensed rows
// of the block and all BN tokens (WARPS_M = BM/16, WARPS_N = 1). One
// wgmma.sp per (operand it accumulates, k32 step); its accumulators are the
// pipeline's slot 0, which the pipeline only touches after settle().
struct WgmmaSpCore {
  template <int ROWS, int ROW_BYTES>
  using Tile = Swizzle128Tile<ROWS, ROW_BYTES>;
  static constexpr int kStageAlign = 1024;  // every operand tile starts on a swizzle period
  static constexpr int kMinThreadsPerRow = 4;  // gathered rows: 64 bytes of a row per copy instruction
  static constexpr bool kSelectByDifference = true;  // row_select.cuh: issue-bound, half the instructions
  static __device__ __forceinline__ void stage_landed() { fence_proxy_async_shared(); }
  // The k-tile's metadata words into registers before the fence: a register
  // an in-flight wgmma reads must not be written after the fence (ptxas would
  // inject another fence before every wgmma whose metadata arrived late).
  // The stage holds the TMA image of the packed layout, [tile][lane][2]
  // words: a lane's two words of the k-tile side by side, one 8-byte load
  // per operand.
  // FP8 (fp8_device_layout.hpp): a lane's four words of the 256-column
  // k-tile, one 16-byte load per operand.
  template <class K>
  static __device__ __forceinline__ void prepare(K& k, const unsigned char* stage, int warp_m, int lane) {
    static_assert(K::kBK * K::kEB == 256, "one metadata word pair (FP8: four words) per k-tile");
#pragma unroll
    for (int w = 0; w < K::kWA; ++w) {
      const u32* m = reinterpret_cast<const u32*>(stage + k.operand(w) * K::kWBytes + K::kABytes);
      if constexpr (K::kFp8) {
        const uint4 words = *reinterpret_cast<const uint4*>(m + k.meta_word(warp_m, 0, lane));
        k.stage_meta[w][0] = words.x;
        k.stage_meta[w][1] = words.y;
        k.stage_meta[w][2] = words.z;
        k.stage_meta[w][3] = words.w;
      } else {
        const uint2 pair = *reinterpret_cast<const uint2*>(m + k.meta_word(warp_m, 0, lane));
        k.stage_meta[w][0] = pair.x;
        k.stage_meta[w][1] = pair.y;
      }
    }
  }
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
    const int group_row0 = (warp_m / 4) * 64;  // this warpgroup's first row in the block (a swizzle period)
    // Step ks: 32 bytes of compressed A, 64 bytes of B (k32 of 16-bit values, k64 of FP8).
    const u64 b_desc = smem_desc_sw128(stage_addr + K::kW * K::kWBytes + BTile::k_offset(ks * 64));
#pragma unroll
    for (int w = 0; w < K::kWA; ++w) {
      const u64 a_desc =
          smem_desc_sw128(stage_addr + k.operand(w) * K::kWBytes + group_row0 * 128 + ATile::k_offset(ks * 32));
      if constexpr (K::kFp8) {  // each k-block's first step overwrites the product (promote)
        if (ks % 2 == 0)
          WgmmaSpE4m3<K::kBN, 0>::run(k.pacc[w][0], a_desc, b_desc, k.stage_meta[w][ks]);
        else
          WgmmaSpE4m3<K::kBN, 1>::run(k.pacc[w][0], a_desc, b_desc, k.stage_meta[w][ks]);
      } else {
        const u32 meta = k.stage_meta[w][ks / 2];
        if (ks % 2 == 0)
          WgmmaSp<typename K::ElemType, K::kBN, 0>::run(k.acc[w][0][0], a_desc, b_desc, meta);
        else
          WgmmaSp<typename K::ElemType, K::kBN, 1>::run(k.acc[w][0][0], a_desc, b_desc, meta);
      }
    }
    (void)warp_n;
  }
};

}  // namespace samoyeds

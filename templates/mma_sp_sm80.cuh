// Warp-level sparse MMA (sm_80+): mma.sp::ordered_metadata m16n8k32 with f32
// accumulation, plus the ldmatrix loads that produce its fragments.
//   A: compressed 16x16 tile (16 rows x 32 columns at 2:4), dense-A-fragment order
//   B: 32x8 (k x n), four registers
//   meta: one register per thread, SEL picks the lane pair that supplies it
#pragma once
#include "samoyeds/common.cuh"

namespace samoyeds {

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

}  // namespace samoyeds

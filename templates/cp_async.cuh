// cp.async (sm_80+) copies from global to shared memory, 16 bytes at a time.
#pragma once
#include "samoyeds/common.cuh"

namespace samoyeds {

// valid == false copies nothing and zero-fills the 16 destination bytes, so
// out-of-range tokens and columns need no separate path.
__device__ __forceinline__ void cp_async_16(u32 dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0)
               : "memory");
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }

template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

}  // namespace samoyeds
